# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_pxe_tree on a fixture ISO with a plugin, booted over the network in QEMU: BIOS (pxelinux) and UEFI (GRUB)."""
from __future__ import annotations

import concurrent.futures
import gzip
import os
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import boot_pxe
from ansible_collections.ovirt.node_plugins.plugins.module_utils._pxe import PxeTreeRequest, build_pxe_tree
from tests.fixtures.nodeiso import FixtureSpec


@pytest.fixture(scope="module")
def plugin_iso(node_iso_factory):
    """The fixture ISO with vendor-agent preinstalled as a plugin (its record is in /etc/ovirt-plugins.d)."""
    return node_iso_factory(FixtureSpec(plugins=("vendor-agent",)))


@pytest.fixture(scope="module")
def tree(plugin_iso, tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("pxe") / "tftpboot")
    result = build_pxe_tree(PxeTreeRequest(src=plugin_iso.iso, dest=dest, iso_name="node.iso", ipappend=True,
                                           http_url="http://10.0.2.2:8080/node"))
    assert result.changed and result.reason.startswith("built")
    return result


def test_tree_is_livecd_iso_to_pxeboot_compatible(tree, plugin_iso, tmp_path):
    dest = tree.dest
    subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"], cwd=dest, check=True)
    # initrd0.img = the ISO's initrd, zero padding to 4 bytes, then a gzip'd newc cpio holding /node.iso.
    iso_initrd = tmp_path / "initrd-iso.img"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", plugin_iso.iso, "-extract", "/isolinux/initrd0.img",
                    str(iso_initrd)], check=True, capture_output=True)
    head = iso_initrd.read_bytes()
    with open(os.path.join(dest, "initrd0.img"), "rb") as handle:
        assert handle.read(len(head)) == head
        padding = handle.read(-len(head) % 4)
        assert padding == b"\0" * len(padding)
        assert handle.tell() % 4 == 0
        archive = gzip.decompress(handle.read())
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True).stdout
    assert listing.decode().split() == ["node.iso"]
    (tmp_path / "unpacked").mkdir()
    subprocess.run(["cpio", "-i", "--quiet"], input=archive, cwd=tmp_path / "unpacked", check=True)
    stripped = subprocess.run(["xorriso", "-indev", str(tmp_path / "unpacked" / "node.iso"), "-find", "/", "-type", "f"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert stripped == ["'/LiveOS/squashfs.img'"]
    volume = subprocess.run(["xorriso", "-indev", str(tmp_path / "unpacked" / "node.iso"), "-pvd_info"],
                            capture_output=True, text=True, check=True).stdout
    assert f"Volume Id    : {plugin_iso.volume_id}" in volume
    assert os.path.getsize(os.path.join(dest, "squashfs.img")) > 0  # the HTTP variant's root


def test_tree_boots_over_bios_and_uefi_pxe_with_the_plugin(tree):
    # Two boots at once: they do not slow each other down on two cores (docs/design-notes.md, "Measured").
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        bios = pool.submit(boot_pxe, tree.dest, "pxelinux.0", timeout=300)
        uefi = pool.submit(boot_pxe, tree.dest, "BOOTX64.EFI", uefi=True, timeout=300)
        results = {"bios": bios.result(), "uefi": uefi.result()}
    for name, booted in results.items():
        assert booted.ok, f"{name} PXE boot failed: {booted.reason}\n{booted.log[-4000:]}"
        marker = booted.marker
        assert [plugin["name"] for plugin in marker["plugins"]] == ["vendor-agent"], name
        assert "root=live:/node.iso" in marker["cmdline"] and "rootflags=loop" in marker["cmdline"], name
        print(f"{name} PXE boot: {booted.seconds} s")
    # IPAPPEND 2 is a pxelinux feature: the BIOS boot learns its NIC, GRUB's does not get BOOTIF.
    assert "BOOTIF=01-" in results["bios"].marker["cmdline"]
    assert results["uefi"].marker["cmdline"].startswith("BOOT_IMAGE=/vmlinuz0")
