# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ext reader on small images made with mke2fs, and on damaged and hostile copies of them: every
failure is a NodePluginError that names the image, never a traceback, a loop or a read outside it."""
from __future__ import annotations

import os
import random
import re
import struct
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._extfs import BlockKind, ExtFilesystem

NAME = "test.iso:LiveOS/ext3fs.img"
SB = 1024  # the superblock's offset in the image


class BytesSource:
    """An image held in memory, as a ByteSource."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _image(tmp_path, options: list[str], size: str = "2M", tree=None) -> bytearray:
    """A small image made with mke2fs -d from a tree (a few files by default)."""
    stage = tmp_path / "stage"
    if not stage.exists():
        (stage / "sub").mkdir(parents=True)
        (stage / "sub" / "file").write_bytes(b"in a folder\n")
        (stage / "hello").write_bytes(b"hello\n")
        (stage / "dind").write_bytes(random.Random(1).randbytes(300_000))  # 1 KiB blocks: double indirect
        os.symlink("hello", stage / "link")
        if tree:
            tree(stage)
    path = tmp_path / "image.img"
    _run(["mke2fs", "-q", "-F", *options, "-d", str(stage), str(path), size])
    return bytearray(path.read_bytes())


def _debugfs(data: bytearray, tmp_path, command: str) -> str:
    """What a read-only debugfs command prints about the image ``data``."""
    path = tmp_path / "debugfs.img"
    path.write_bytes(data)
    return _run(["debugfs", "-R", command, str(path)])


def _debugfs_write(data: bytearray, tmp_path, command: str) -> bytearray:
    """The image ``data`` after a debugfs -w command."""
    path = tmp_path / "debugfs.img"
    path.write_bytes(data)
    _run(["debugfs", "-w", "-R", command, str(path)])
    return bytearray(path.read_bytes())


def _inode_offset(data: bytearray, tmp_path, path: str) -> int:
    out = _debugfs(data, tmp_path, f"imap {path}")
    block, offset = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", out).groups()
    block_size = 1024 << struct.unpack_from("<I", data, SB + 0x18)[0]
    return int(block) * block_size + int(offset, 16)


def _fs(data: bytes) -> ExtFilesystem:
    return ExtFilesystem(BytesSource(bytes(data)), name=NAME)


def _refused(data: bytes, pattern: str, action=None) -> NodePluginError:
    with pytest.raises(NodePluginError, match=pattern) as caught:
        fs = _fs(data)
        if action:
            action(fs)
    assert caught.value.path == NAME
    return caught.value


def _read_everything(fs: ExtFilesystem) -> None:
    for path, _dirs, others in fs.walk("/"):
        for entry in others:
            fs.xattrs(entry.ino)
            if entry.kind == "file":
                fs.read_file(f"{path.rstrip('/')}/{entry.name}", limit=1 << 20)
            elif entry.kind == "symlink":
                fs.readlink(f"{path.rstrip('/')}/{entry.name}")


@pytest.mark.parametrize("options", [["-t", "ext2", "-b", "1024"], ["-t", "ext3", "-I", "128"], ["-t", "ext4"]])
def test_reads_a_small_image_held_in_memory(tmp_path, options):
    fs = _fs(_image(tmp_path, options, size="4M"))
    assert sorted(entry.name for entry in fs.listdir("/")) == ["dind", "hello", "link", "lost+found", "sub"]
    assert fs.read_file("/link") == b"hello\n" and fs.readlink("/link") == "hello"
    assert fs.read_file("/dind") == random.Random(1).randbytes(300_000)
    handle = fs.open("/sub/file")
    assert handle.size == 12 and handle.read(3, 100) == b"a folder\n" and handle.read(50, 10) == b""
    assert fs.stat("/sub").kind == "dir" and fs.stat("/link", follow=False).kind == "symlink"
    assert fs.exists("/sub/file") and not fs.exists("/sub/missing") and not fs.exists("/hello/below")
    with pytest.raises(NodePluginError, match="does not exist"):
        fs.lookup("/sub/missing")
    with pytest.raises(NodePluginError, match="not a directory"):
        fs.lookup("/hello/below")
    with pytest.raises(NodePluginError, match="absolute"):
        fs.lookup("sub/file")
    with pytest.raises(NodePluginError, match="more than the 100"):
        fs.read_file("/dind", limit=100)
    with pytest.raises(NodePluginError, match="is a dir"):
        fs.read_file("/sub")


def test_owners_on_a_small_image(tmp_path):
    fs = _fs(_image(tmp_path, ["-t", "ext2", "-b", "1024"]))
    dind = fs.lookup("/dind")
    runs = fs.block_map("/dind")
    owners = fs.owners([0, 1, 2, runs[0].physical, runs[-1].physical + runs[-1].count - 1, 2047, 2048])
    expected = [BlockKind.BOOT, BlockKind.SUPERBLOCK, BlockKind.GROUP_DESCRIPTORS]
    assert [owners[block].kind for block in (0, 1, 2)] == expected
    assert owners[runs[0].physical].inodes == (dind,) and owners[runs[0].physical].logical == 0
    assert owners[2048].kind == BlockKind.BEYOND_END
    assert fs.paths(dind) == ["/dind"]


def test_bad_magic_is_refused(tmp_path):
    data = _image(tmp_path, ["-t", "ext4"])
    data[SB + 0x38:SB + 0x3A] = b"\0\0"
    error = _refused(data, "not an ext2/3/4 file system")
    assert "magic" in error.message
    _refused(bytes(100), "too small")


@pytest.mark.parametrize("offset, fmt, value, pattern", [
    (0x18, "I", 20, "block size"),  # log block size
    (0x28, "I", 0xFFFFFFFF, "inodes per group"),
    (0x20, "I", 0, "blocks per group"),
    (0x04, "I", 1 << 31, "more than the image's"),  # blocks count
    (0x00, "I", 12345, "counts 12345 inodes"),
    (0x58, "H", 100, "inode size"),
    (0x54, "I", 3, "first ordinary inode"),
    (0x14, "I", 7, "first data block"),
    (0xFE, "H", 3, "descriptor size"),  # 64bit: desc_size
    (0xE0, "I", 1 << 30, "journal inode"),
])
def test_absurd_superblock_counts_are_refused(tmp_path, offset, fmt, value, pattern):
    data = _image(tmp_path, ["-t", "ext4"])
    struct.pack_into("<" + fmt, data, SB + offset, value)
    _refused(data, pattern)


def test_truncated_image_is_refused(tmp_path):
    data = _image(tmp_path, ["-t", "ext4"])
    error = _refused(data[:len(data) // 2], "more than the image's")
    assert "truncated" in error.hint


@pytest.mark.parametrize("options, bit, pattern", [
    (["-t", "ext4"], None, "needs_recovery"),
    (["-t", "ext4", "-O", "inline_data"], None, "inline_data"),
    (["-t", "ext4", "-O", "encrypt"], None, "encrypt"),
    (["-t", "ext4", "-O", "casefold"], None, "casefold"),
    (["-t", "ext4", "-O", "bigalloc"], None, "bigalloc"),
    (["-t", "ext4"], 0x40000000, "does not know"),
])
def test_features_it_cannot_read_are_refused(tmp_path, options, bit, pattern):
    data = _image(tmp_path, options, size="16M")
    incompat = struct.unpack_from("<I", data, SB + 0x60)[0]
    if pattern == "needs_recovery":
        bit = 0x4
    struct.pack_into("<I", data, SB + 0x60, incompat | (bit or 0))
    error = _refused(data, pattern)
    if pattern == "needs_recovery":
        assert "e2fsck" in error.message


def test_group_descriptor_pointing_outside_is_refused(tmp_path):
    data = _image(tmp_path, ["-t", "ext2", "-b", "1024"])
    struct.pack_into("<I", data, 2 * 1024 + 8, 10_000_000)  # group 0's inode table, descriptors at block 2
    _refused(data, "block group 0's inode table points at block 10000000")


def test_directory_entry_naming_its_own_directory_is_a_loop(tmp_path):
    data = _debugfs_write(_image(tmp_path, ["-t", "ext2", "-b", "1024"]), tmp_path, "ln /sub /sub/self")
    fs = _fs(data)
    assert fs.lookup("/sub/self/self/file") == fs.lookup("/sub/file")  # a lookup is bounded by its path
    _refused(data, "already reached on another path", lambda fs: list(fs.walk("/")))
    _refused(data, "loop", lambda fs: fs.paths(2))
    _refused(data, "loop", lambda fs: fs.copy_tree("/", str(tmp_path / "copy")))
    assert not (tmp_path / "copy").exists() and not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_directory_block_with_a_bad_entry_length_is_refused(tmp_path):
    data = _image(tmp_path, ["-t", "ext2", "-b", "1024"])
    out = _debugfs(data, tmp_path, "blocks /sub")
    block = int(out.split()[0])
    struct.pack_into("<H", data, block * 1024 + 4, 0)  # rec_len of '.'
    _refused(data, r"directory inode \d+, block 0, byte 0: an entry length of 0", lambda fs: fs.listdir("/sub"))
    struct.pack_into("<H", data, block * 1024 + 4, 12)
    struct.pack_into("<I", data, block * 1024 + 24, 1 << 30)  # the entry after '..' names an absurd inode
    _refused(data, "beyond the last", lambda fs: fs.listdir("/sub"))


def test_indirect_block_naming_itself_is_a_loop(tmp_path):
    data = _image(tmp_path, ["-t", "ext2", "-b", "1024"])
    out = _debugfs(data, tmp_path, "stat /dind")
    dind = int(re.search(r"\(DIND\):(\d+)", out).group(1))
    struct.pack_into("<I", data, dind * 1024, dind)
    _refused(data, f"indirect block {dind} twice", lambda fs: fs.read_file("/dind"))
    _refused(data, "loop", lambda fs: fs.owners([fs.superblock.blocks_count - 1]))


def test_block_map_shared_by_two_inodes_is_refused(tmp_path):
    data = _image(tmp_path, ["-t", "ext2", "-b", "1024"])
    out = _debugfs(data, tmp_path, "stat /dind")
    dind = int(re.search(r"\(DIND\):(\d+)", out).group(1))
    hello = _inode_offset(data, tmp_path, "/hello")
    struct.pack_into("<I", data, hello + 40 + 13 * 4, dind)  # /hello's i_block[13] = /dind's DIND block
    _refused(data, f"block {dind} is part of the block maps of both",
             lambda fs: fs.owners([fs.superblock.blocks_count - 1]))


@pytest.mark.parametrize("how", ["links", "itable_unused"])
def test_an_inode_hidden_from_the_scan_is_refused(tmp_path, how):
    """A file that a path reaches but the inode tables mark free would make its blocks pass for unused."""
    if how == "links":
        data = _image(tmp_path, ["-t", "ext2", "-b", "1024"])
        struct.pack_into("<H", data, _inode_offset(data, tmp_path, "/hello") + 26, 0)
    else:
        data = _image(tmp_path, ["-t", "ext4", "-b", "1024"])
        descriptors = 2 * 1024  # group 0's descriptor; itable_unused at +0x1C
        inodes_per_group = struct.unpack_from("<I", data, SB + 0x28)[0]
        struct.pack_into("<H", data, descriptors + 0x1C, inodes_per_group - 11)  # only inodes 1..11 in use
    assert _fs(data).read_file("/hello") == b"hello\n"  # reading by path still works
    _refused(data, "which the inode table marks as free", lambda fs: fs.owners([fs.superblock.blocks_count - 1]))
    _refused(data, "which the inode table marks as free", lambda fs: fs.paths(2))


def _extent_tree_image(tmp_path) -> tuple[bytearray, int]:
    """An ext4 image whose /fragmented has an extent tree of depth 1; returns it and that inode's offset."""
    data = _image(tmp_path, ["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"], size="8M")
    (tmp_path / "frag.bin").write_bytes(random.Random(2).randbytes(100_000))
    (tmp_path / "small.bin").write_bytes(random.Random(3).randbytes(1024))  # zeros would be written as a hole
    script = [f"write {tmp_path / 'small.bin'} /f{index}" for index in range(120)]
    script += [f"rm /f{index}" for index in range(0, 120, 2)] + [f"write {tmp_path / 'frag.bin'} /fragmented"]
    (tmp_path / "script").write_text("\n".join(script) + "\n")
    path = tmp_path / "tree.img"
    path.write_bytes(data)
    _run(["debugfs", "-w", "-f", str(tmp_path / "script"), str(path)])
    data = bytearray(path.read_bytes())
    fs = _fs(data)
    assert fs.read_file("/fragmented") == random.Random(2).randbytes(100_000)
    assert struct.unpack_from("<H", data, _inode_offset(data, tmp_path, "/fragmented") + 40 + 6)[0] == 1  # depth
    return data, _inode_offset(data, tmp_path, "/fragmented")


def test_extent_tree_damage_is_refused(tmp_path):
    data, inode = _extent_tree_image(tmp_path)
    root = inode + 40  # i_block: header, then index entries of 12 bytes
    leaf = struct.unpack_from("<I", data, root + 12 + 4)[0]

    looping = bytearray(data)  # the leaf turned into an index node that names itself
    struct.pack_into("<HHHH", looping, leaf * 1024, 0xF30A, 1, 84, 1)
    struct.pack_into("<III", looping, leaf * 1024 + 12, 0, leaf, 0)
    _refused(looping, "has depth 1, expected 0", lambda fs: fs.read_file("/fragmented"))

    twice = bytearray(data)  # the root names the same leaf twice
    struct.pack_into("<H", twice, root + 2, 2)
    struct.pack_into("<III", twice, root + 24, 5000, leaf, 0)
    _refused(twice, f"refers to block {leaf} twice", lambda fs: fs.read_file("/fragmented"))

    outside = bytearray(data)
    struct.pack_into("<I", outside, root + 12 + 4, 1 << 31)
    _refused(outside, "outside the file system", lambda fs: fs.read_file("/fragmented"))

    no_magic = bytearray(data)
    struct.pack_into("<H", no_magic, leaf * 1024, 0x1234)
    _refused(no_magic, "no extent header", lambda fs: fs.read_file("/fragmented"))


def test_symlink_loops_and_long_targets_are_refused(tmp_path):
    def tree(stage):
        os.symlink("loop-b", stage / "loop-a")
        os.symlink("loop-a", stage / "loop-b")
        os.symlink("/" + "x/" * 450, stage / "long")
    data = _image(tmp_path, ["-t", "ext4"], tree=tree)
    _refused(data, "more than 40 symlinks", lambda fs: fs.lookup("/loop-a"))
    assert _fs(data).lookup("/loop-a", follow=False) > 0
    assert _fs(data).readlink("/long") == "/" + "x/" * 450
    struct.pack_into("<I", data, _inode_offset(data, tmp_path, "/long") + 4, 5000)  # i_size
    _refused(data, "at most 4096", lambda fs: fs.readlink("/long"))


def test_copy_tree_writes_only_files_and_folders_inside_the_destination(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")

    def tree(stage):
        os.symlink(str(outside), stage / "sub" / "escape")
        os.symlink("/etc/passwd", stage / "sub" / "passwd")
        os.mkfifo(stage / "sub" / "fifo")
        (stage / "sub" / "ro").mkdir()
        (stage / "sub" / "ro" / "inner").write_bytes(b"inner\n")
        (stage / "sub" / "ro").chmod(0o555)
        with open(os.path.join(os.fsencode(stage / "sub"), b"bytes-\xff"), "wb") as handle:
            handle.write(b"odd name\n")
        os.utime(stage / "sub" / "file", (1_000_000_000, 1_000_000_000))
    fs = _fs(_image(tmp_path, ["-t", "ext4"], tree=tree))
    copied = fs.copy_tree("/sub", str(tmp_path / "copy"))
    copy = tmp_path / "copy"
    assert copied.path == str(copy) and copied.files == 3 and copied.dirs == 1
    assert sorted(copied.skipped) == ["/sub/escape", "/sub/fifo", "/sub/passwd"]
    assert sorted(os.listdir(os.fsencode(copy))) == [b"bytes-\xff", b"file", b"ro"]
    assert (copy / "ro" / "inner").read_bytes() == b"inner\n" and (copy / "ro").stat().st_mode & 0o777 == 0o555
    assert (copy / "file").stat().st_mtime == 1_000_000_000
    assert outside.read_text() == "keep me\n"
    with pytest.raises(NodePluginError, match="already exists"):
        fs.copy_tree("/sub", str(copy))
    with pytest.raises(NodePluginError, match="more than 10 bytes"):
        fs.copy_tree("/sub", str(tmp_path / "small"), max_bytes=10)
    assert sorted(os.listdir(tmp_path)) == sorted(["copy", "image.img", "outside.txt", "stage"])
    (copy / "ro").chmod(0o755)


def test_fuzzed_metadata_gives_only_clean_errors(tmp_path):
    """Random damage to the metadata of small images: each read either works or raises NodePluginError."""
    rng = random.Random(13)
    outcomes = {"read": 0, "refused": 0}
    for options in (["-t", "ext2", "-b", "1024"], ["-t", "ext4", "-b", "1024"]):
        pristine = _image(tmp_path, options, size="1M")
        metadata_end = 200 * 1024  # superblock, descriptors, bitmaps, inode tables and the first directories
        for _round in range(150):
            data = bytearray(pristine)
            for _flip in range(rng.choice((1, 4, 16))):
                data[rng.randrange(1024, metadata_end)] = rng.randrange(256)
            try:
                fs = _fs(data)
                _read_everything(fs)
                fs.owners(range(0, fs.superblock.blocks_count + 2, 3))
                fs.paths(2)
                outcomes["read"] += 1
            except NodePluginError as error:
                assert error.path == NAME
                outcomes["refused"] += 1
        (tmp_path / "stage").rename(tmp_path / f"stage-{options[1]}")
    assert outcomes["read"] and outcomes["refused"]
