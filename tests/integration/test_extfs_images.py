# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ext reader cross-checked against debugfs (e2fsprogs) on real ext2, ext3 and ext4 images made with
``mke2fs -d``, and on the fixture ISO's root image."""
from __future__ import annotations

import dataclasses
import filecmp
import hashlib
import os
import random
import re
import shutil
import subprocess
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _liveos as liveos
from ansible_collections.ovirt.node_plugins.plugins.module_utils._blockio import FileRegion
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._extfs import (BlockKind, ExtFilesystem,
                                                                                changed_inodes)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._squashfs import SquashfsImage

LONG_TARGET = "/usr/share/a-folder-with-a-rather-long-name/and-a-second-level-folder/target-file.txt"
BIG_DIR_ENTRIES = 3000


@dataclasses.dataclass(frozen=True)
class Image:
    kind: str
    path: str
    stage: str


class CountingSource:
    """A ByteSource that records every read, to prove what a question cost and which blocks it touched."""

    def __init__(self, inner: FileRegion) -> None:
        self.inner = inner
        self.reads: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.inner.read(offset, length)

    @property
    def bytes_read(self) -> int:
        return sum(length for _offset, length in self.reads)


def _run(argv: list[str], **kwargs) -> bytes:
    result = subprocess.run(argv, capture_output=True, check=False, **kwargs)
    assert result.returncode == 0, f"{argv}: {result.stderr.decode(errors='replace')[-2000:]}"
    return result.stdout


def _stage(root: str) -> None:
    """A tree with every kind of entry the reader must handle."""
    def write(rel: str, data: bytes, mode: int = 0o644) -> str:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, mode)
        return path

    rng = random.Random(4)
    write("etc/hello", b"hello\n")
    os.link(os.path.join(root, "etc/hello"), os.path.join(root, "etc/hello-hardlink"))
    write("etc/default/version", b"VERSION=2.5.0\nRELEASE=1.0.fc17\n")
    write("var/lib/rpm/Packages", rng.randbytes(1 << 20))
    write("var/lib/rpm/Name", rng.randbytes(100_000), 0o600)
    write("var/lib/rpm/empty", b"")
    write("var/lib/rpm/sub/__db.001", rng.randbytes(5000))
    write("usr/bin/busybox", rng.randbytes(5 << 20), 0o755)  # 1 KiB blocks: double indirect
    write(LONG_TARGET.lstrip("/"), b"the slow symlink's target\n")
    owned = write("opt/vendor/owned", b"owned by 1234:5678\n", 0o4750)
    os.chown(owned, 1234, 5678)
    os.chmod(owned, 0o4750)  # chown cleared the set-uid bit
    os.setxattr(owned, "user.vendor", b"a value")
    os.setxattr(os.path.join(root, "etc/hello"), "user.big", rng.randbytes(300))
    os.makedirs(os.path.join(root, "bin"))
    os.symlink("../usr/bin/busybox", os.path.join(root, "bin/sh"))  # fast, relative
    os.symlink("/etc/hello", os.path.join(root, "abs-link"))  # fast, absolute
    os.symlink(LONG_TARGET, os.path.join(root, "slow-link"))  # longer than 60 bytes: a slow symlink
    os.symlink("../../../../../../etc/hello", os.path.join(root, "etc/escaping-link"))  # '..' stops at the root
    os.symlink("loop-b", os.path.join(root, "loop-a"))
    os.symlink("loop-a", os.path.join(root, "loop-b"))
    os.symlink("/does/not/exist", os.path.join(root, "dangling"))
    with open(os.path.join(root, "sparse"), "wb") as handle:  # a triple-indirect block with 1 KiB blocks
        for offset in (0, 70 << 20, 200 << 20):
            handle.seek(offset)
            handle.write(b"data at %d\n" % offset)
    os.makedirs(os.path.join(root, "big"))
    for index in range(BIG_DIR_ENTRIES):
        open(os.path.join(root, "big", f"entry-with-a-longer-name-{index:05d}"), "wb").close()
    deep = os.path.join(root, "deep", *[f"level{n}" for n in range(60)])
    os.makedirs(deep)
    write(os.path.relpath(os.path.join(deep, "bottom"), root), b"at the bottom\n")
    with open(os.path.join(os.fsencode(root), b"name-\xff\xfe-not-utf8"), "wb") as handle:
        handle.write(b"bytes name\n")
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "null"), 0o600 | 0o020000, os.makedev(1, 3))


# kind: (mke2fs options, size)
MKFS = {
    "ext2": (["-t", "ext2", "-b", "1024"], "320M"),
    "ext3": (["-t", "ext3", "-b", "4096", "-I", "128"], "320M"),
    "ext4": (["-t", "ext4", "-b", "4096"], "320M"),
    "ext4-meta_bg": (["-t", "ext4", "-b", "1024", "-g", "1024",
                      "-O", "meta_bg,^resize_inode,sparse_super2,quota,project,orphan_file,mmp"], "320M"),
}


def _fragment(image: str, work: str) -> None:
    """ext4 extras with debugfs -w: a file of many extents (an extent tree of depth 1) and unwritten extents."""
    fill = os.path.join(work, "fill.bin")
    frag = os.path.join(work, "frag.bin")
    with open(fill, "wb") as handle:
        handle.write(random.Random(5).randbytes(8192))
    with open(frag, "wb") as handle:
        handle.write(random.Random(6).randbytes(900_000))
    script = ["mkdir /fill"]
    script += [f"write {fill} /fill/f{index}" for index in range(200)]
    script += [f"rm /fill/f{index}" for index in range(0, 200, 2)]
    script += [f"write {frag} /fragmented", "write /dev/null /unwritten", "fallocate /unwritten 0 39",
               "sif /unwritten size 163840"]
    path = os.path.join(work, "fragment.debugfs")
    with open(path, "w", encoding="ascii") as handle:
        handle.write("\n".join(script) + "\n")
    _run(["debugfs", "-w", "-f", path, image])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Image]:
    work = str(tmp_path_factory.mktemp("extfs"))
    stage = os.path.join(work, "stage")
    os.makedirs(stage)
    _stage(stage)
    built = {}
    for kind, (options, size) in MKFS.items():
        path = os.path.join(work, f"{kind}.img")
        _run(["mke2fs", "-q", "-F", *options, "-d", stage, path, size])
        if kind == "ext4":
            _run(["e2fsck", "-fyD", path])  # index the large directory (htree)
            _fragment(path, work)
        built[kind] = Image(kind=kind, path=path, stage=stage)
    return built


def _debugfs(image: str, commands: list[str]) -> list[bytes]:
    """The output of each command, run in one debugfs process."""
    out = _run(["debugfs", "-f", "-", image], input="\n".join(commands).encode() + b"\n")
    parts = re.split(rb"^debugfs: .*\n", out, flags=re.M)
    assert len(parts) == len(commands) + 1
    return parts[1:]


def _open(image: Image) -> ExtFilesystem:
    return ExtFilesystem(FileRegion(image.path), name=f"{image.kind}.img")


def _sha256(fs: ExtFilesystem, ino: int) -> str:
    handle = fs.open(fs.paths(ino)[0])
    digest = hashlib.sha256()
    for offset in range(0, handle.size, 8 << 20):
        digest.update(handle.read(offset, 8 << 20))
    return digest.hexdigest()


@pytest.mark.parametrize("kind", list(MKFS))
def test_listing_stat_and_content_match_debugfs(images, kind, tmp_path):
    image = images[kind]
    fs = _open(image)
    dirs = [(path, fs.lookup(path)) for path, _subdirs, _others in fs.walk("/")]
    listings = _debugfs(image.path, [f"ls -p <{ino}>" for _path, ino in dirs])
    inodes = {}
    for (path, ino), listing in zip(dirs, listings):
        expected = {}
        for line in listing.splitlines():
            fields = line.split(b"/")  # /inode/mode/uid/gid/name/size/
            if len(fields) >= 7 and fields[5] not in (b".", b"..") and int(fields[1]):  # inode 0: an empty slot
                expected[fields[5]] = (int(fields[1]), int(fields[2], 8))
        ours = {entry.name.encode("utf-8", "surrogateescape"): (entry.ino, fs.stat(entry.ino).mode)
                for entry in fs.listdir(path)}
        assert ours == expected, path
        inodes.update({ino: name for name, (ino, _mode) in ours.items()})
    assert len(fs.listdir("/big")) == BIG_DIR_ENTRIES

    numbers = sorted(inodes)
    for ino, text in zip(numbers, _debugfs(image.path, [f"stat <{ino}>" for ino in numbers])):
        text = text.decode("utf-8", "replace")
        ours = fs.stat(ino)
        assert int(re.search(r"Mode:\s+(\d+)", text).group(1), 8) == ours.mode & 0o7777
        assert int(re.search(r"User:\s+(\d+)", text).group(1)) == ours.uid
        assert int(re.search(r"Group:\s+(\d+)", text).group(1)) == ours.gid
        assert int(re.search(r"Size:\s+(\d+)", text).group(1)) == ours.size
        assert int(re.search(r"Links:\s+(\d+)", text).group(1)) == ours.links
        assert int(re.search(r"mtime:\s+0x([0-9a-f]+)", text).group(1), 16) == ours.mtime & 0xFFFFFFFF
        assert re.search(r"Type:\s+(\w+)", text).group(1) == {
            "file": "regular", "dir": "directory", "symlink": "symlink", "chardev": "character", "fifo": "FIFO",
        }[ours.kind]

    files = [ino for ino in numbers if fs.stat(ino).kind == "file"]
    dumps = [str(tmp_path / f"{ino}.dump") for ino in files]
    _debugfs(image.path, [f"dump <{ino}> {dump}" for ino, dump in zip(files, dumps)])
    for ino, dump in zip(files, dumps):
        with open(dump, "rb") as handle:
            expected = hashlib.sha256()
            for chunk in iter(lambda: handle.read(8 << 20), b""):
                expected.update(chunk)
        assert _sha256(fs, ino) == expected.hexdigest(), fs.paths(ino)
        os.unlink(dump)

    # Names with any bytes come back surrogate-escaped and look up again.
    odd = os.fsdecode(b"/name-\xff\xfe-not-utf8")
    assert fs.read_file(odd) == b"bytes name\n"
    assert fs.stat("/fifo").kind == "fifo" and fs.stat("/null").kind == "chardev"
    assert fs.stat("/opt/vendor/owned").mode & 0o7777 == 0o4750
    assert fs.xattrs("/opt/vendor/owned")["user.vendor"] == b"a value"
    assert len(fs.xattrs("/etc/hello")["user.big"]) == 300
    assert fs.paths(fs.lookup("/etc/hello")) == ["/etc/hello", "/etc/hello-hardlink"]
    assert fs.stat("/etc/hello").links == 2
    deep = "/deep/" + "/".join(f"level{n}" for n in range(60)) + "/bottom"
    assert fs.read_file(deep) == b"at the bottom\n"


@pytest.mark.parametrize("kind", ["ext2", "ext3", "ext4"])
def test_symlinks_are_followed_inside_the_image_only(images, kind):
    image = images[kind]
    fs = _open(image)
    for link in ("bin/sh", "abs-link", "slow-link", "etc/escaping-link", "loop-a", "dangling"):
        assert fs.readlink("/" + link) == os.readlink(os.path.join(image.stage, link))
    assert fs.stat("/slow-link", follow=False).size > 60
    assert fs.read_file("/slow-link") == b"the slow symlink's target\n"
    assert fs.lookup("/bin/sh") == fs.lookup("/usr/bin/busybox")
    assert fs.read_file("/etc/escaping-link") == b"hello\n"  # '..' at the root stays at the root
    assert fs.read_file("/abs-link") == b"hello\n"  # an absolute target is an image path
    assert fs.lookup("/bin/../etc/hello") == fs.lookup("/etc/hello")
    assert fs.exists("/dangling", follow=False) and not fs.exists("/dangling")
    with pytest.raises(NodePluginError, match="more than 40 symlinks"):
        fs.lookup("/loop-a")
    with pytest.raises(NodePluginError, match="does not exist"):
        fs.read_file("/dangling")


def test_htree_directory_many_extents_and_unwritten_extents(images):
    image = images["ext4"]
    fs = _open(image)
    assert fs.stat("/big").flags & 0x1000  # e2fsck -D indexed it: read here as a linear directory
    names = sorted(entry.name for entry in fs.listdir("/big"))
    assert names == sorted(os.listdir(os.path.join(image.stage, "big")))
    runs = fs.block_map("/fragmented")
    assert len(runs) > 20  # more than the inode's four extents: an extent tree with a leaf block
    text = _debugfs(image.path, ["stat /fragmented"])[0].decode()
    assert "(ETB0)" in text
    expected = [(int(a), int(b or a), int(c)) for a, b, c in re.findall(r"\((\d+)(?:-(\d+))?\):(\d+)", text)]
    assert [(run.logical, run.logical + run.count - 1, run.physical) for run in runs] == expected
    unwritten = fs.block_map("/unwritten")
    assert unwritten and not any(run.initialized for run in unwritten)
    assert fs.read_file("/unwritten") == bytes(163840)


def _dumpe2fs_layout(image: str) -> dict[int, str]:
    """Block -> kind of every fixed structure, as dumpe2fs prints the groups."""
    layout = {}
    kinds = {"superblock": BlockKind.SUPERBLOCK, "Group descriptors": BlockKind.GROUP_DESCRIPTORS,
             "Group descriptor": BlockKind.GROUP_DESCRIPTORS, "Reserved GDT blocks": BlockKind.RESERVED_GDT,
             "Block bitmap": BlockKind.BLOCK_BITMAP, "Inode bitmap": BlockKind.INODE_BITMAP,
             "Inode table": BlockKind.INODE_TABLE}
    text = _run(["dumpe2fs", image]).decode()
    for name, first, last in re.findall(r"(superblock|Group descriptors?|Reserved GDT blocks|Block bitmap|"
                                        r"Inode bitmap|Inode table) at (\d+)(?:-(\d+))?", text):
        for block in range(int(first), int(last or first) + 1):
            layout[block] = kinds[name]
    mmp = re.search(r"MMP block number:\s+(\d+)", text)
    if mmp:
        layout[int(mmp.group(1))] = BlockKind.MMP
    return layout


def _map_blocks(image: str, inodes: list[int]) -> set[int]:
    """The extent-tree and indirect blocks debugfs lists for these inodes."""
    found = set()
    for text in _debugfs(image, [f"stat <{ino}>" for ino in inodes]):
        found.update(int(block) for block in re.findall(rb"\((?:ETB\d+|IND|DIND|TIND)\):(\d+)", text))
    return found


@pytest.mark.parametrize("kind", list(MKFS))
def test_owners_match_icheck_ncheck_and_dumpe2fs(images, kind):
    image = images[kind]
    reference = _open(image)
    sb = reference.superblock
    layout = _dumpe2fs_layout(image.path)
    inodes = [reference.lookup(path) for path in ("/usr/bin/busybox", "/sparse", "/big", "/var/lib/rpm/Packages")]
    inodes.append(sb.journal_inode or reference.lookup("/etc/hello"))
    if kind == "ext4":
        inodes.append(reference.lookup("/fragmented"))
    map_blocks = _map_blocks(image.path, inodes)
    rng = random.Random(kind)
    sample = set(range(min(sb.blocks_count, 400))) | set(rng.sample(range(sb.blocks_count), 600)) | map_blocks
    sample |= set(rng.sample(sorted(layout), min(len(layout), 300)))
    for ino in inodes:
        for run in reference.block_map(ino)[:50]:
            sample.update((run.physical, run.physical + run.count - 1))
    sample |= {sb.blocks_count - 1, sb.blocks_count, sb.blocks_count + 10}
    blocks = sorted(sample)

    counting = CountingSource(FileRegion(image.path))
    fs = ExtFilesystem(counting, name=f"{kind}.img")
    started = time.monotonic()
    owners = fs.owners(blocks)
    seconds = time.monotonic() - started
    owners_reads, owners_bytes = counting.reads[:], counting.bytes_read

    icheck = {}
    inside = [block for block in blocks if block < sb.blocks_count]
    commands = [f"icheck {' '.join(map(str, inside[start:start + 200]))}" for start in range(0, len(inside), 200)]
    for output in _debugfs(image.path, commands):  # debugfs drops the end of very long command lines
        for line in output.decode().splitlines()[1:]:
            block, ino = line.split("\t")
            icheck[int(block)] = None if ino.startswith("<") else int(ino)
    assert len(icheck) == len(inside)
    for block in blocks:
        owner = owners[block]
        if block >= sb.blocks_count:
            assert owner.kind == BlockKind.BEYOND_END
            continue
        assert owner.inode == icheck[block], (block, owner)
        if block in layout:
            assert owner.kind == layout[block], (block, owner)
        elif block in map_blocks:
            assert owner.kind in (BlockKind.BLOCK_MAP, BlockKind.JOURNAL), (block, owner)
        elif owner.inode is None:
            assert owner.kind == (BlockKind.BOOT if block == 0 and sb.first_data_block else BlockKind.UNUSED)
        if owner.kind == BlockKind.INODE_TABLE:
            assert len(owner.table_inodes) == sb.block_size // sb.inode_size
    journal = [owner for owner in owners.values() if owner.kind == BlockKind.JOURNAL]
    assert bool(journal) == bool(sb.journal_inode) and all(owner.inode == sb.journal_inode for owner in journal)

    # Paths of the owners, as ncheck names them (it prints every hard link; '//' for the root's entries).
    owning = sorted({owner.inode for owner in owners.values()
                     if owner.kind in (BlockKind.FILE_DATA, BlockKind.DIRECTORY, BlockKind.BLOCK_MAP)})
    ncheck: dict[int, list[str]] = {}
    commands = [f"ncheck {' '.join(map(str, owning[start:start + 200]))}" for start in range(0, len(owning), 200)]
    for output in _debugfs(image.path, commands):
        for line in output.decode().splitlines()[1:]:
            ino, path = line.split("\t", 1)
            ncheck.setdefault(int(ino), []).append(re.sub("^//", "/", path))
    for ino in owning:
        assert fs.paths(ino) == sorted(ncheck.get(ino, [])), ino

    # owners() read metadata only: no read touched a regular file's data block.
    data_blocks = set()
    for _path, _dirs, others in reference.walk("/"):
        for entry in others:
            if entry.kind == "file":
                for run in reference.block_map(entry.ino):
                    data_blocks.update(range(run.physical, run.physical + run.count))
    touched = set()
    for offset, length in owners_reads:
        touched.update(range(offset // sb.block_size, (offset + length - 1) // sb.block_size + 1))
    assert not touched & data_blocks
    print(f"\n{kind}: owners() of {len(blocks)} blocks in {seconds:.3f} s, {owners_bytes} bytes read of a "
          f"{counting.size}-byte image (directories included)")


def test_changed_inodes_narrow_a_changed_inode_table_block(images, tmp_path):
    """The certification's question: which inodes and paths own the blocks an edit changed?"""
    before = images["ext4"]
    after_path = str(tmp_path / "after.img")
    shutil.copyfile(before.path, after_path)
    new_file = tmp_path / "new.conf"
    new_file.write_bytes(b"written by the plugin\n" * 400)
    script = tmp_path / "edit.debugfs"
    script.write_text(f"sif /etc/hello mode 0100600\nwrite {new_file} /etc/plugin.conf\n")
    _run(["debugfs", "-w", "-f", str(script), after_path])

    block_size = 4096
    changed = []
    with open(before.path, "rb") as old_handle, open(after_path, "rb") as new_handle:
        for block in range(os.path.getsize(after_path) // block_size):
            if old_handle.read(block_size) != new_handle.read(block_size):
                changed.append(block)
    old_fs, new_fs = _open(before), ExtFilesystem(FileRegion(after_path), name="after.img")
    owners = new_fs.owners(changed)
    by_kind: dict[str, list] = {}
    for owner in owners.values():
        by_kind.setdefault(owner.kind, []).append(owner)
    new_ino = new_fs.lookup("/etc/plugin.conf")
    assert {owner.inode for owner in by_kind[BlockKind.FILE_DATA]} == {new_ino}
    assert new_fs.paths(new_ino) == ["/etc/plugin.conf"]
    assert {new_fs.paths(owner.inode)[0] for owner in by_kind[BlockKind.DIRECTORY]} == {"/etc"}
    suspects = [ino for owner in by_kind[BlockKind.INODE_TABLE] for ino in owner.table_inodes]
    assert len(suspects) >= 16
    narrowed = changed_inodes(old_fs, new_fs, suspects)
    hello, etc = new_fs.lookup("/etc/hello"), new_fs.lookup("/etc")
    assert narrowed[hello] == ("mode",)
    assert "in_use" in narrowed[new_ino]
    assert {hello, new_ino} <= set(narrowed) <= {hello, new_ino, etc}  # debugfs may leave /etc's inode alone
    assert set(narrowed.get(etc, ())) <= {"size", "ctime", "mtime", "blocks", "links"}
    assert not changed_inodes(old_fs, old_fs, suspects)


def test_fixture_rpm_database_copy_matches_debugfs_rdump(node_iso, tmp_path):
    """/var/lib/rpm read from the root image inside the ISO's squashfs (decompressed lazily) and from the
    unpacked image, both equal to what debugfs gives; the costs are printed."""
    started = time.monotonic()
    offset, size = liveos.squashfs_extent(node_iso.iso)
    iso_reads = CountingSource(FileRegion(node_iso.iso, offset, size))
    squashfs = SquashfsImage(iso_reads, name=f"{node_iso.iso}:/LiveOS/squashfs.img")
    lazy = ExtFilesystem(squashfs.open_file(f"/{node_iso.root_image}"), name=f"squashfs:{node_iso.root_image}")
    lazy_listing = lazy.listdir("/var/lib/rpm")
    lazy_copy = lazy.copy_tree("/var/lib/rpm", str(tmp_path / "lazy-rpm"))
    lazy_version = lazy.read_file("/etc/default/version")
    lazy_seconds = time.monotonic() - started

    started = time.monotonic()
    root_image = liveos.extract_root_image(node_iso.iso, str(tmp_path / "root"))
    extract_seconds = time.monotonic() - started
    counting = CountingSource(FileRegion(root_image))
    started = time.monotonic()
    fs = ExtFilesystem(counting, name=root_image)
    listing = fs.listdir("/var/lib/rpm")
    ours = fs.copy_tree("/var/lib/rpm", str(tmp_path / "rpm"))
    version = fs.read_file("/etc/default/version")
    ext_seconds = time.monotonic() - started

    started = time.monotonic()
    os.makedirs(tmp_path / "debugfs")
    version_file = tmp_path / "version"
    listing_text, _rdump, _dump = _debugfs(root_image, ['ls -p "/var/lib/rpm"',
                                                        f'rdump "/var/lib/rpm" "{tmp_path / "debugfs"}"',
                                                        f'dump "/etc/default/version" "{version_file}"'])
    reference = str(tmp_path / "debugfs" / "rpm")
    reference_version = version_file.read_bytes()
    debugfs_seconds = time.monotonic() - started

    assert version == lazy_version == reference_version
    # ls -p: /inode/mode/uid/gid/name/size/
    expected_listing = sorted((fields[5], int(fields[2], 8), int(fields[6]))
                              for fields in (line.strip().split("/") for line in listing_text.decode().splitlines())
                              if len(fields) >= 7 and fields[5] not in (".", ".."))
    for reader, entries in ((fs, listing), (lazy, lazy_listing)):
        assert sorted((entry.name, reader.stat(entry.ino).mode, reader.stat(entry.ino).size)
                      for entry in entries) == expected_listing
    names = [name for name in os.listdir(reference) if os.path.isfile(os.path.join(reference, name))]
    for copy in (ours, lazy_copy):
        assert copy.files > 0 and copy.skipped == ()
        comparison = filecmp.dircmp(copy.path, reference)
        assert not comparison.left_only and not comparison.right_only and not comparison.funny_files
        assert filecmp.cmpfiles(copy.path, reference, names, shallow=False)[1:] == ([], [])
        for name in names:
            copied, expected = os.stat(os.path.join(copy.path, name)), os.stat(os.path.join(reference, name))
            assert copied.st_mode == expected.st_mode and copied.st_mtime == expected.st_mtime
    print(f"\n/var/lib/rpm of the fixture ({ours.files} files, {ours.bytes} bytes) and /etc/default/version:\n"
          f"  ext reader over the {node_iso.spec.compressor} squashfs, read lazily: {lazy_seconds:.3f} s, "
          f"{iso_reads.bytes_read} bytes read from the ISO, {squashfs.bytes_decompressed} bytes decompressed "
          f"({squashfs.blocks_decompressed} blocks) of a {counting.size >> 20} MiB root image\n"
          f"  ext reader on the unpacked image: {ext_seconds:.3f} s, {counting.bytes_read} bytes in "
          f"{len(counting.reads)} reads\n"
          f"  today: unsquashfs of the root image {extract_seconds:.3f} s, then debugfs {debugfs_seconds:.3f} s")
