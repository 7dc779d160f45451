#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_iso_extract: an oVirt Node ISO -> facts, its tree and its root image."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_iso_extract
short_description: Read the facts of an oVirt Node ISO and extract its tree or root image
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Reads an oVirt Node ISO (Fedora LiveCD layout) without root and without mounting it, and returns
    its facts - volume id, product, version and release, boot entries of every loader (isolinux, the
    GRUB config of the EFI tree, and the config inside C(efiboot.img)), El Torito entries, the hybrid
    MBR/GPT, the implanted isomd5sum, the squashfs and the root filesystem image inside it, and
    earlier edits (C(isolinux/updateN) folders).
  - Optionally extracts the ISO tree to O(dest) and the root filesystem image
    (C(LiveOS/ext3fs.img) or C(LiveOS/rootfs.img)) out of the squashfs to O(rootfs_dest), and lists
    the installed RPMs and plugins of the image (read from its rpm database, without booting it).
  - Extractions are written into a temporary folder next to their destination and renamed into place.
    A destination that already holds the same content (same ISO sha256, same files) is left alone.
  - Runs where the files are (the controller, or the host the task targets).
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Reads the ISO and returns every fact; reports whether O(dest) or O(rootfs_dest) would change, writes nothing there.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Each destination records the ISO's sha256 and its files in C(.node_iso_extract.json).
  platform:
    platforms: posix
options:
  src:
    description: The Node ISO to read.
    type: path
    required: true
  dest:
    description:
      - Folder to extract the ISO tree into (Rock Ridge names; symlinks are kept as links).
      - It must not exist, be empty, or have been made by this module (it is then replaced as a whole).
      - When not given, the tree is not extracted.
    type: path
  rootfs_dest:
    description:
      - Folder to put the root filesystem image into, as C(<rootfs_dest>/ext3fs.img) or C(<rootfs_dest>/rootfs.img).
      - Same rules as O(dest). When not given, the root image is not kept.
    type: path
  packages:
    description:
      - List the RPMs installed in the image (NEVRA) and the plugins recorded in C(/etc/ovirt-plugins.d).
      - This unpacks the root image (into O(rootfs_dest) when given, otherwise into a temporary folder).
    type: bool
    default: false
  check_md5:
    description:
      - Verify the implanted isomd5sum md5 (the same check as C(checkisomd5)); reads the whole ISO.
      - When false, RV(md5.valid) is null and only whether an md5 is implanted is reported.
    type: bool
    default: false
notes:
  - Set E(TMPDIR) to choose where temporary copies go when O(packages=true) without O(rootfs_dest).
seealso:
  - module: ovirt.node_plugins.node_plugin_build
requirements:
  - pycdlib
  - python3-rpm (for O(packages))
  - xorriso, squashfs-tools, mtools, e2fsprogs
"""

EXAMPLES = r"""
- name: Read the facts of a Node ISO
  ovirt.node_plugins.node_iso_extract:
    src: images/ovirt-node-iso-2.5.0-1.0.fc17.iso
  register: node_iso

- name: Show the version and the kernel arguments of the default BIOS entry
  ansible.builtin.debug:
    msg: "{{ node_iso.version }}-{{ node_iso.release }}: {{ (node_iso.boot_entries.isolinux | selectattr('default') | first).kernel_args }}"

- name: Extract the root image, list installed packages, and verify the md5
  ovirt.node_plugins.node_iso_extract:
    src: images/ovirt-node-iso-2.5.0-1.0.fc17.iso
    rootfs_dest: work/rootfs
    packages: true
    check_md5: true
  register: node_iso_full

- name: Extract the ISO tree
  ovirt.node_plugins.node_iso_extract:
    src: images/ovirt-node-iso-2.5.0-1.0.fc17.iso
    dest: work/tree
"""

RETURN = r"""
src:
  description: Absolute path of the ISO read.
  returned: always
  type: str
  sample: /srv/images/ovirt-node-iso-2.5.0-1.0.fc17.iso
sha256:
  description: sha256 of the ISO.
  returned: always
  type: str
  sample: 5e2b1fa0c8e8b0d8b3b8f1b1a6e1c0e6f1f5b5d2e2b0c6a8f5c3b1a2e4d6c8b0
volume_id:
  description: The ISO's volume id (also its C(CDLABEL)).
  returned: always
  type: str
  sample: ovirt-node-iso-2.5.0-1.0.fc17
volume_size:
  description: Size of the ISO volume in bytes, from its primary volume descriptor.
  returned: always
  type: int
  sample: 762314752
product:
  description: Product name (null when only the volume id told the version).
  returned: always
  type: str
  sample: oVirt Node Hypervisor
version:
  description: Node version.
  returned: always
  type: str
  sample: 2.5.0
release:
  description: Node release.
  returned: always
  type: str
  sample: 1.0.fc17
version_source:
  description:
    - Where the version came from, most trusted first - C(isolinux/version), C(/etc/default/version),
      C(/etc/system-release) or C(volume id).
  returned: always
  type: str
  sample: isolinux/version
boot_entries:
  description: Boot entries per loader, each with the config it comes from.
  returned: always
  type: dict
  contains:
    isolinux:
      description: Entries of C(isolinux.cfg) (BIOS).
      type: list
      elements: dict
      returned: always
    grub:
      description: Entries of the GRUB configs of the ISO tree (C(EFI/BOOT/grub.cfg), C(BOOTX64.conf)).
      type: list
      elements: dict
      returned: always
    efiboot:
      description: Entries of the configs inside C(efiboot.img) (what UEFI reads when booting from a USB stick).
      type: list
      elements: dict
      returned: always
  sample:
    isolinux:
      - config: /isolinux/isolinux.cfg
        efiboot_image: null
        label: start
        title: Boot
        kernel: vmlinuz0
        initrd: initrd0.img
        kernel_args: [initrd=initrd0.img, "root=live:CDLABEL=ovirt-node-iso-2.5.0-1.0.fc17", rootfstype=auto, ro]
        default: true
    grub: []
    efiboot: []
el_torito:
  description: El Torito boot entries.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Entry number, from 1.
      type: int
      returned: always
    platform:
      description: C(BIOS) or C(UEFI) (or another platform id as xorriso names it).
      type: str
      returned: always
    path:
      description: The boot image file in the ISO, or null when it is not a file of the tree.
      type: str
      returned: always
    bootable:
      description: Whether the entry is marked bootable.
      type: bool
      returned: always
    emulation:
      description: Emulation type (C(none) for no-emulation images).
      type: str
      returned: always
    load_size:
      description: Sectors loaded (512 bytes each).
      type: int
      returned: always
    lba:
      description: Block address of the boot image (2048-byte blocks).
      type: int
      returned: always
  sample:
    - {index: 1, platform: BIOS, path: /isolinux/isolinux.bin, bootable: true, emulation: none, load_size: 4, lba: 757}
hybrid:
  description: The system area - isohybrid MBR and GPT, so the ISO boots when written to a disk.
  returned: always
  type: dict
  contains:
    mbr:
      description: Whether an MBR partition table is present.
      type: bool
      returned: always
    gpt:
      description: Whether a GPT header is present at LBA 1.
      type: bool
      returned: always
    mbr_partitions:
      description: MBR partitions (index, bootable, type, start, sectors).
      type: list
      elements: dict
      returned: always
  sample: {mbr: true, gpt: true, mbr_partitions: [{index: 1, bootable: true, type: "0x00", start: 0, sectors: 6144}]}
md5:
  description: The isomd5sum md5 implanted in the ISO.
  returned: always
  type: dict
  contains:
    implanted:
      description: Whether an md5 is implanted.
      type: bool
      returned: always
    valid:
      description: Whether it matches the content (null unless O(check_md5=true) and one is implanted).
      type: bool
      returned: always
    md5:
      description: The implanted md5, or null.
      type: str
      returned: always
  sample: {implanted: true, valid: true, md5: 89d660a9522ff0168d2c595e1d856d34}
squashfs:
  description: The LiveOS squashfs, whose compressor and block size a rebuild keeps.
  returned: always
  type: dict
  contains:
    compressor:
      description: C(gzip), C(lzma), C(lzo), C(xz), C(lz4) or C(zstd).
      type: str
      returned: always
    block_size:
      description: Block size in bytes.
      type: int
      returned: always
    size:
      description: Size of C(LiveOS/squashfs.img) in bytes.
      type: int
      returned: always
  sample: {compressor: xz, block_size: 131072, size: 190840832}
root_image:
  description: The root filesystem image inside the squashfs.
  returned: always
  type: dict
  contains:
    name:
      description: C(ext3fs.img) or C(rootfs.img).
      type: str
      returned: always
    size:
      description: Size in bytes.
      type: int
      returned: always
  sample: {name: ext3fs.img, size: 1610612736}
osmin:
  description: Whether C(LiveOS/osmin.img) is present.
  returned: always
  type: bool
  sample: false
updates:
  description: Earlier edits, the C(isolinux/updateN) folders, in order, with the files each holds.
  returned: always
  type: list
  elements: dict
  sample: [{number: 1, path: /isolinux/update1, files: [installed_plugins, manifest-rpm.txt]}]
packages:
  description: NEVRA of every RPM installed in the image, sorted (null unless O(packages=true)).
  returned: always
  type: list
  elements: str
  sample: [bash-4.2.37-2.fc17.x86_64]
rpmdb:
  description:
    - The image's rpm database as read for O(packages=true) (null otherwise), read in place out of the
      squashfs (the root image is not unpacked).
  returned: always
  type: dict
  contains:
    format:
      description: V(sqlite) (C(rpmdb.sqlite)), V(bdb) (Berkeley DB C(Packages), Fedora 17, EL6, EL7) or V(ndb).
      type: str
    packages:
      description: How many packages were read.
      type: int
    files:
      description: How many file names the packages list.
      type: int
  sample: {format: bdb, packages: 412, files: 98411}
plugins:
  description: Plugins recorded in C(/etc/ovirt-plugins.d) (null unless O(packages=true)).
  returned: always
  type: list
  elements: dict
  sample: [{name: vendor-agent, version: 1.0-1.noarch, install_date: "2013-01-07"}]
dest:
  description: Absolute path of the extracted tree, or null.
  returned: always
  type: str
  sample: /srv/work/tree
rootfs_dest:
  description: Absolute path of the folder holding the root image, or null.
  returned: always
  type: str
  sample: /srv/work/rootfs
root_image_path:
  description: Path of the extracted root image inside O(rootfs_dest), or null.
  returned: always
  type: str
  sample: /srv/work/rootfs/ext3fs.img
durations:
  description: Seconds spent in each stage.
  returned: always
  type: dict
  sample: {read ISO: 0.05, LiveOS: 0.02}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._extract import ExtractRequest, extract_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path"},
    "rootfs_dest": {"type": "path"},
    "packages": {"type": "bool", "default": False},
    "check_md5": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    request = ExtractRequest(check_mode=module.check_mode, **{name: module.params[name] for name in ARGUMENT_SPEC})
    requires = ("pycdlib", "rpm") if request.packages else ("pycdlib",)
    result = run_engine(module, extract_iso, request, requires=requires, outputs=("dest", "rootfs_dest"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
