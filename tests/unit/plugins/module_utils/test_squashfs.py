# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The squashfs reader's parsers against small images made by mksquashfs, and hostile images.

Images with uncompressed tables (``-noI``) let a test patch one field of one record in place; each
damaged image must end in a NodePluginError naming the squashfs and the table, never in another
exception, a hang or an unbounded allocation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import lzma
import os
import random
import re
import stat
import struct
import subprocess
import threading
import zlib

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _squashfs as sq
from ansible_collections.ovirt.node_plugins.plugins.module_utils._blockio import FileRegion
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError


class Bytes:
    """A ByteSource over bytes in memory (the images here are small)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


def _mksquashfs(tree: str, out: str, *args: str) -> bytes:
    subprocess.run(["mksquashfs", tree, out, "-noappend", "-no-progress", "-quiet", *args], check=True,
                   capture_output=True)
    with open(out, "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("squashfs-tree")
    (root / "LiveOS").mkdir()
    root_image = hashlib.shake_256(b"root").digest(150000) + bytes(140000) + b"text " * 20000
    (root / "LiveOS" / "rootfs.img").write_bytes(root_image)
    (root / "loopdir").mkdir()
    (root / "loopdir" / "only").write_text("the only entry\n")
    (root / "many").mkdir()
    for number in range(400):
        (root / "many" / f"a-rather-long-file-name-{number:05d}").write_text(str(number))
    (root / "small").write_text("small file\n")
    os.symlink("small", root / "link")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(root / "fifo")
    os.link(root / "small", root / "hardlink")
    return str(root)


@pytest.fixture(scope="module")
def plain(tree, tmp_path_factory) -> bytes:
    """Uncompressed tables and data (patchable in place), 4 KiB blocks."""
    return _mksquashfs(tree, str(tmp_path_factory.mktemp("plain") / "plain.sqfs"), "-noI", "-noD", "-noF", "-noX",
                       "-b", "4096")


@pytest.fixture(scope="module")
def packed(tree, tmp_path_factory) -> bytes:
    return _mksquashfs(tree, str(tmp_path_factory.mktemp("packed") / "packed.sqfs"), "-comp", "gzip", "-b", "4096",
                       "-tailends")


def _open(data: bytes, name: str = "test.sqfs") -> sq.SquashfsImage:
    return sq.SquashfsImage(Bytes(data), name=name)


def _read_everything(image: sq.SquashfsImage) -> int:
    total = 0
    for entry in image.walk():
        if entry.inode.is_file:
            total += len(image.open_file(entry.inode).read(0, entry.inode.file_size))
    return total


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def _superblock_with(data: bytes, **fields) -> bytes:
    superblock = sq.parse_superblock(data)
    return dataclasses.replace(superblock, **fields).pack() + data[sq.SUPERBLOCK_SIZE:]


def _file_offset(table, relative: int, offset: int) -> int:
    """Where byte ``offset`` of the (uncompressed) metadata block at ``relative`` lies in the image."""
    return table.start + relative + 2 + offset


# -- parsers ----------------------------------------------------------------------------------------

def test_superblock_and_tree_match_unsquashfs(packed, tmp_path):
    path = tmp_path / "packed.sqfs"
    path.write_bytes(packed)
    stats = subprocess.run(["unsquashfs", "-s", str(path)], capture_output=True, text=True, check=True).stdout
    image = _open(packed)
    assert image.superblock.compressor == re.search(r"^Compression (\S+)", stats, re.M).group(1) == "gzip"
    assert image.superblock.inode_count == int(re.search(r"^Number of inodes (\d+)", stats, re.M).group(1))
    assert image.superblock.fragment_count == int(re.search(r"^Number of fragments (\d+)", stats, re.M).group(1))
    assert image.superblock.bytes_used == int(re.search(r"^Filesystem size (\d+) bytes", stats, re.M).group(1))
    listing = subprocess.run(["unsquashfs", "-lls", "-no-progress", str(path)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    expected = {}
    for line in listing:
        match = re.match(r"^(\S)\S+\s.*?squashfs-root(/\S*)?(?: -> .*)?$", line)
        expected[match.group(2) or "/"] = match.group(1)
    kinds = {"dir": "d", "file": "-", "symlink": "l", "chardev": "c", "blockdev": "b", "fifo": "p", "socket": "s"}
    assert {entry.path: kinds[entry.inode.kind] for entry in image.walk()} == expected
    assert image.lookup("/link").target == b"small"
    null = image.lookup("null")
    assert (null.major, null.minor) == (1, 3)
    assert image.lookup("/hardlink").nlink == 2 and image.lookup("/hardlink").number == image.lookup("/small").number
    assert image.lookup("/many").type == sq.LDIR and image.lookup("/many").dir_index
    subprocess.run(["unsquashfs", "-no-progress", "-d", str(tmp_path / "x"), str(path)], check=True,
                   capture_output=True)
    for entry in image.walk():
        if entry.inode.is_file:
            reference = (tmp_path / "x" / entry.path.lstrip("/")).read_bytes()
            assert image.open_file(entry.path).read(0, entry.inode.file_size + 10) == reference, entry.path


@pytest.mark.parametrize("args, raw", [
    (["-comp", "gzip", "-Xcompression-level", "4", "-Xwindow-size", "12", "-Xstrategy", "filtered,fixed"],
     struct.pack("<IHH", 4, 12, 0b10010)),
    (["-comp", "xz", "-Xdict-size", "12288", "-Xbcj", "x86,arm"], struct.pack("<II", 12288, 0b1001)),
    (["-comp", "lz4", "-Xhc"], struct.pack("<II", 1, 1)),
    (["-comp", "zstd", "-Xcompression-level", "7"], struct.pack("<I", 7)),
    (["-comp", "lzo", "-Xalgorithm", "lzo1x_999", "-Xcompression-level", "5"], struct.pack("<II", 4, 5)),
    (["-comp", "lzo", "-Xalgorithm", "lzo1x_1_15"], struct.pack("<II", 3, 0)),
])
def test_compressor_options_give_back_the_mksquashfs_arguments(tmp_path, args, raw):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "file").write_text("x" * 100)
    data = _mksquashfs(str(tmp_path / "tree"), str(tmp_path / "a.sqfs"), "-b", "16384", *args)
    image = _open(data)
    assert image.compressor_options.raw == raw
    assert image.compressor_options.mksquashfs_args() == args[:2] + ["-b", "16384"] + args[2:]
    again = _mksquashfs(str(tmp_path / "tree"), str(tmp_path / "b.sqfs"), *image.compressor_options.mksquashfs_args())
    assert _open(again).compressor_options == image.compressor_options


def test_default_options_have_no_block(tmp_path):
    (tmp_path / "tree").mkdir()
    for compressor in ("gzip", "xz", "zstd", "lzo"):
        image = _open(_mksquashfs(str(tmp_path / "tree"), str(tmp_path / f"{compressor}.sqfs"), "-comp", compressor))
        assert not image.superblock.has_compressor_options and image.compressor_options.raw == b""
        assert image.compressor_options.mksquashfs_args() == ["-comp", compressor, "-b", "131072"]


@pytest.mark.parametrize("image_fixture", ["plain", "packed"])
def test_inodes_and_listings_encode_as_mksquashfs_wrote_them(request, image_fixture):
    image = _open(request.getfixturevalue(image_fixture))
    types = set()
    for entry in image.walk():
        inode = entry.inode
        types.add(inode.type)
        encoded = sq._encode_inode(inode)
        assert image.inode_table.read(inode.ref >> 16, inode.ref & 0xFFFF, len(encoded)) == encoded, entry.path
        if inode.is_dir:
            entries = [(item.raw_name, item.ref, item.number, item.type) for item in image.listdir(inode)]
            listing, index = sq._encode_listing(entries)
            assert listing == image.directory_table.read(inode.dir_block, inode.dir_offset, inode.file_size - 3)
            assert [(position, name) for position, _start, name in inode.dir_index] == index
    assert types >= {sq.DIR, sq.LDIR, sq.FILE, sq.LFILE, sq.SYMLINK, sq.CHRDEV, sq.FIFO}


def test_xz_metadata_blocks_are_those_of_liblzma_single_call(tree, tmp_path):
    data = _mksquashfs(tree, str(tmp_path / "xz.sqfs"), "-comp", "xz", "-Xbcj", "x86")
    image = _open(data)
    start = image.superblock.inode_table_start
    (header,) = struct.unpack_from("<H", data, start)
    assert not header & 0x8000
    stored = data[start + 2:start + 2 + header]
    assert sq._xz_single_call(lzma.decompress(stored), sq.METADATA_SIZE) == stored


def test_file_reads_at_any_alignment_from_many_threads(packed):
    image = sq.SquashfsImage(Bytes(packed), cache_bytes=3 * 4096)
    handle = image.open_file("/LiveOS/rootfs.img")
    whole = handle.read(0, handle.size)
    assert len(whole) == handle.size == 390000
    assert handle.read(handle.size - 5, 100) == whole[-5:] and handle.read(handle.size, 10) == b""
    blocks = image.file_blocks(handle.inode)
    assert any(block.sparse for block in blocks) and handle.inode.has_fragment
    failures = []

    def reader(seed: int) -> None:
        chooser = random.Random(seed)
        for _round in range(200):
            offset = chooser.randrange(0, handle.size)
            length = chooser.randrange(0, 20000)
            if handle.read(offset, length) != whole[offset:offset + length]:
                failures.append((offset, length))

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert image._data_cache._bytes <= 3 * 4096


def test_blocks_from_source_reads_on_demand():
    source = Bytes(bytes(range(256)) * 40)
    blocks = sq.BlocksFromSource(source, [3, 1, 3], 1000)
    assert list(blocks) == [1, 3] and len(blocks) == 2 and 2 not in blocks
    assert blocks[3] == source.data[3000:4000]
    with pytest.raises(KeyError):
        blocks[2]


# -- hostile images ---------------------------------------------------------------------------------

def _expect_damage(data: bytes, *words: str) -> NodePluginError:
    with pytest.raises(NodePluginError) as caught:
        _read_everything(_open(data, name="hostile.sqfs"))
    assert caught.value.path == "hostile.sqfs"
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value


def test_refuses_what_is_not_squashfs(plain):
    _expect_damage(b"\0" * 200, "not a squashfs")
    _expect_damage(b"hsqs", "not a squashfs")
    _expect_damage(_patch(plain, 28, struct.pack("<H", 3)), "version 3")
    _expect_damage(_patch(plain, 22, struct.pack("<H", 13)), "inconsistent")
    _expect_damage(_superblock_with(plain, block_size=1 << 21, block_log=21), "superblock", "block size")
    _expect_damage(_superblock_with(plain, compression_id=9), "unknown compressor")


def test_refuses_a_truncated_image(plain):
    _expect_damage(plain[:len(plain) // 2], "cut short")


@pytest.mark.parametrize("fields, words", [
    ({"inode_table_start": 10 ** 9}, ("superblock",)),
    ({"directory_table_start": 120}, ("superblock",)),
    ({"id_count": 65535}, ("id table",)),
    ({"fragment_count": 0xFFFFFFFF}, ("superblock", "fragments")),
    ({"fragment_count": 1000}, ("fragment table",)),
    ({"inode_count": 0}, ("superblock",)),
    ({"inode_count": 0xFFFFFFFF}, ("superblock", "inodes")),
    ({"inode_count": 5000}, ("export table",)),
    ({"root_inode": 0xFFFF_0000_0000}, ("root inode",)),
    ({"root_inode": 8191}, ("inode table",)),
    ({"xattr_id_table_start": 10 ** 12}, ("superblock",)),
])
def test_refuses_absurd_superblock_fields(plain, fields, words):
    _expect_damage(_superblock_with(plain, **fields), *words)


def test_refuses_a_metadata_block_that_claims_too_much(plain):
    start = sq.parse_superblock(plain).inode_table_start
    _expect_damage(_patch(plain, start, struct.pack("<H", 0x7FFF)), "inode table")
    _expect_damage(_patch(plain, start, struct.pack("<H", 0x8000)), "inode table")


def test_refuses_a_directory_loop(plain):
    image = _open(plain)
    loopdir = image.lookup("/loopdir")
    root = image.root
    listing_at = _file_offset(image.directory_table, loopdir.dir_block, loopdir.dir_offset)
    header = struct.pack("<III", 0, root.ref >> 16, root.number)
    entry = struct.pack("<HhHH", root.ref & 0xFFFF, 0, sq.DIR, 3)
    error = _expect_damage(_patch(plain, listing_at, header + entry), "directory table", "loop")
    assert "loopdir/only" in error.message


def test_refuses_names_with_slashes_and_dots(plain):
    image = _open(plain)
    loopdir = image.lookup("/loopdir")
    name_at = _file_offset(image.directory_table, loopdir.dir_block, loopdir.dir_offset) + 12 + 8
    assert plain[name_at:name_at + 4] == b"only"
    _expect_damage(_patch(plain, name_at, b"o/ly"), "directory table", "o/ly")
    _expect_damage(_patch(plain, name_at, b"on\0y"), "directory table")
    dot_dot = _patch(_patch(plain, name_at - 2, struct.pack("<H", 1)), name_at, b"..")
    _expect_damage(dot_dot, "directory table", "holds the name ..")


def test_refuses_an_entry_whose_inode_disagrees(plain):
    image = _open(plain)
    loopdir = image.lookup("/loopdir")
    type_at = _file_offset(image.directory_table, loopdir.dir_block, loopdir.dir_offset) + 12 + 4
    _expect_damage(_patch(plain, type_at, struct.pack("<H", sq.SYMLINK)), "directory table", "says symlink")


def test_refuses_absurd_file_sizes_and_block_words(plain):
    image = _open(plain)
    small = image.lookup("/LiveOS/rootfs.img")
    assert small.type == sq.FILE
    inode_at = _file_offset(image.inode_table, small.ref >> 16, small.ref & 0xFFFF)
    size_at = inode_at + 16 + 12
    _expect_damage(_patch(plain, size_at, struct.pack("<I", 0xFFFFFFFF)), "inode table")
    words_at = inode_at + 32
    _expect_damage(_patch(plain, words_at, struct.pack("<I", 0xFFFFFFFF)), "inode table", "block size word")
    _expect_damage(_patch(plain, words_at, struct.pack("<I", 4096)), "does not decompress")
    blocks_start_at = inode_at + 16
    _expect_damage(_patch(plain, blocks_start_at, struct.pack("<I", 0xFFFFFF00)), "inode table", "data area")
    fragment_at = inode_at + 16 + 4
    _expect_damage(_patch(plain, fragment_at, struct.pack("<I", 77)), "inode table")


def test_refuses_damaged_and_oversized_compressed_blocks(packed):
    image = _open(packed)
    handle = image.open_file("/LiveOS/rootfs.img")
    block = next(block for block in handle.blocks if block.compressed and block.stored_size > 40)
    garbage = _patch(packed, block.offset + 10, b"\xff" * 20)
    error = _expect_damage(garbage, "does not decompress with gzip")
    assert f"byte {block.offset}" in error.message
    bomb = zlib.compress(bytes(1 << 20), 9)
    assert len(bomb) <= block.stored_size
    _expect_damage(_patch(packed, block.offset, bomb + bytes(block.stored_size - len(bomb))), "longer than expected")


def test_missing_compressor_library_is_named(tmp_path, monkeypatch):
    (tmp_path / "tree").mkdir()
    data = _mksquashfs(str(tmp_path / "tree"), str(tmp_path / "a.sqfs"), "-comp", "lz4")
    monkeypatch.setitem(sq._COMPRESSOR_LIBRARIES, "lz4", ("lz4", False))
    with pytest.raises(NodePluginError) as caught:
        _open(data, name="lz4.sqfs")
    assert "compressed with lz4" in caught.value.message and "lz4" in caught.value.message
    assert caught.value.path == "lz4.sqfs"


@pytest.mark.parametrize("image_fixture", ["plain", "packed"])
def test_random_damage_to_the_tables_is_caught(request, image_fixture):
    """Flip bytes of the metadata area at random: every outcome is a clean read or a NodePluginError."""
    data = request.getfixturevalue(image_fixture)
    start = sq.parse_superblock(data).inode_table_start
    chooser = random.Random(1234)
    outcomes = {"read": 0, "refused": 0}
    for _round in range(120):
        damaged = bytearray(data)
        for _flip in range(chooser.randrange(1, 4)):
            position = chooser.randrange(start, sq.parse_superblock(data).bytes_used)
            damaged[position] = chooser.randrange(256)
        try:
            _read_everything(_open(bytes(damaged)))
            outcomes["read"] += 1
        except NodePluginError as exc:
            assert exc.path == "test.sqfs"
            outcomes["refused"] += 1
    assert outcomes["refused"] > 20


# -- the writer's refusals --------------------------------------------------------------------------

def test_rewrite_refuses_what_it_cannot_do(packed, tmp_path):
    out = str(tmp_path / "out.sqfs")
    with pytest.raises(sq.IncrementalUnsupported) as caught:
        sq.rewrite_squashfs(Bytes(packed), out, "/many", {})
    assert "not a regular file" in caught.value.reason
    with pytest.raises(NodePluginError, match="does not exist"):
        sq.rewrite_squashfs(Bytes(packed), out, "/LiveOS/missing.img", {})
    with pytest.raises(NodePluginError, match="holds 10 bytes"):
        sq.rewrite_squashfs(Bytes(packed), out, "/LiveOS/rootfs.img", {0: b"x" * 10})
    with pytest.raises(NodePluginError, match="outside the file"):
        sq.rewrite_squashfs(Bytes(packed), out, "/LiveOS/rootfs.img", {1000: bytes(4096)})
    assert os.listdir(tmp_path) == []


def test_rewrite_of_a_small_file_in_a_fragment(packed, tmp_path):
    """A file that lived only in a fragment grows into blocks of its own; the rest is untouched."""
    out = str(tmp_path / "out.sqfs")
    report = sq.rewrite_squashfs(Bytes(packed), out, "/small", {0: b"grown " * 682 + b"!!!!"}, new_size=4096)
    assert report.blocks_compressed == 1
    with FileRegion(out) as region:
        image = sq.SquashfsImage(region)
        assert image.open_file("/small").read(0, 5000) == b"grown " * 682 + b"!!!!"
        assert image.open_file("/hardlink").read(0, 5000) == b"grown " * 682 + b"!!!!"
        assert image.open_file("/loopdir/only").read(0, 100) == b"the only entry\n"
