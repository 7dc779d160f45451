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
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Opens and checks the base ISO and every plugin, and reports the output path and the kernel arguments it would write.
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
      - Plugin tarballs (C(<name>-<version>.plugin.tar.gz)), applied in this order.
      - A plugin that an earlier edit installed is upgraded (or reinstalled at the same version).
    type: list
    elements: path
    required: true
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
    "plugins": {"type": "list", "elements": "path", "required": True},
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
# Options that are settings of the run (_boot.apply_vm_settings), not fields of the request.
_SETTINGS = ("accelerator",)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    request = ApplyRequest(check_mode=module.check_mode,
                           **{name: module.params[name] for name in ARGUMENT_SPEC if name not in _SETTINGS})
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
