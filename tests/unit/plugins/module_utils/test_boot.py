# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NODE-MARKER parsing from messy console logs, and the QEMU runner's stop rules (with real processes)."""
from __future__ import annotations

import base64
import shlex

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import (
    BOOT_PATHS, boot_iso, boot_pxe, parse_marker, run_qemu)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError

VERSION_FILE = ("PRODUCT='oVirt Node Hypervisor'\nPRODUCT_SHORT='oVirt Node Hypervisor'\nPRODUCT_CODE=ovirt-node-iso\n"
                "VERSION=2.5.0\nRELEASE=1.0.fc17\n")
MOUNTS = ("proc /proc proc rw 0 0\n/dev/sr0 /run/initramfs/live iso9660 ro 0 0\n"
          "/dev/mapper/live-rw / ext4 rw,relatime 0 0\n")
CMDLINE = "BOOT_IMAGE=vmlinuz0 initrd=initrd0.img root=live:CDLABEL=ovirt-node-iso-2.5.0-1.0.fc17 console=ttyS0\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def marker_line(*extra: tuple[str, str], version_file: str = VERSION_FILE) -> str:
    fields = [("version_file", version_file), ("system_release", "oVirt Node Hypervisor release 2.5.0 (1.0.fc17)\n"),
              ("cmdline", CMDLINE), ("mounts", MOUNTS), *extra]
    return "NODE-MARKER v=1 " + " ".join(f"{key}={b64(value)}" for key, value in fields) + " end=1"


def test_marker_amid_noise_with_crlf():
    console = ("\x1b[2J\x1b[1;1HSeaBIOS (version 1.16)\r\nBooting from DVD/CD...\r\n"
               "[    2.1] random: crng init done\r\n" + marker_line() + "\r\n[   13.1] reboot: Power down\r\n")
    marker = parse_marker(console)
    assert marker["product"] == "oVirt Node Hypervisor"
    assert (marker["version"], marker["release"]) == ("2.5.0", "1.0.fc17")
    assert marker["version_info"]["PRODUCT_CODE"] == "ovirt-node-iso"
    assert marker["system_release"] == "oVirt Node Hypervisor release 2.5.0 (1.0.fc17)"
    assert marker["cmdline"] == CMDLINE.strip()
    assert (marker["root_device"], marker["root_fstype"]) == ("/dev/mapper/live-rw", "ext4")
    assert marker["plugins"] == [] and marker["extras"] == []


def test_marker_after_other_text_on_the_same_line():
    marker = parse_marker("[  OK  ] Reached target Switch Root." + marker_line() + "\n")
    assert marker["version"] == "2.5.0"


def test_plugins_and_extras():
    records = (("plugin", "Name:vendor-agent\nVersion:1.0-1.noarch\nInstall Date:Wed Nov 25 2026\n"),
               ("plugin", "Name:hello-plugin\nVersion:0.1-1.noarch\nInstall Date:Wed Nov 25 2026\n"),
               ("plugin", "7777,tcp\n"),  # vendor-agent.firewall: no Name: line, not a plugin record
               ("extra", "vendor-agent post ran 1.0-1 (1)\nsecond line\n"),
               ("extra", "hello-plugin post ran\n"))
    marker = parse_marker(marker_line(*records))
    assert marker["plugins"] == [{"name": "hello-plugin", "version": "0.1-1.noarch"},
                                 {"name": "vendor-agent", "version": "1.0-1.noarch"}]
    assert marker["extras"] == ["vendor-agent post ran 1.0-1 (1)", "second line", "hello-plugin post ran"]


def test_truncated_line_is_ignored():
    line = marker_line()
    assert parse_marker(line[: len(line) // 2]) is None
    assert parse_marker(line[:-len(" end=1")]) is None
    # A cut line after a complete one does not hide the complete one.
    other = marker_line(version_file=VERSION_FILE.replace("2.5.0", "2.6.0"))
    assert parse_marker(other + "\n" + line[:40] + "\n")["version"] == "2.6.0"


def test_garbled_value_is_rejected():
    line = marker_line().replace("cmdline=", "cmdline=!!", 1)
    assert parse_marker(line) is None


def test_last_complete_marker_wins_and_unknown_keys_are_ignored():
    first = marker_line()
    second = marker_line(("future_key", "whatever"), version_file=VERSION_FILE.replace("2.5.0", "3.0.0"))
    assert parse_marker(first + "\n" + second + "\n")["version"] == "3.0.0"


def test_no_marker():
    assert parse_marker("") is None
    assert parse_marker("NODE-MARKER\nNODE-MARKER v=2 a=b end=1\nlogin: ") is None


def _fake_qemu(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_runner_stops_at_the_marker_and_keeps_the_log():
    script = f"echo booting; printf '%s\\r\\n' {shlex.quote(marker_line())}; sleep 60"
    result = run_qemu(_fake_qemu(script), path="cd-bios", timeout=30, poweroff_grace=0.5)
    assert result.ok and result.reason == "NODE-MARKER line seen"
    assert result.marker["version"] == "2.5.0"
    assert "booting" in result.log and result.seconds < 15


def test_runner_kills_at_the_timeout():
    result = run_qemu(_fake_qemu("echo 'dracut emergency shell'; sleep 60"), path="disk-uefi", timeout=1)
    assert not result.ok and result.marker is None
    assert "within 1 s" in result.reason and "dracut emergency shell" in result.log


def test_runner_reports_an_exit_without_marker():
    result = run_qemu(_fake_qemu("echo 'Kernel panic'; exit 3"), path="cd-uefi", timeout=30)
    assert not result.ok and "exited with code 3" in result.reason and "Kernel panic" in result.log


def test_runner_stops_early_on_a_failure_line():
    script = "echo 'Checking: 100.0%'; echo 'Entering emergency mode. Exit the shell to continue.'; exec sleep 60"
    result = run_qemu(_fake_qemu(script), path="cd-bios", timeout=30)
    assert not result.ok and "emergency mode" in result.reason and result.seconds < 15
    # Without a failure pattern the same boot runs into the timeout.
    result = run_qemu(_fake_qemu(script), path="cd-bios", timeout=1, failure_regex=None)
    assert not result.ok and "within 1 s" in result.reason


def test_marker_regex_for_images_without_a_marker():
    result = run_qemu(_fake_qemu("echo 'Welcome'; echo 'localhost login: '; sleep 60"), path="cd-bios",
                      timeout=30, marker_regex=r"^\S+ login: ", poweroff_grace=0.5)
    assert result.ok and result.marker is None and "login" in result.reason


def test_bad_arguments_are_refused(tmp_path):
    assert BOOT_PATHS == ("cd-bios", "cd-uefi", "disk-bios", "disk-uefi")
    with pytest.raises(NodePluginError, match="unknown boot path"):
        boot_iso(str(tmp_path / "x.iso"), "floppy-bios")
    with pytest.raises(NodePluginError, match="ISO not found"):
        boot_iso(str(tmp_path / "x.iso"), "cd-bios")
    with pytest.raises(NodePluginError, match="boot file 'pxelinux.0' not found"):
        boot_pxe(str(tmp_path))
