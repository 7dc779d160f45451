# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fixture ISO whose initramfs has dracut's livenet module, so the PXE tree's HTTP entry really boots.

The HTTP entry of node_pxe_tree boots the ISO's own initrd with ``root=live:<url>/squashfs.img ip=dhcp``: dracut's
livenet brings the network up (network-legacy: dhclient) and fetches the root image with curl (url-lib). Real Node
ISOs carry it; the fixture ISO's initramfs (dmsquash-live only) does not. This module makes one that does:

- dracut's network modules come from Debian's dracut-network package, downloaded (``apt-get download``) and unpacked
  into a private dracut base folder, never installed: installing it adds /etc/dracut.conf.d/11-ifcfg.conf, which
  changes every initramfs that dracut builds on the host (the fixture's too);
- kernel-network-modules is replaced there by a module that installs only e1000, the NIC of the test guests (the
  stock one takes every wired driver, 12 MB of the initramfs);
- the initramfs replaces /isolinux/initrd0.img of the fixture ISO (_iso.rewrite_iso, boot records kept, md5 implanted).

Both are cached by content under $OVIRT_NODE_PLUGINS_CACHE like the fixtures (tests/fixtures/_cache.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import rewrite_iso
from tests.fixtures._cache import SOURCE_DATE_EPOCH, cached_build, content_key, host_package_versions, kernel_version
from tests.fixtures.nodeiso import DRACUT_DRIVERS, NodeFixture

DRACUT = "/usr/lib/dracut"
NETWORK_PACKAGE = "dracut-network"
# The only network driver the initramfs needs: QEMU's e1000 of the test guests.
NIC_MODULE = """#!/bin/bash
# kernel-network-modules for the test guests: their e1000 NIC only (tests/fleet/livenet.py).
check() { return 255; }
depends() { return 0; }
installkernel() { instmods e1000 af_packet; }
install() { return 0; }
"""


def _run(argv: list[str], **kwargs) -> str:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), LC_ALL="C")
    env.update(kwargs.pop("env", {}))
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
                          **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"livenet fixture step failed: {' '.join(argv)}\n{done.stdout[-4000:]}")
    return done.stdout


def _dracut_base(work: str, version: str) -> str:
    """A dracut base folder: the host's dracut, plus dracut-network's modules of the same version, e1000 only."""
    debs = os.path.join(work, "debs")
    os.makedirs(debs)
    try:
        _run(["apt-get", "download", f"{NETWORK_PACKAGE}={version}"], cwd=debs)
    except RuntimeError:  # a fresh machine whose package lists make setup never needed to update
        _run(["apt-get", "update", "-q"])
        _run(["apt-get", "download", f"{NETWORK_PACKAGE}={version}"], cwd=debs)
    unpacked = os.path.join(work, "unpacked")
    for name in os.listdir(debs):
        _run(["dpkg-deb", "-x", os.path.join(debs, name), unpacked])
    base = os.path.join(work, "dracut")
    modules = os.path.join(base, "modules.d")
    os.makedirs(modules)
    for name in os.listdir(DRACUT):
        if name != "modules.d":
            os.symlink(os.path.join(DRACUT, name), os.path.join(base, name))
    for source in (os.path.join(DRACUT, "modules.d"), os.path.join(unpacked, DRACUT.lstrip("/"), "modules.d")):
        for name in os.listdir(source):
            if not os.path.lexists(os.path.join(modules, name)):
                os.symlink(os.path.realpath(os.path.join(source, name)), os.path.join(modules, name))
    nic = os.path.join(modules, "90kernel-network-modules")
    os.unlink(nic)
    os.makedirs(nic)
    with open(os.path.join(nic, "module-setup.sh"), "w", encoding="utf-8") as handle:
        handle.write(NIC_MODULE)
    os.chmod(os.path.join(nic, "module-setup.sh"), 0o755)
    return base


def livenet_initrd() -> str:
    """A dracut initramfs for the host's kernel with dmsquash-live and livenet (network-legacy), cached."""
    kver = kernel_version()
    versions = host_package_versions()
    version = versions["dracut-core"]
    argv_tail = ["--no-hostonly", "--no-hostonly-cmdline", "--no-early-microcode", "--reproducible",
                 "--modules", "dmsquash-live livenet network-legacy", "--omit", "systemd systemd-networkd ifcfg",
                 "--add-drivers", DRACUT_DRIVERS, "--filesystems", "iso9660 squashfs ext4", "--compress", "gzip",
                 "--kver", kver]
    key = content_key("initrd-livenet", argv_tail, NIC_MODULE, versions)

    def build(work: str) -> None:
        base = _dracut_base(work, version)
        tmp = os.path.join(work, "tmp")
        confdir = os.path.join(work, "conf.d")
        os.makedirs(tmp)
        os.makedirs(confdir)
        # The host's dracut configuration is left out (--conf /dev/null, an empty --confdir): equal inputs, equal
        # initramfs.
        _run(["dracut", "--force", "--conf", "/dev/null", "--confdir", confdir, *argv_tail,
              os.path.join(work, "initrd0.img")], env={"TMPDIR": tmp, "dracutbasedir": base})
        for folder in ("debs", "unpacked", "dracut", "tmp", "conf.d"):
            shutil.rmtree(os.path.join(work, folder))

    return os.path.join(cached_build("initrd-livenet", key, build), "initrd0.img")


def livenet_iso(fixture: NodeFixture) -> str:
    """The fixture ISO with the livenet initramfs as /isolinux/initrd0.img (cached); its name ends in -livenet.iso."""
    initrd = livenet_initrd()
    # The fixture's and the initramfs' cache folders are named by their content keys.
    key = content_key("livenet-iso", os.path.basename(os.path.dirname(fixture.iso)),
                      os.path.basename(os.path.dirname(initrd)))
    name = os.path.basename(fixture.iso).removesuffix(".iso") + "-livenet.iso"

    def build(work: str) -> None:
        rewrite_iso(fixture.iso, os.path.join(work, name), replace_files={"/isolinux/initrd0.img": initrd},
                    implant=True)

    return os.path.join(cached_build("livenet-iso", key, build), name)
