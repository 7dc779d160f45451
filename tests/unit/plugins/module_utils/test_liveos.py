# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LiveOS layout: squashfs superblock (checked against unsquashfs -s), root image, debugfs reads."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _iso as iso_mod
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _liveos as liveos
from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import IsoReader
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.plugins.module_utils import isohelpers


def _unsquashfs_stat(path: str) -> dict[str, str]:
    text = subprocess.run(["unsquashfs", "-s", path], check=True, capture_output=True, text=True).stdout
    return {
        "compressor": re.search(r"^Compression (\S+)", text, re.M).group(1),
        "block_size": re.search(r"^Block size (\d+)", text, re.M).group(1),
        "inodes": re.search(r"^Number of inodes (\d+)", text, re.M).group(1),
        "bytes": re.search(r"^Filesystem size (\d+) bytes", text, re.M).group(1),
    }


@pytest.mark.parametrize("compressor", ["gzip", "xz", "zstd"])
def test_superblock_matches_unsquashfs(compressor):
    tiny = isohelpers.cached_iso(compressor=compressor)
    superblock = liveos.squashfs_superblock(tiny.iso)
    expected = _unsquashfs_stat(os.path.join(tiny.tree, "LiveOS", "squashfs.img"))
    assert superblock.compressor == expected["compressor"] == compressor
    assert str(superblock.block_size) == expected["block_size"] == "131072"
    assert superblock.block_log == 17 and superblock.version == "4.0"
    assert str(superblock.inode_count) == expected["inodes"]
    assert str(superblock.bytes_used) == expected["bytes"]


def test_parse_superblock_refuses_garbage():
    with pytest.raises(NodePluginError, match="not a squashfs image"):
        liveos.parse_superblock(b"\0" * 96, source="x.img")
    with pytest.raises(NodePluginError, match="not a squashfs image"):
        liveos.parse_superblock(b"hsqs", source="x.img")


@pytest.mark.parametrize("root_name,osmin", [("ext3fs.img", False), ("rootfs.img", True)])
def test_inspect_and_extract_root_image(tmp_path, root_name, osmin):
    tiny = isohelpers.cached_iso(root_name=root_name, osmin=osmin)
    facts = liveos.inspect_live_os(tiny.iso)
    assert facts.root_image_name == root_name and facts.osmin is osmin
    assert facts.root_image_size == os.path.getsize(tiny.root_image)
    assert facts.superblock.compressor == "gzip"
    dest = tmp_path / "dest"
    image = liveos.extract_root_image(tiny.iso, str(dest))
    assert image == str(dest / root_name) and os.listdir(dest) == [root_name]
    with open(image, "rb") as got, open(tiny.root_image, "rb") as want:
        assert got.read() == want.read()
    # From a local copy of the squashfs (streamed out of the ISO) too; no debris either way.
    local = str(tmp_path / "squashfs.img")
    with IsoReader(tiny.iso) as reader:
        reader.extract(liveos.SQUASHFS_PATH, local)
    again = liveos.extract_root_image(tiny.iso, str(tmp_path / "again"), squashfs=local)
    assert os.listdir(tmp_path / "again") == [root_name] and os.path.getsize(again) == facts.root_image_size


def test_read_root_files_and_folders():
    tiny = isohelpers.cached_iso()
    assert liveos.read_root_file(tiny.root_image, "/etc/default/version").decode() == isohelpers.VERSION_FILE
    # A symlink inside the image resolves inside the image, never on the host.
    assert liveos.read_root_file(tiny.root_image, "/etc/redhat-release").startswith(b"oVirt Node Hypervisor release")
    with liveos.open_root_image(tiny.root_image) as root:
        names = sorted(entry.name for entry in root.listdir("/etc/ovirt-plugins.d"))
        assert not root.exists("/no/such/dir")
    assert names == [isohelpers.PACKAGE_NAME, f"{isohelpers.PACKAGE_NAME}.firewall"]
    with pytest.raises(NodePluginError, match="nothing"):
        liveos.read_root_file(tiny.root_image, "/etc/nothing")


def test_not_an_ext_image(tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 65536)
    with pytest.raises(NodePluginError, match="junk.img"):
        liveos.read_root_file(str(junk), "/etc/hostname")


def test_not_a_live_os_iso(tmp_path):
    tiny = isohelpers.cached_iso()
    plain = str(tmp_path / "plain.iso")
    iso_mod.rewrite_iso(tiny.iso, plain, remove=["/LiveOS"])
    with pytest.raises(NodePluginError, match="not a LiveOS ISO: LiveOS/squashfs.img is missing"):
        liveos.squashfs_superblock(plain)


def test_unreadable_squashfs(tmp_path):
    tiny = isohelpers.cached_iso()
    bad = tmp_path / "squashfs.img"
    with open(os.path.join(tiny.tree, "LiveOS", "squashfs.img"), "rb") as handle:
        data = bytearray(handle.read())
    used = int.from_bytes(data[40:48], "little")
    data[96:used] = b"\xff" * (used - 96)  # every table and block after the superblock
    bad.write_bytes(bytes(data))
    broken = str(tmp_path / "broken.iso")
    iso_mod.rewrite_iso(tiny.iso, broken, replace_files={"/LiveOS/squashfs.img": str(bad)})
    with pytest.raises(NodePluginError, match="unsquashfs cannot read the squashfs image"):
        liveos.inspect_live_os(broken)
