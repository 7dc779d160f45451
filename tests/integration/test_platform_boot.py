# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EL way of booting UEFI (edk2 code and variable store as pflash, no combined OVMF.fd) boots the
fixture ISO, and a boot's memory follows the setting that module and role options write.

EL/Fedora's edk2-ovmf ships no combined image for ``-bios``; Debian's ovmf ships both kinds, so the
pair boots here exactly as it would there.
"""
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import (
    MEMORY_SETTING, _qemu_base, apply_vm_settings, boot_iso, run_qemu)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._platforms import UefiFirmware

BOOT_TIMEOUT = 420  # generous: the machine is shared, and TCG boots slow down under load
PAIR = UefiFirmware("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd")


def test_uefi_boot_with_a_code_and_variables_pair(node_iso):
    with open(PAIR.variables, "rb") as handle:
        variables_before = handle.read()
    argv = _qemu_base(None, False) + PAIR.qemu_args() + [
        "-nic", "none", "-drive", f"file={node_iso.iso},media=cdrom,readonly=on", "-boot", "d"]
    result = run_qemu(argv, path="cd-uefi-pflash", timeout=BOOT_TIMEOUT)
    assert result.ok, f"{result.reason}\n{result.log[-3000:]}"
    assert result.marker["version"] == "2.5.0"
    assert "if=pflash" in result.log.splitlines()[0]
    with open(PAIR.variables, "rb") as handle:  # snapshot=on: the firmware's writes never reach the file
        assert handle.read() == variables_before
    print(f"UEFI boot with the pflash pair: {result.seconds} s")


def test_boot_memory_follows_the_setting(node_iso, monkeypatch):
    monkeypatch.delenv(MEMORY_SETTING, raising=False)
    apply_vm_settings(boot_memory=768)
    try:
        result = boot_iso(node_iso.iso, "cd-bios", timeout=BOOT_TIMEOUT)
    finally:
        os.environ.pop(MEMORY_SETTING, None)
    assert result.ok, f"{result.reason}\n{result.log[-3000:]}"
    assert " -m 768 " in result.log.splitlines()[0]


def test_too_little_boot_memory_is_refused():
    with pytest.raises(NodePluginError, match="too small for a Node to boot"):
        apply_vm_settings(boot_memory=64)
