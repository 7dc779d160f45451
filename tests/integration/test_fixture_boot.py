# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fixture ISO boots on every path (CD and hybrid disk, BIOS and UEFI, PXE, rd.live.check).

All boots of this module run once, two at a time (TCG guests on 2 cores do not slow each other),
in one module fixture; the tests then read the results.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import BOOT_PATHS, BootResult, boot_iso, boot_pxe
from tests.fixtures.nodeiso import FixtureSpec
from tests.fixtures.pxe import build_pxe_tree

CORRUPT_TIMEOUT = 240
BOOT_TIMEOUT = 420  # generous: the machine is shared, and TCG boots slow down under load
PLUGINS_SPEC = FixtureSpec(plugins=("hello-plugin", "vendor-agent", "vendor-agent-lib"))


def _explain(result: BootResult) -> str:
    return f"{result.path}: {result.reason} after {result.seconds} s; console tail:\n{result.log[-3000:]}"


def _corrupt_copy(iso: str, dest: str) -> str:
    """A copy of iso with one byte flipped inside LiveOS/squashfs.img (the implanted md5 no longer matches)."""
    report = subprocess.run(["xorriso", "-indev", iso, "-find", "/LiveOS/squashfs.img", "-exec", "report_lba"],
                            check=True, capture_output=True, text=True).stdout
    start_lba, blocks = map(int, re.search(r"File data lba:\s+\d+\s*,\s*(\d+)\s*,\s*(\d+)", report).groups())
    shutil.copyfile(iso, dest)
    with open(dest, "r+b") as handle:
        handle.seek((start_lba + blocks // 2) * 2048 + 100)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return dest


@pytest.fixture(scope="module")
def boots(node_iso, node_iso_factory, tmp_path_factory) -> dict[str, BootResult]:
    check_iso = node_iso_factory(FixtureSpec(extra_kernel_args="rd.live.check"))
    plugins_iso = node_iso_factory(PLUGINS_SPEC)
    tree = build_pxe_tree(node_iso)
    jobs = {path: (boot_iso, (node_iso.iso, path)) for path in BOOT_PATHS}
    jobs["pxe-bios"] = (boot_pxe, (tree.tftp_root, tree.bootfile))
    jobs["cd-bios-check"] = (boot_iso, (check_iso.iso, "cd-bios"))
    jobs["disk-bios-plugins"] = (boot_iso, (plugins_iso.iso, "disk-bios"))
    corrupt = _corrupt_copy(check_iso.iso, str(tmp_path_factory.mktemp("corrupt") / "corrupt.iso"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {"cd-bios-check-corrupt": pool.submit(boot_iso, corrupt, "cd-bios", timeout=CORRUPT_TIMEOUT)}
        futures.update({name: pool.submit(func, *args, timeout=BOOT_TIMEOUT) for name, (func, args) in jobs.items()})
        results = {name: future.result() for name, future in futures.items()}
    for name, result in results.items():
        print(f"boot {name}: ok={result.ok} after {result.seconds} s ({result.reason})")
    return results


@pytest.mark.parametrize("path", BOOT_PATHS)
def test_iso_boots_to_the_live_root_and_reports(boots, node_iso, path):
    result = boots[path]
    assert result.ok, _explain(result)
    marker = result.marker
    assert marker["product"] == "oVirt Node Hypervisor"
    assert (marker["version"], marker["release"]) == ("2.5.0", "1.0.fc17")
    assert marker["system_release"] == "oVirt Node Hypervisor release 2.5.0 (1.0.fc17)"
    assert f"root=live:CDLABEL={node_iso.volume_id}" in marker["cmdline"].split()
    assert "console=ttyS0" in marker["cmdline"].split()
    # The init that printed the marker ran on the device-mapper snapshot of the live image.
    assert (marker["root_device"], marker["root_fstype"]) == ("/dev/mapper/live-rw", "ext4")
    assert marker["plugins"] == [] and marker["extras"] == []


def test_uefi_paths_boot_through_grub_and_bios_paths_through_isolinux(boots):
    for path in ("cd-uefi", "disk-uefi"):
        assert "GRUB config: " in boots[path].log and "BOOT_IMAGE=/isolinux/vmlinuz0" in boots[path].marker["cmdline"]
    for path in ("cd-bios", "disk-bios"):
        assert "GRUB" not in boots[path].log and "BOOT_IMAGE=vmlinuz0" in boots[path].marker["cmdline"]


def test_pxe_tree_boots_with_the_iso_inside_the_initrd(boots, node_iso):
    result = boots["pxe-bios"]
    assert result.ok, _explain(result)
    args = result.marker["cmdline"].split()
    assert "rootflags=loop" in args and f"root=live:/{node_iso.volume_id}.iso" in args
    assert result.marker["version"] == "2.5.0"
    assert result.marker["system_release"] == "oVirt Node Hypervisor release 2.5.0 (1.0.fc17)"


def test_media_check_at_boot_passes(boots):
    result = boots["cd-bios-check"]
    assert result.ok, _explain(result)
    assert "rd.live.check" in result.marker["cmdline"].split()
    assert "Checking: 100" in result.log and "the result is: PASS" in result.log
    assert result.marker["root_device"] == "/dev/mapper/live-rw"
    assert "Checking: " not in boots["cd-bios"].log


def test_media_check_stops_a_corrupted_iso_and_the_harness_reports_it(boots):
    result = boots["cd-bios-check-corrupt"]
    assert not result.ok and result.marker is None
    assert "the result is: FAIL" in result.log, _explain(result)
    # The harness stops at dracut's emergency shell instead of waiting for the timeout.
    assert "the console shows a failed boot" in result.reason and result.seconds < CORRUPT_TIMEOUT


def test_marker_lists_installed_plugins_and_their_proofs(boots):
    """The init reads /etc/ovirt-plugins.d records (not the .firewall file) and /etc/node-marker.d."""
    result = boots["disk-bios-plugins"]
    assert result.ok, _explain(result)
    assert result.marker["plugins"] == [{"name": "hello-plugin", "version": "0.1-1.noarch"},
                                        {"name": "vendor-agent", "version": "1.0-1.noarch"},
                                        {"name": "vendor-agent-lib", "version": "1.0-1.noarch"}]
    assert sorted(result.marker["extras"]) == [f"{name} preinstalled by the fixture builder"
                                               for name in ("hello-plugin", "vendor-agent", "vendor-agent-lib")]


def test_boot_time_is_reported(boots):
    for name, result in boots.items():
        if name.endswith("-corrupt"):
            continue
        assert 0 < result.seconds < BOOT_TIMEOUT, name
        assert result.log.startswith("$ ") and "NODE-MARKER" in result.log, name
