#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_plugin_apply: rebuild a Node ISO with plugins."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_plugin_apply
short_description: Rebuild an oVirt Node ISO with one or more plugins
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Installs the packages of each plugin into the root filesystem of a Node ISO with the image's
    own C(rpm), runs the plugin's recipe (V(part / --size), V(bootloader --append), C(%pre),
    C(%packages), C(%post)) inside a libguestfs appliance, never on the build host, and writes a
    new ISO that keeps every boot path (BIOS, UEFI, hybrid disk).
  - Records what it did the way oVirt Node users expect it (C(/etc/ovirt-plugins.d) records,
    C(isolinux/updateN) manifests with deltas, V( (Edited\)) in C(/etc/system-release)) and stores a
    machine-readable build record in the ISO, which makes a rerun with the same inputs a quick no-op.
  - Kernel arguments are edited in every boot entry of every loader, including the GRUB config
    inside C(isolinux/efiboot.img) that UEFI firmware reads when booting from a USB stick.
  - The output is written next to O(dest) and moved into place only when complete; the work
    directory is removed on success and on failure.
  - The lifecycle of plugins on an ISO. A plugin that O(src) already holds is upgraded cleanly; the packages its
    older version brought that neither the new version nor anything installed needs are erased with the image's
    own C(rpm), records of packages no longer shipped are removed, its kernel arguments are taken back.
    O(state=absent) removes named plugins the same way. The output carries the plugin tarballs it was built
    with in C(/ovirt-plugins/); O(rebase_from) applies those of another customized ISO to O(src), a newer Node
    release.
  - A plugin of kind C(kmod) gets C(depmod) run for the ISO's kernel and, when the image has dracut, the
    initramfs rebuilt inside the image with the image's own dracut, the modules its recipe declares with
    C(bootloader --append "rd.driver.pre=<module>") included, and placed wherever the base had its initramfs.
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Opens and checks the base ISO and every plugin (for a rebase, the tarballs the other ISO carries), and
      reports the output path, the kernel arguments it would write, the plugins it would remove or upgrade and the
      packages that would go with them (the build keeps those that installed packages still need).
  diff_mode:
    support: full
    details: Shows the kernel arguments of every boot entry and the plugin packages before and after.
  idempotent:
    support: full
  platform:
    platforms: posix
options:
  src:
    description: The base Node ISO.
    type: path
    required: true
  plugins:
    description:
      - With O(state=present), plugin tarballs (C(<name>-<version>.plugin.tar.gz)), applied in this order.
        A plugin that O(src) holds is upgraded (or reinstalled at the same version).
      - With O(state=absent), the names of plugins that O(src) holds, to remove.
      - May be empty with O(rebase_from) (the carried plugins are applied).
    type: list
    elements: path
    default: []
  state:
    description:
      - V(present) applies O(plugins); V(absent) removes the plugins O(plugins) names from O(src), erases the
        packages they brought (unless installed packages need them), deletes their records and persist lists,
        takes back their kernel arguments (an argument a plugin removed comes back where the original Node had
        it in every boot entry) and records the removal in a new C(isolinux/updateN).
    type: str
    choices: [present, absent]
    default: present
  rebase_from:
    description:
      - A customized ISO built by this collection. The plugin tarballs it carries are applied to O(src), typically
        a newer Node release, in the order they were applied; O(plugins) are applied after them (a given plugin
        replaces a carried one of the same name). Each carried tarball must have the digest its build record names
        and is checked like any plugin.
      - A carried plugin whose Node range excludes O(src) is refused before any work, unless O(skip_incompatible).
    type: path
  skip_incompatible:
    description: With O(rebase_from), leave out (and report in RV(skipped_plugins)) the carried plugins whose Node
      range excludes O(src), instead of refusing.
    type: bool
    default: false
  dest:
    description:
      - The output ISO, or an existing directory where edit-node's name
        C(<base name>-<plugin1>_<plugin2>.iso) is used.
    type: path
    required: true
  volume_id:
    description:
      - Rename the ISO volume (at most 32 characters). Every C(root=live:CDLABEL=) and GRUB
        C(search) label in every boot config is rewritten to match.
      - Unset keeps the base's volume id.
    type: str
  extra_kernel_args:
    description: Kernel arguments added to every boot entry, after those of the plugins' recipes.
    type: list
    elements: str
    default: []
  remove_kernel_args:
    description: Kernel arguments removed from every boot entry, by name (V(quiet), or V(console) for every V(console=...)).
    type: list
    elements: str
    default: []
  require_signed:
    description:
      - Refuse plugins whose packages are not signed, or whose manifest signature does not verify
        with O(keyring). When false, unsigned packages mark the image V((Edited, Unsigned\)).
    type: bool
    default: false
  keyring:
    description: OpenPGP public keys that plugin manifest signatures must verify with.
    type: path
  allow_unlisted_paths:
    description:
      - Install packages even when they put files outside the allowed paths of the plugin
        writer's guide. Use only for plugins you trust; the check runs before anything is installed.
    type: bool
    default: false
  nodeps:
    description: Install without dependency checks against the image's rpm database.
    type: bool
    default: false
  selinux_relabel:
    description:
      - V(auto) relabels with the image's own C(file_contexts) when it enforces an SELinux policy;
        V(always) fails when it does not; V(never) skips relabelling.
    type: str
    choices: [auto, always, never]
    default: auto
  compression:
    description: Squashfs compressor of the output. Unset keeps the base's (and its block size in any case).
    type: str
    choices: [gzip, xz, zstd, lzo, lz4, lzma]
  keep_workdir:
    description: Keep the work directory (next to the output) for debugging; its path is returned.
    type: bool
    default: false
  force:
    description: Rebuild even when the output's build record matches the inputs.
    type: bool
    default: false
  accelerator:
    description:
      - Accelerator of the libguestfs appliance. V(kvm) needs a usable C(/dev/kvm); V(tcg) emulates (always
        works, slower); V(auto) uses KVM only when a kernel really boots under it.
      - Unset uses the C(OVIRT_NODE_PLUGINS_ACCEL) setting of the host the module runs on, else V(auto).
    type: str
    choices: [auto, tcg, kvm]
requirements:
  - pycdlib
  - xorriso
  - squashfs-tools
  - mtools
  - libguestfs with its Python bindings
  - rpm with its Python bindings
seealso:
  - module: ovirt.node_plugins.node_plugin_build
  - module: ovirt.node_plugins.node_iso_verify
"""

EXAMPLES = r"""
- name: Rebuild the Node ISO with the vendor agent
  ovirt.node_plugins.node_plugin_apply:
    src: /srv/iso/ovirt-node-iso-2.5.0-1.0.fc17.iso
    plugins:
      - /srv/plugins/vendor-agent-1.0.plugin.tar.gz
    dest: /srv/iso/out/
    extra_kernel_args:
      - vendor.debug=1
  register: rebuilt

- name: Remove the vendor agent from a customized ISO (its packages, records and kernel arguments go)
  ovirt.node_plugins.node_plugin_apply:
    src: /srv/iso/out/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso
    plugins: [vendor-agent]
    state: absent
    dest: /srv/iso/out/node-without-agent.iso

- name: The same plugins on the next Node release
  ovirt.node_plugins.node_plugin_apply:
    src: /srv/iso/ovirt-node-iso-2.6.0-1.0.fc17.iso
    rebase_from: /srv/iso/out/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso
    skip_incompatible: true
    dest: /srv/iso/out/node-2.6.0-custom.iso

- name: Two plugins, a new volume label, and no 'quiet'
  ovirt.node_plugins.node_plugin_apply:
    src: /srv/iso/ovirt-node-iso-2.5.0-1.0.fc17.iso
    plugins:
      - /srv/plugins/vendor-agent-1.1.plugin.tar.gz
      - /srv/plugins/hello-plugin-0.1.plugin.tar.gz
    dest: /srv/iso/out/node-custom.iso
    volume_id: node-custom-2.5.0
    remove_kernel_args: [quiet]
    require_signed: true
    keyring: /etc/pki/vendor.asc
"""

RETURN = r"""
path:
  description: The output ISO.
  returned: always
  type: str
  sample: /srv/iso/out/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso
reason:
  description: Why the module did or did not build (V(built), V(would build), or why the output is up to date).
  returned: always
  type: str
sha256:
  description: sha256 of the output ISO (null in check mode when nothing exists yet).
  returned: always
  type: str
size:
  description: Size of the output ISO in bytes.
  returned: always
  type: int
base:
  description: Facts of the base ISO (path, sha256, volume_id, product, version, release).
  returned: always
  type: dict
plugins:
  description: The plugins applied, in order (name, version, sha256, path, packages).
  returned: always
  type: list
  elements: dict
packages:
  description: Plugin packages installed, by plugin name (C(name-version-release.arch)).
  returned: when built
  type: dict
packages_before:
  description: Packages of the image before the edit.
  returned: when built
  type: list
  elements: str
packages_after:
  description: Packages of the image after the edit.
  returned: when built
  type: list
  elements: str
kernel_args_before:
  description: Kernel arguments of every boot entry before the edit, by C(<config>#<label>).
  returned: always
  type: dict
kernel_args:
  description: Kernel arguments of every boot entry after the edit, by C(<config>#<label>).
  returned: always
  type: dict
update:
  description: N of the C(isolinux/updateN) folder this edit added.
  returned: when built
  type: int
scriptlet_logs:
  description: Output of every step that ran vendor code in the appliance (plugin, step, exit_status, output).
  returned: when built
  type: list
  elements: dict
selinux:
  description: What was done about SELinux labels.
  returned: when built
  type: str
squashfs:
  description:
    - How the new C(LiveOS/squashfs.img) was made. V(incremental) copies the base's compressed blocks and
      compresses only the blocks the edit changed; V(full) runs C(mksquashfs) on the whole tree (a
      O(compression) change, or a layout the incremental writer does not handle).
    - Empty when nothing was built.
  returned: always
  type: dict
  contains:
    path_taken:
      description: V(incremental) or V(full).
      type: str
    reason:
      description: Why that path (for V(full)), or how many blocks were reused and compressed.
      type: str
    blocks_total:
      description: Blocks of the new root image (incremental path).
      type: int
    blocks_reused:
      description: Compressed blocks copied from the base (incremental path).
      type: int
    blocks_compressed:
      description: Blocks compressed anew (incremental path).
      type: int
removed:
  description: The plugins this edit removes (name, version, and brought, the packages each brought).
  returned: always
  type: list
  elements: dict
upgraded:
  description: Held plugins that a given one upgrades or reinstalls (name, from, to).
  returned: always
  type: list
  elements: dict
erased:
  description:
    - Packages erased because the plugins that brought them went (removed, or upgraded to a version without them).
    - In check mode, the packages that would go unless installed packages still need them.
  returned: always
  type: list
  elements: str
kept:
  description: Packages a departing plugin brought that stay because installed packages need them, with the reason.
  returned: always
  type: dict
skipped_plugins:
  description: With O(rebase_from) and O(skip_incompatible), the carried plugins left out (name, version, reason).
  returned: always
  type: list
  elements: dict
initramfs:
  description:
    - What the edit did about the initramfs when it installed, upgraded or removed a C(kmod) plugin; empty otherwise.
  returned: always
  type: dict
  contains:
    kernel_version:
      description: The ISO's kernel release (C(depmod) ran for it); null when it could not be told.
      type: str
    rebuild:
      description: Whether the image's dracut rebuilt the initramfs.
      type: bool
    drivers:
      description: Early-boot modules the kmod plugins declare (C(rd.driver.pre=)), added to the initramfs.
      type: list
      elements: str
    files:
      description: ISO paths the rebuilt initramfs replaced.
      type: list
      elements: str
    efi_files:
      description: Paths inside EFI boot images the rebuilt initramfs replaced, by image.
      type: dict
    reason:
      description: Why it was or was not rebuilt.
      type: str
    sha256:
      description: sha256 of the rebuilt initramfs (when built).
      type: str
notes:
  description: What the edit could not do as asked (an argument a removed plugin had removed that the Node had in
    some boot entries only stays removed).
  returned: always
  type: list
  elements: str
durations:
  description: Seconds per stage (prepare, plan, extract, image, squashfs, iso).
  returned: always
  type: dict
workdir:
  description: The work directory, when O(keep_workdir) kept it.
  returned: when O(keep_workdir=true)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._accel import CHOICES as ACCELERATORS
from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import ApplyRequest, apply_plugins
from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import with_vm_settings
from ansible_collections.ovirt.node_plugins.plugins.module_utils._choices import COMPRESSORS, SELINUX_RELABEL
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "plugins": {"type": "list", "elements": "path", "default": []},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "rebase_from": {"type": "path"},
    "skip_incompatible": {"type": "bool", "default": False},
    "dest": {"type": "path", "required": True},
    "volume_id": {"type": "str"},
    "extra_kernel_args": {"type": "list", "elements": "str", "default": []},
    "remove_kernel_args": {"type": "list", "elements": "str", "default": []},
    "require_signed": {"type": "bool", "default": False},
    "keyring": {"type": "path"},
    "allow_unlisted_paths": {"type": "bool", "default": False},
    "nodeps": {"type": "bool", "default": False},
    "selinux_relabel": {"type": "str", "choices": list(SELINUX_RELABEL), "default": "auto"},
    "compression": {"type": "str", "choices": list(COMPRESSORS)},
    "keep_workdir": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "accelerator": {"type": "str", "choices": list(ACCELERATORS)},
}
# Options that are settings of the run (_boot.apply_vm_settings) or say what plugins are, not fields of the request.
_SETTINGS = ("accelerator", "state")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    fields = {name: module.params[name] for name in ARGUMENT_SPEC if name not in _SETTINGS}
    if module.params["state"] == "absent":  # plugins are then the names of the plugins to remove
        fields["remove"], fields["plugins"] = fields["plugins"], []
    request = ApplyRequest(check_mode=module.check_mode, **fields)
    engine = with_vm_settings(apply_plugins, accelerator=module.params["accelerator"])
    result = run_engine(module, engine, request,
                        requires=("pycdlib", "rpm", "guestfs", "jsonschema", "pykickstart"), outputs=("dest",))
    output = result.to_dict()
    if module._diff:
        output["diff"] = {
            "before": {"kernel_args": result.kernel_args_before, "packages": result.packages_before},
            "after": {"kernel_args": result.kernel_args,
                      "packages": result.packages_after or sorted(
                          {nevra for plugin in result.plugins for nevra in plugin["packages"]})},
        }
    module.exit_json(**output)


if __name__ == "__main__":
    main()
