# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fixture ISO has the layout of a real oVirt Node ISO, and its image's own rpm works."""
from __future__ import annotations

import bz2
import os
import re
import subprocess

import guestfs  # python3-guestfs, installed by make setup (bindep.txt)
import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._accel import apply_libguestfs_env
from tests.fixtures.nodeiso import FixtureSpec, build_fixture_iso, build_uncached


def _extract(iso: str, dest: str, *members: str) -> None:
    argv = ["xorriso", "-osirrox", "on", "-indev", iso]
    for member in members:
        argv += ["-extract", member, os.path.join(dest, os.path.basename(member))]
    subprocess.run(argv, check=True, capture_output=True)


def _squashfs_facts(iso: str, work: str) -> tuple[str, list[str]]:
    _extract(iso, work, "/LiveOS/squashfs.img")
    squashfs = os.path.join(work, "squashfs.img")
    superblock = subprocess.run(["unsquashfs", "-s", squashfs], check=True, capture_output=True, text=True).stdout
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", squashfs], check=True, capture_output=True,
                             text=True).stdout.split()
    return superblock, listing


def test_md5_is_implanted_and_checks(node_iso):
    result = subprocess.run(["checkisomd5", "--verbose", node_iso.iso], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "the result is: PASS" in result.stdout + result.stderr, result.stderr


def test_el_torito_has_bios_and_uefi_and_hybrid_mbr_gpt(node_iso):
    report = subprocess.run(["xorriso", "-indev", node_iso.iso, "-report_el_torito", "plain",
                             "-report_system_area", "plain"], check=True, capture_output=True, text=True).stdout
    platforms = re.findall(r"^El Torito boot img :\s+\d+\s+(\S+)", report, re.MULTILINE)
    assert platforms == ["BIOS", "UEFI"]
    assert "/isolinux/isolinux.bin" in report and "/isolinux/efiboot.img" in report
    assert re.search(r"System area summary: MBR isohybrid .*GPT", report)


def test_volume_id_and_tree_layout(node_iso, tmp_path):
    assert node_iso.volume_id == "ovirt-node-iso-2.5.0-1.0.fc17"
    listing = subprocess.run(["xorriso", "-indev", node_iso.iso, "-find", "/", "-type", "f"], check=True,
                             capture_output=True, text=True).stdout
    for member in ("isolinux/isolinux.bin", "isolinux/ldlinux.c32", "isolinux/isolinux.cfg", "isolinux/vmlinuz0",
                   "isolinux/initrd0.img", "isolinux/version", "isolinux/efiboot.img", "isolinux/manifest-rpm.txt",
                   "isolinux/manifest-file.txt", "EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grub.cfg", "LiveOS/squashfs.img"):
        assert f"'/{member}'" in listing, member
    _extract(node_iso.iso, str(tmp_path), "/isolinux/version", "/isolinux/isolinux.cfg", "/EFI/BOOT/grub.cfg",
             "/isolinux/manifest-rpm.txt", "/isolinux/manifest-deps.txt", "/isolinux/manifest-owns.txt",
             "/isolinux/efiboot.img")
    version = (tmp_path / "version").read_text(encoding="utf-8")
    assert "PRODUCT='oVirt Node Hypervisor'\n" in version and "VERSION=2.5.0\n" in version
    assert "RELEASE=1.0.fc17\n" in version and re.search(r"^RECIPE_SHA256=[0-9a-f]{64}$", version, re.MULTILINE)
    isolinux = (tmp_path / "isolinux.cfg").read_text(encoding="utf-8")
    assert f"append {node_iso.default_kernel_args}\n" in isolinux and "serial 0 115200" in isolinux
    manifest = (tmp_path / "manifest-rpm.txt").read_text(encoding="utf-8").splitlines()
    assert manifest == sorted(f"{nevra} (none)" for nevra in node_iso.packages)
    deps = bz2.decompress((tmp_path / "manifest-deps.txt").read_bytes()).decode()
    assert "ovirt-node requires libvendorbase.so.1()(64bit)" in deps
    owns = bz2.decompress((tmp_path / "manifest-owns.txt").read_bytes()).decode()
    assert "/etc/ovirt-node/ovirt-node.conf ovirt-node\n" in owns
    # UEFI reads the grub.cfg inside efiboot.img: it must match the copy in the ISO tree.
    inside = subprocess.run(["mtype", "-i", str(tmp_path / "efiboot.img"), "::/EFI/BOOT/grub.cfg"], check=True,
                            capture_output=True, text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert inside == (tmp_path / "grub.cfg").read_text(encoding="utf-8")
    assert f"search --no-floppy --set=root -l '{node_iso.volume_id}'" in inside


def test_image_packages(node_iso):
    names = {nevra.rsplit("-", 2)[0] for nevra in node_iso.packages}
    assert {"ovirt-node", "libvendorbase", "node-logging", "busybox"} <= names
    assert "ovirt-node-2.5.0-1.0.fc17.noarch" in node_iso.packages


@pytest.mark.parametrize("spec", [FixtureSpec(compressor="gzip", root_name="rootfs.img"), FixtureSpec(compressor="zstd")],
                         ids=["gzip-rootfs.img", "zstd-ext3fs.img"])
def test_variants_record_their_compressor_and_root_name(node_iso_factory, spec, tmp_path):
    fixture = node_iso_factory(spec)
    superblock, listing = _squashfs_facts(fixture.iso, str(tmp_path))
    assert f"Compression {spec.compressor}" in superblock
    assert "Block size 131072" in superblock
    assert f"/LiveOS/{spec.root_name}" in listing and fixture.root_image == f"LiveOS/{spec.root_name}"


def test_default_squashfs_is_xz_with_ext3fs_img(node_iso, tmp_path):
    superblock, listing = _squashfs_facts(node_iso.iso, str(tmp_path))
    assert "Compression xz" in superblock and "/LiveOS/ext3fs.img" in listing


def test_cached_build_is_reused(node_iso):
    again = build_fixture_iso(FixtureSpec())
    assert again.iso == node_iso.iso and os.stat(again.iso).st_mtime == os.stat(node_iso.iso).st_mtime


def _sha256(path: str) -> str:
    return subprocess.run(["sha256sum", path], check=True, capture_output=True, text=True).stdout.split()[0]


def test_build_is_reproducible(node_iso, tmp_path):
    """Two builds of the same spec give the same bytes (SOURCE_DATE_EPOCH, pinned times, fixed ids)."""
    spec = FixtureSpec(compressor="gzip")  # gzip: the quickest compressor, same code path
    first = build_uncached(spec, str(tmp_path / "first"))
    second = build_uncached(spec, str(tmp_path / "second"))
    assert _sha256(first) == _sha256(second)
    assert os.path.getsize(first) > 0 and node_iso.iso != first


def test_image_rpm_lists_packages_and_installs_a_plugin_with_scriptlets(node_iso, example_rpms, tmp_path):
    """rpm inside the image (chrooted by libguestfs) reads its database and installs plugin RPMs."""
    _extract(node_iso.iso, str(tmp_path), "/LiveOS/squashfs.img")
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(tmp_path / "sq"), str(tmp_path / "squashfs.img")],
                   check=True, capture_output=True)
    image = str(tmp_path / "sq" / "LiveOS" / "ext3fs.img")
    apply_libguestfs_env()
    handle = guestfs.GuestFS(python_return_dict=True)
    try:
        handle.add_drive_opts(image, format="raw", readonly=True)  # writes go to a throw-away overlay
        handle.launch()
        handle.mount("/dev/sda", "/")
        listed = sorted(handle.command(["rpm", "-qa"]).split())
        assert listed == sorted(node_iso.packages)
        for name in ("vendor-agent", "vendor-agent-lib"):
            handle.upload(example_rpms.by_name[name], f"/tmp/{name}.rpm")
        output = handle.command(["rpm", "-ivh", "/tmp/vendor-agent.rpm", "/tmp/vendor-agent-lib.rpm"])
        assert "vendor-agent-1.0-1" in output
        assert handle.cat("/etc/node-marker.d/vendor-agent") == "vendor-agent post ran 1.0-1 (1)\n"
        assert handle.cat("/etc/ovirt-plugins.d/vendor-agent.firewall").endswith("7777,tcp\n")
        assert "vendor-agent-1.0-1.noarch" in handle.command(["rpm", "-qa"]).split()
        handle.umount_all()
    finally:
        handle.close()
    assert os.path.getsize(image) > 0


def test_big_variant_pads_the_root_with_mixed_content(node_iso_factory):
    """fill_mib adds half compressible text, half random data: the squashfs grows by about half of it."""
    small = node_iso_factory(FixtureSpec(compressor="gzip"))
    big = node_iso_factory(FixtureSpec(compressor="gzip", fill_mib=8))
    growth = os.path.getsize(big.iso) - os.path.getsize(small.iso)
    assert 4 << 20 <= growth <= 8 << 20, growth
