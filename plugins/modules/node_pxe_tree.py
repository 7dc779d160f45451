#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_pxe_tree: a PXE (BIOS and UEFI) and HTTP boot tree made from a Node ISO."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_pxe_tree
short_description: Make a PXE boot tree (pxelinux, GRUB 2 EFI, HTTP) from an oVirt Node ISO
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Makes the boot tree that C(livecd-iso-to-pxeboot) makes (C(vmlinuz0), C(initrd0.img) with the
    stripped ISO appended as a gzip'd newc cpio, C(pxelinux.0), C(ldlinux.c32),
    C(pxelinux.cfg/default) booting with C(root=live:/<iso name>) and C(rootflags=loop)), plus a
    GRUB 2 C(grub.cfg) for UEFI network boot, an optional GRUB netboot image C(BOOTX64.EFI), an
    optional HTTP variant for dracut's livenet (C(root=live:http://.../squashfs.img)), and a
    C(SHA256SUMS) of the whole tree.
  - The kernel arguments come from the ISO's default boot entry.
  - Menus are checked before the tree is published (C(grub-script-check) for GRUB, a structural
    check for pxelinux). Menus for inclusion in a server's own configuration are written to
    C(menus/pxelinux.cfg) (for pxelinux C(INCLUDE)) and C(menus/grub.cfg) (for GRUB C(source)),
    with paths under O(menu_prefix).
  - The tree is built in a temporary folder next to O(dest) and renamed into place. A stamp in the
    tree records the ISO's sha256 and the options, so a rerun with the same inputs is a no-op.
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Reads the ISO and reports the release id and kernel arguments the tree would have.
  diff_mode:
    support: none
  idempotent:
    support: full
  platform:
    platforms: posix
options:
  src:
    description: The Node ISO (Fedora LiveCD layout with C(LiveOS/squashfs.img)).
    type: path
    required: true
  dest:
    description: The folder of the tree. Its parent must exist; an existing tree is replaced as a whole.
    type: path
    required: true
  iso_name:
    description:
      - File name of the stripped ISO inside C(initrd0.img); it becomes part of the kernel
        arguments (C(root=live:/<iso_name>)). Unset uses the file name of O(src).
    type: str
  label:
    description: The pxelinux label and GRUB menu entry id; the HTTP entry gets C(-http) appended.
    type: str
    default: ovirt-node
  title:
    description: The menu title of the entry. Unset uses the ISO's product and version.
    type: str
  menu_prefix:
    description:
      - Where the tree sits under the TFTP root as the server's loaders see it (for example
        V(node/current/)); used for the paths in C(menus/pxelinux.cfg) and C(menus/grub.cfg).
        Empty means the tree is the TFTP root.
    type: str
    default: ""
  ipappend:
    description: Add C(IPAPPEND 2) to the pxelinux entries, so the booted Node learns its boot NIC (C(BOOTIF=)).
    type: bool
    default: false
  http_url:
    description:
      - The URL under which the tree is served over HTTP (for example
        V(http://pxe.example.com/node/current)). When set, the tree also gets C(squashfs.img),
        C(initrd0-net.img) and a C(<label>-http) entry booting with C(root=live:<http_url>/squashfs.img).
      - Unset makes no HTTP variant.
    type: str
  extra_kernel_args:
    description: Kernel arguments added to every entry; V(!name) removes an argument by name.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds the menus wait before booting the default entry.
    type: int
    default: 5
  serial:
    description: Serial console of the loaders as V(<port> <speed>) (for example V(0 115200)). Unset leaves the loaders on the screen.
    type: str
  efi_bootloader:
    description: Also make C(BOOTX64.EFI), a GRUB netboot image that reads C(grub.cfg) from the TFTP root (needs C(grub-mkimage)).
    type: bool
    default: true
  release_version:
    description: The version part of the returned release id. Unset uses C(VERSION-RELEASE) of the ISO's C(isolinux/version).
    type: str
  force:
    description: Rebuild even when the tree's stamp matches.
    type: bool
    default: false
requirements:
  - pycdlib
  - xorriso
  - cpio
  - pxelinux and syslinux-common
  - grub-efi-amd64-bin and grub-common (for O(efi_bootloader) and the GRUB syntax check)
seealso:
  - module: ovirt.node_plugins.node_plugin_apply
  - module: ovirt.node_plugins.node_iso_verify
"""

EXAMPLES = r"""
- name: A self-contained PXE tree (the tree is the TFTP root)
  ovirt.node_plugins.node_pxe_tree:
    src: /srv/iso/node-custom.iso
    dest: /srv/tftp
    ipappend: true

- name: A tree to publish under node/current/ with an HTTP variant
  ovirt.node_plugins.node_pxe_tree:
    src: /srv/iso/node-custom.iso
    dest: /var/tmp/node-tree
    menu_prefix: node/current/
    http_url: http://pxe.example.com/tftp/node/current
    extra_kernel_args:
      - "!quiet"
  register: tree
"""

RETURN = r"""
dest:
  description: The tree.
  returned: always
  type: str
reason:
  description: "Why the module did or did not build: V(built in N s), V(would build) or V(up to date: ...)."
  returned: always
  type: str
iso_sha256:
  description: sha256 of O(src).
  returned: always
  type: str
volume_id:
  description: Volume id of the ISO.
  returned: always
  type: str
version:
  description: C(VERSION-RELEASE) of the ISO (its volume id when it has no C(isolinux/version)).
  returned: always
  type: str
release_id:
  description: C(<version>-<first 12 hex digits of iso_sha256>), the name of the release on PXE servers.
  returned: always
  type: str
  sample: 2.5.0-1.0.fc17-d51052c21c15
iso_name:
  description: File name of the stripped ISO in C(initrd0.img).
  returned: always
  type: str
kernel_args:
  description: Kernel arguments of every entry, by C(<menu>#<label>).
  returned: always
  type: dict
files:
  description: Files of the tree listed in C(SHA256SUMS) (empty in check mode when nothing exists yet).
  returned: always
  type: list
  elements: str
tree_sha256:
  description: sha256 of C(SHA256SUMS), a digest of the whole tree (null in check mode when nothing exists yet).
  returned: always
  type: str
menu_checks:
  description: How each menu was checked.
  returned: when built
  type: list
  elements: str
durations:
  description: Seconds per stage.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine
from ansible_collections.ovirt.node_plugins.plugins.module_utils._pxe import PxeTreeRequest, build_pxe_tree

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "iso_name": {"type": "str"},
    "label": {"type": "str", "default": "ovirt-node"},
    "title": {"type": "str"},
    "menu_prefix": {"type": "str", "default": ""},
    "ipappend": {"type": "bool", "default": False},
    "http_url": {"type": "str"},
    "extra_kernel_args": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "int", "default": 5},
    "serial": {"type": "str"},
    "efi_bootloader": {"type": "bool", "default": True},
    "release_version": {"type": "str"},
    "force": {"type": "bool", "default": False},
}
# Options whose empty value means unset (roles pass "" for an undefined variable).
_EMPTY_IS_UNSET = ("iso_name", "title", "http_url", "serial", "release_version")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    options = {name: module.params[name] for name in ARGUMENT_SPEC}
    options.update({name: options[name] or None for name in _EMPTY_IS_UNSET})
    request = PxeTreeRequest(check_mode=module.check_mode, **options)
    result = run_engine(module, build_pxe_tree, request, requires=("pycdlib",), outputs=("dest",))
    module.exit_json(**result.to_dict())


if __name__ == "__main__":
    main()
