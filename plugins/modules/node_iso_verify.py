#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_iso_verify: certify a rebuilt Node ISO."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_iso_verify
short_description: Certify a rebuilt oVirt Node ISO
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Checks everything a rebuilt Node ISO claims and reports each check separately, with its evidence
    and the violations a person can act on.
  - C(media) the implanted md5 (isomd5sum-compatible), the volume size, a readable file system.
  - C(boot_records) BIOS and UEFI El Torito entries pointing at real files, the hybrid MBR/GPT
    (compared with O(base) when given), every V(root=live:CDLABEL=) equal to the volume id, and the
    GRUB config inside C(efiboot.img) equal to the ISO tree's.
  - C(plugins) the build record, each plugin package installed with its NEVRA and passing C(rpm -V)
    (changed config files are reported, not failed), the C(/etc/ovirt-plugins.d) records, the
    C(isolinux/updateN) manifests; O(plugins) must match the recorded digests.
  - C(core) every package of the base image still installed with the same NEVRA and passing
    C(rpm -V), no base file owned by a plugin package, and (with O(base)) files outside any package
    unchanged except where plugins may write.
  - C(compatibility) each plugin's Node version range admits the image.
  - C(boot) (optional, see O(boot_test)) boots the ISO in QEMU and checks that the running system
    lists the plugins.
  - Fails with the list of violations when the ISO is not certified. The JSON report is written
    (atomically) either way when O(report) is set.
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Runs every check; the report is not written.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The report is rewritten only when its content (apart from its time) changes.
  platform:
    platforms: posix
options:
  src:
    description: The ISO to certify.
    type: path
    required: true
  base:
    description:
      - The original ISO the rebuild started from. Adds the comparison of boot records and of
        files outside packages. Unset compares against the manifests recorded in the ISO.
    type: path
  plugins:
    description: Plugin tarballs the ISO must have been built with (their sha256 must be in the build record).
    type: list
    elements: path
    default: []
  boot_test:
    description: Boot the ISO in QEMU from a CD with V(bios) or V(uefi) firmware, on V(all) four paths (CD and hybrid disk, BIOS and UEFI), or V(none).
    type: str
    choices: [none, bios, uefi, all]
    default: none
  boot_timeout:
    description: Seconds each boot may take before it counts as failed.
    type: int
    default: 300
  boot_memory:
    description:
      - Memory of the booted guest in MiB (at least 256).
      - Unset uses the C(OVIRT_NODE_PLUGINS_BOOT_MEMORY) setting of the host the module runs on, else 1024.
    type: int
  accelerator:
    description:
      - Accelerator of QEMU and the libguestfs appliance. V(kvm) needs a usable C(/dev/kvm); V(tcg) emulates
        (always works, slower); V(auto) uses KVM only when a kernel really boots under it.
      - Unset uses the C(OVIRT_NODE_PLUGINS_ACCEL) setting of the host the module runs on, else V(auto).
    type: str
    choices: [auto, tcg, kvm]
  deep:
    description:
      - With O(base), the files that differ from the base are found from the blocks that differ (only
        those are decompressed), and only the packages owning changed files are verified with C(rpm -V)
        beside the plugins' packages.
      - V(true) verifies every package with C(rpm -Va) and compares every file of both images instead
        (slower, it reads both root images whole).
    type: bool
    default: false
  marker_regex:
    description:
      - For ISOs without the test marker line (a real oVirt Node), a regular expression whose match on
        the serial console proves the boot, such as V(login:). Unset expects the C(NODE-MARKER) line.
    type: str
  report:
    description: Where to write the JSON certification report. Unset writes none.
    type: path
  sign_key:
    description: OpenPGP key id to sign the report with (detached, C(<report>.asc)). Unset leaves it unsigned.
    type: str
  gnupg_home:
    description: GnuPG home holding O(sign_key). Unset uses the default of the user running the module.
    type: path
requirements:
  - pycdlib
  - xorriso
  - squashfs-tools
  - e2fsprogs
  - libguestfs with its Python bindings
  - QEMU and OVMF (for O(boot_test))
seealso:
  - module: ovirt.node_plugins.node_plugin_apply
"""

EXAMPLES = r"""
- name: Certify the rebuilt ISO against its base and plugins, with a UEFI boot test
  ovirt.node_plugins.node_iso_verify:
    src: /srv/iso/out/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso
    base: /srv/iso/ovirt-node-iso-2.5.0-1.0.fc17.iso
    plugins:
      - /srv/plugins/vendor-agent-1.0.plugin.tar.gz
    boot_test: uefi
    report: /srv/iso/out/certification.json

- name: Certify a real Node ISO, proving the boot by its login prompt
  ovirt.node_plugins.node_iso_verify:
    src: /srv/iso/out/rhevh-custom.iso
    boot_test: bios
    marker_regex: "login:"
    report: /srv/iso/out/rhevh-custom.json
    sign_key: release@example.com
"""

RETURN = r"""
certified:
  description: True when every check passed.
  returned: always
  type: bool
sha256:
  description: sha256 of the ISO.
  returned: always
  type: str
checks:
  description: Each check with C(name), C(passed), C(evidence) and C(violations).
  returned: always
  type: list
  elements: dict
violations:
  description: Every violation, prefixed with its check's name.
  returned: always
  type: list
  elements: str
report:
  description: Path of the JSON report (null when O(report) is unset).
  returned: always
  type: str
signature:
  description: Path of the detached signature of the report, when O(sign_key) is set.
  returned: always
  type: str
durations:
  description:
    - Seconds per stage, and C(boot <path>) for each boot of the boot test (how long it took to reach the
      live root). Timings are not part of the report, so a slower rerun does not change it.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._accel import CHOICES as ACCELERATORS
from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import with_vm_settings
from ansible_collections.ovirt.node_plugins.plugins.module_utils._choices import BOOT_TESTS
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine
from ansible_collections.ovirt.node_plugins.plugins.module_utils._verify import VerifyRequest, verify_iso

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "base": {"type": "path"},
    "plugins": {"type": "list", "elements": "path", "default": []},
    "boot_test": {"type": "str", "choices": list(BOOT_TESTS), "default": "none"},
    "boot_timeout": {"type": "int", "default": 300},
    "boot_memory": {"type": "int"},
    "accelerator": {"type": "str", "choices": list(ACCELERATORS)},
    "marker_regex": {"type": "str"},
    "deep": {"type": "bool", "default": False},
    "report": {"type": "path"},
    "sign_key": {"type": "str", "no_log": False},
    "gnupg_home": {"type": "path"},
}
# Options that are settings of the run (_boot.apply_vm_settings), not fields of the request.
_SETTINGS = ("boot_memory", "accelerator")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    request = VerifyRequest(check_mode=module.check_mode,
                            **{name: module.params[name] for name in ARGUMENT_SPEC if name not in _SETTINGS})
    engine = with_vm_settings(verify_iso, accelerator=module.params["accelerator"],
                              boot_memory=module.params["boot_memory"])
    result = run_engine(module, engine, request, requires=("pycdlib", "rpm", "guestfs"), outputs=("report",))
    output = result.to_dict()
    output["changed"] = result.report_changed
    if not result.certified:
        module.fail_json(msg="the ISO is not certified: " + "; ".join(result.violations), **output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
