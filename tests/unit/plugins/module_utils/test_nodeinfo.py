# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node product/version detection and the order in which its sources are trusted."""
from __future__ import annotations

import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _iso as iso_mod
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _nodeinfo as nodeinfo
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import open_root_image
from ansible_collections.ovirt.node_plugins.plugins.module_utils._nodeiso import NodeIso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.plugins.module_utils import isohelpers


def test_iso_version_file_is_trusted_first():
    tiny = isohelpers.cached_iso()
    with open_root_image(tiny.root_image) as root:
        info = nodeinfo.node_info(tiny.iso, root=root)
    assert (info.product, info.version, info.release, info.source) == (
        isohelpers.PRODUCT, isohelpers.VERSION, isohelpers.RELEASE, "isolinux/version")
    assert info.fields["PRODUCT_SHORT"] == "oVirt Node"


def test_falls_back_to_root_image_then_volume_id(tmp_path):
    tiny = isohelpers.cached_iso()
    stripped = str(tmp_path / "stripped.iso")
    iso_mod.rewrite_iso(tiny.iso, stripped, remove=["/isolinux/version"])
    with NodeIso(stripped) as iso:  # the root file system read in place, out of the squashfs
        info = nodeinfo.node_info(iso, root=iso.root_filesystem())
    assert info.source == "/etc/default/version" and info.version == isohelpers.VERSION
    info = nodeinfo.node_info(stripped)
    assert info.source == "volume id" and (info.version, info.release) == (isohelpers.VERSION, isohelpers.RELEASE)
    renamed = str(tmp_path / "renamed.iso")
    iso_mod.rewrite_iso(stripped, renamed, volume_id="SOMETHING_ELSE")
    with pytest.raises(NodePluginError, match="cannot tell which Node this is"):
        nodeinfo.node_info(renamed)


def test_system_release_when_no_default_version(tmp_path):
    rootfs = tmp_path / "rootfs" / "etc"
    rootfs.mkdir(parents=True)
    (rootfs / "system-release").write_text("oVirt Node Hypervisor release 2.5.0 (1.0.fc17) (Edited)\n")
    image = str(tmp_path / "root.img")
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tmp_path / "rootfs"), image, "4M"], check=True)
    with open_root_image(image) as root:
        info = nodeinfo.node_info_from_root(root)
    assert (info.version, info.release, info.source, info.edited) == ("2.5.0", "1.0.fc17", "/etc/system-release", True)


def test_parsers():
    fields = nodeinfo.parse_version_file("# c\nPRODUCT='oVirt Node Hypervisor'\nVERSION=2.5.0\nRELEASE=\"1.0.fc17\"\n")
    assert fields == {"PRODUCT": "oVirt Node Hypervisor", "VERSION": "2.5.0", "RELEASE": "1.0.fc17"}
    assert nodeinfo.parse_system_release("Fedora release 17 (Beefy Miracle)\n").version == "17"
    assert nodeinfo.parse_system_release("garbage\n") is None
    assert nodeinfo.parse_volume_id("ovirt-node-iso-2.5.0-1.0.fc17").release == "1.0.fc17"
    assert nodeinfo.parse_volume_id("Fedora-Live") is None
