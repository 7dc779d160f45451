# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small LiveOS-like ISOs for the ISO-layer unit tests, built once per session with real tools.

The layout follows a Node ISO (isolinux/, EFI/BOOT/, efiboot.img, LiveOS/squashfs.img holding an
ext4 root image with /etc/default/version, /etc/system-release, an rpm database and plugin
records), but nothing in it boots: the kernel and initrd are placeholders. Booting is the job of
the fixture ISO in tests/fixtures.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile

ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"
ISOHDPFX = "/usr/lib/ISOLINUX/isohdpfx.bin"
PRODUCT = "oVirt Node Hypervisor"
VERSION = "3.1.0"
RELEASE = "0.1.el6"
VOLUME_ID = f"ovirt-node-iso-{VERSION}-{RELEASE}"
PACKAGE_NAME = "ovirt-node-testpkg"
PLUGIN_RECORD = f"Name:{PACKAGE_NAME}\nVersion:1.2-3.noarch\nInstall Date:2026-11-25\n"

ISOLINUX_CFG = f"""default vesamenu.c32
timeout 100
menu title {PRODUCT}

label start
  menu label Start {PRODUCT}
  menu default
  kernel vmlinuz0
  append initrd=initrd0.img root=live:CDLABEL={VOLUME_ID} rootfstype=auto ro rd.live.image quiet rhgb
label check
  menu label Test this media & start
  kernel vmlinuz0
  append initrd=initrd0.img root=live:CDLABEL={VOLUME_ID} rootfstype=auto ro rd.live.image rd.live.check quiet
"""

GRUB_CFG = f"""set default="0"
set timeout=10
search --no-floppy --set=root -l '{VOLUME_ID}'

menuentry 'Start {PRODUCT}' --class fedora {{
\tlinuxefi /isolinux/vmlinuz0 root=live:CDLABEL={VOLUME_ID} rootfstype=auto ro rd.live.image quiet rhgb
\tinitrdefi /isolinux/initrd0.img
}}
"""

VERSION_FILE = (f"PRODUCT='{PRODUCT}'\nPRODUCT_SHORT='oVirt Node'\nPRODUCT_CODE=ovirt-node\n"
                f"VERSION={VERSION}\nRELEASE={RELEASE}\n")

_SPEC = f"""Name: {PACKAGE_NAME}
Version: 1.2
Release: 3
Epoch: 1
Summary: test package
License: MIT
BuildArch: noarch
Provides: ovirt-node-test-capability = 7
%description
test
%files
"""


@dataclasses.dataclass(frozen=True)
class TinyIso:
    """A built test ISO and what went into it."""

    iso: str
    tree: str
    root_image: str
    volume_id: str
    root_name: str
    compressor: str


def _run(argv: list[str], **kwargs) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


@functools.cache
def _session_dir() -> str:
    path = tempfile.mkdtemp(prefix="node-iso-unit-")
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def _test_rpm() -> str:
    """A tiny noarch RPM with an epoch and an extra Provides (built once)."""
    top = os.path.join(_session_dir(), "rpmbuild")
    os.makedirs(os.path.join(top, "SPECS"), exist_ok=True)
    spec = os.path.join(top, "SPECS", "test.spec")
    with open(spec, "w", encoding="utf-8") as handle:
        handle.write(_SPEC)
    _run(["rpmbuild", "-bb", "--define", f"_topdir {top}", spec])
    rpms = os.path.join(top, "RPMS", "noarch")
    return os.path.join(rpms, os.listdir(rpms)[0])


def write_efiboot(path: str, grub_cfg: str, *, legacy_conf: str | None = None) -> None:
    """A FAT image like isolinux/efiboot.img with EFI/BOOT/BOOTX64.EFI and its config."""
    _run(["mformat", "-C", "-f", "1440", "-i", path, "::"])
    _run(["mmd", "-i", path, "::/EFI", "::/EFI/BOOT"])
    staging = tempfile.mkdtemp(dir=os.path.dirname(path))
    try:
        files = {"BOOTX64.EFI": "placeholder efi binary\n", "grub.cfg": grub_cfg}
        if legacy_conf is not None:
            files["BOOTX64.conf"] = legacy_conf
        for name, text in files.items():
            local = os.path.join(staging, name)
            with open(local, "w", encoding="utf-8") as handle:
                handle.write(text)
            _run(["mcopy", "-i", path, local, f"::/EFI/BOOT/{name}"])
    finally:
        shutil.rmtree(staging)


def _root_image(work: str, root_name: str, with_rpmdb: bool) -> str:
    rootfs = os.path.join(work, "rootfs")
    for sub in ("etc/default", "etc/ovirt-plugins.d", "var/lib/rpm", "usr/bin", "usr/lib/rpm"):
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    files = {
        "etc/default/version": VERSION_FILE,
        "etc/system-release": f"{PRODUCT} release {VERSION} ({RELEASE})\n",
        f"etc/ovirt-plugins.d/{PACKAGE_NAME}": PLUGIN_RECORD,
        f"etc/ovirt-plugins.d/{PACKAGE_NAME}.firewall": "8080,tcp\n",
        "usr/bin/hello": "#!/bin/sh\necho hello\n",
        # The image's own rpm configuration (no rpm binary: nothing runs in these images).
        "usr/lib/rpm/macros": "%_dbpath /var/lib/rpm\n%_db_backend sqlite\n",
    }
    for name, text in files.items():
        with open(os.path.join(rootfs, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    os.symlink("/etc/system-release", os.path.join(rootfs, "etc/redhat-release"))
    if with_rpmdb:
        _run(["rpm", "--root", rootfs, "--dbpath", "/var/lib/rpm", "--initdb"])
        _run(["rpm", "--root", rootfs, "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps",
              "--force-debian", "--noscripts", _test_rpm()])
    image = os.path.join(work, root_name)
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "_test", "-d", rootfs, image, "16M"])
    return image


def build_tiny_iso(work: str, *, compressor: str = "gzip", root_name: str = "ext3fs.img",
                   with_rpmdb: bool = True, osmin: bool = False, hybrid: bool = True,
                   volume_id: str = VOLUME_ID, legacy_conf: bool = False) -> TinyIso:
    """Build a LiveOS-like ISO under ``work`` (which must exist and be empty)."""
    tree = os.path.join(work, "tree")
    for sub in ("isolinux", "EFI/BOOT", "LiveOS"):
        os.makedirs(os.path.join(tree, sub))
    shutil.copy(ISOLINUX_BIN, os.path.join(tree, "isolinux", "isolinux.bin"))
    texts = {
        "isolinux/isolinux.cfg": ISOLINUX_CFG.replace(VOLUME_ID, volume_id),
        "isolinux/version": VERSION_FILE,
        "isolinux/vmlinuz0": "placeholder kernel\n",
        "isolinux/initrd0.img": "placeholder initrd\n",
        "EFI/BOOT/grub.cfg": GRUB_CFG.replace(VOLUME_ID, volume_id),
        "EFI/BOOT/BOOTX64.EFI": "placeholder efi binary\n",
    }
    legacy_text = None
    if legacy_conf:
        legacy_text = ("default=0\ntimeout=10\ntitle Start\n  root (cd)\n"
                       f"  kernel /isolinux/vmlinuz0 root=live:CDLABEL={volume_id} ro quiet\n"
                       "  initrd /isolinux/initrd0.img\n")
        texts["EFI/BOOT/BOOTX64.conf"] = legacy_text
    for name, text in texts.items():
        with open(os.path.join(tree, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    # Incompressible payload so the ISO is large enough for isomd5sum's fragments.
    with open(os.path.join(tree, "isolinux", "payload.bin"), "wb") as handle:
        handle.write(os.urandom(1 << 20))
    write_efiboot(os.path.join(tree, "isolinux", "efiboot.img"), texts["EFI/BOOT/grub.cfg"],
                  legacy_conf=legacy_text)
    root_image = _root_image(work, root_name, with_rpmdb)
    squash_src = os.path.join(work, "squash-src", "LiveOS")
    os.makedirs(squash_src)
    shutil.copy(root_image, os.path.join(squash_src, root_name))
    _run(["mksquashfs", os.path.dirname(squash_src), os.path.join(tree, "LiveOS", "squashfs.img"),
          "-comp", compressor, "-noappend", "-no-progress", "-b", "131072"])
    if osmin:
        with open(os.path.join(tree, "LiveOS", "osmin.img"), "wb") as handle:
            handle.write(b"\0" * 4096)
    iso = os.path.join(work, "tiny.iso")
    argv = ["xorriso", "-as", "mkisofs", "-V", volume_id, "-J", "-joliet-long", "-r",
            "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot",
            "-boot-load-size", "4", "-boot-info-table", "-eltorito-alt-boot",
            "-e", "isolinux/efiboot.img", "-no-emul-boot"]
    if hybrid:
        argv[5:5] = ["-isohybrid-mbr", ISOHDPFX]
        argv += ["-isohybrid-gpt-basdat"]
    _run(argv + ["-o", iso, tree], env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    return TinyIso(iso=iso, tree=tree, root_image=root_image, volume_id=volume_id,
                   root_name=root_name, compressor=compressor)


@functools.cache
def cached_iso(compressor: str = "gzip", root_name: str = "ext3fs.img", with_rpmdb: bool = True,
               osmin: bool = False, hybrid: bool = True, legacy_conf: bool = False) -> TinyIso:
    """A test ISO built once per session for each combination; tests must not modify it."""
    work = tempfile.mkdtemp(dir=_session_dir())
    return build_tiny_iso(work, compressor=compressor, root_name=root_name, with_rpmdb=with_rpmdb,
                          osmin=osmin, hybrid=hybrid, legacy_conf=legacy_conf)


def copy_of(iso: TinyIso, directory: str, name: str = "copy.iso") -> str:
    """A private copy of a cached ISO that a test may modify."""
    target = os.path.join(directory, name)
    shutil.copyfile(iso.iso, target)
    return target
