# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The squashfs layer against squashfs-tools on real images.

Images are made with ``mksquashfs`` from a tree holding ``LiveOS/rootfs.img`` (an ext4 image made with
``mke2fs -t ext4 -d``, with data, text, code and zero regions) and small files of every kind; the root
image is then changed with ``debugfs -w``, ``dd`` and ``resize2fs`` and the squashfs rewritten with
``rewrite_squashfs``. Each rewrite is checked with ``unsquashfs``: the same listing, the changed image
extracted byte for byte, unchanged compressed blocks identical to the base's, zero blocks sparse.

``python -m tests.integration.test_squashfs_images --help`` measures reader throughput and rewrite time on a
big image (for ``make bench``).
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import filecmp
import hashlib
import os
import resource
import shutil
import socket
import stat
import subprocess
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _liveos as liveos
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _squashfs as squashfs
from ansible_collections.ovirt.node_plugins.plugins.module_utils._blockio import FileRegion
from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import IsoReader

ROOT_IMAGE = "/LiveOS/rootfs.img"
EPOCH = 1700000000


def _run(argv: list[str], **kwargs) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def make_root_image(path: str, *, size_kib: int, data_mib: int = 4) -> str:
    """An ext4 image of ``size_kib`` with about ``data_mib`` MiB of files (half random, half text, some code),
    the rest of it zero."""
    tree = path + ".tree"
    os.makedirs(os.path.join(tree, "usr", "bin"))
    os.makedirs(os.path.join(tree, "etc"))
    with open(os.path.join(tree, "usr", "random.bin"), "wb") as handle:
        for piece in range(-(-data_mib // 64)):
            handle.write(hashlib.shake_256(b"random" + bytes(piece)).digest(min(64, data_mib - piece * 64) << 19))
    with open(os.path.join(tree, "etc", "numbers.txt"), "w", encoding="ascii") as handle:
        for start in range(0, data_mib * 18000, 100000):
            handle.write("".join(f"line {number} of the text file\n"
                                 for number in range(start, min(start + 100000, data_mib * 18000))))
    for tool in ("/usr/bin/ls", "/usr/bin/cp"):
        shutil.copy(tool, os.path.join(tree, "usr", "bin"))
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "root", "-d", tree, path, f"{size_kib}k"])
    shutil.rmtree(tree)
    return path


def make_tree(root: str, root_image: str) -> str:
    """A squashfs source tree like a Node's: LiveOS/rootfs.img and small files of every kind."""
    os.makedirs(os.path.join(root, "LiveOS"))
    os.makedirs(os.path.join(root, "etc", "sub"))
    shutil.copy(root_image, os.path.join(root, "LiveOS", "rootfs.img"))
    with open(os.path.join(root, "LiveOS", "osmin.img"), "wb") as handle:
        handle.write(b"osmin" * 3000)
    with open(os.path.join(root, "etc", "motd"), "w", encoding="ascii") as handle:
        handle.write("hello\n")
    os.link(os.path.join(root, "etc", "motd"), os.path.join(root, "etc", "sub", "motd-link"))
    os.symlink("../motd", os.path.join(root, "etc", "sub", "link"))
    os.mknod(os.path.join(root, "etc", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "etc", "sda"), 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    os.mkfifo(os.path.join(root, "etc", "fifo"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(os.path.join(root, "etc", "socket"))
    os.chown(os.path.join(root, "etc", "fifo"), 1000, 1001)
    os.chmod(os.path.join(root, "etc", "motd"), 0o4755)
    for number in range(300):  # a directory with more than 256 entries: extended, with an index
        with open(os.path.join(root, "etc", f"entry-with-a-long-name-{number:05d}"), "w", encoding="ascii") as handle:
            handle.write(str(number))
    os.setxattr(os.path.join(root, "etc", "motd"), "user.comment", b"an extended attribute")
    return root


def make_squashfs(tree: str, out: str, args: list[str]) -> str:
    _run(["mksquashfs", tree, out, "-noappend", "-no-progress", "-quiet", *args])
    return out


def changed_blocks(base: str, new: str, block_size: int) -> list[int]:
    """Indices of the blocks in which ``new`` differs from ``base`` (``base`` zero-extended)."""
    indices = []
    with open(base, "rb") as old_handle, open(new, "rb") as new_handle:
        index = 0
        while True:
            fresh = new_handle.read(block_size)
            if not fresh:
                break
            old = old_handle.read(block_size)[:len(fresh)]
            if fresh != old + bytes(len(fresh) - len(old)):
                indices.append(index)
            index += 1
    return indices


def lls(image: str) -> list[str]:
    return _run(["unsquashfs", "-lls", "-no-progress", image]).splitlines()


def extract(image: str, dest: str) -> str:
    _run(["unsquashfs", "-no-progress", "-d", dest, image])
    return dest


@dataclasses.dataclass
class Case:
    name: str
    args: list[str]
    block_size: int


CASES = [
    Case("gzip-64k", ["-comp", "gzip"], 65536),
    Case("gzip-1m-options", ["-comp", "gzip", "-Xcompression-level", "6", "-Xstrategy", "filtered,default"], 1 << 20),
    Case("xz-1m-bcj-x86-tailends", ["-comp", "xz", "-Xbcj", "x86", "-tailends"], 1 << 20),
    Case("xz-64k-dict", ["-comp", "xz", "-Xdict-size", "32K"], 65536),
    Case("zstd-64k-level3", ["-comp", "zstd", "-Xcompression-level", "3"], 65536),
    Case("lz4-1m-hc-tailends", ["-comp", "lz4", "-Xhc", "-tailends"], 1 << 20),
    Case("lzo-64k", ["-comp", "lzo"], 65536),
    Case("lzo-1m-lzo1x_1", ["-comp", "lzo", "-Xalgorithm", "lzo1x_1"], 1 << 20),
    Case("lzma-64k", ["-comp", "lzma"], 65536),
    Case("gzip-uncompressed-tables", ["-comp", "gzip", "-noI", "-noD", "-noF", "-noX"], 131072),
    Case("gzip-no-exports-no-xattrs-always-fragments",
         ["-comp", "gzip", "-no-exports", "-no-xattrs", "-always-use-fragments"], 131072),
]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The base root image (a tail of 12 KiB past a 64 KiB boundary) and changed copies of it."""
    work = tmp_path_factory.mktemp("squashfs-images")
    base = make_root_image(str(work / "base.img"), size_kib=16 * 1024 + 12)
    with open(base, "r+b") as handle:  # free blocks at the end, so that the tail is data, not sparse
        handle.seek(-12 * 1024, os.SEEK_END)
        handle.write(b"B" * 12 * 1024)
    edited = str(work / "edited.img")
    shutil.copy(base, edited)
    payload = work / "payload"
    payload.write_bytes(hashlib.shake_256(b"payload").digest(300000))
    _run(["debugfs", "-w", "-R", f"write {payload} /payload.bin", edited])
    # Zero a whole 1 MiB-aligned region of random data: it must come back sparse.
    with open(base, "rb") as handle:
        image = handle.read()
    start = image.index(hashlib.shake_256(b"random").digest(64))
    zero_from = -(-start // (1 << 20)) * (1 << 20)
    with open(edited, "r+b") as handle:
        handle.seek(zero_from)
        handle.write(bytes(1 << 20))
    inner = str(work / "inner.img")  # edited everywhere but in the tail
    shutil.copy(edited, inner)
    size = os.path.getsize(base)
    with open(edited, "r+b") as handle:
        handle.seek(size - 4096)   # the tail (in a fragment with -tailends)
        handle.write(b"T" * 4096)
    grown = str(work / "grown.img")
    shutil.copy(edited, grown)
    with open(grown, "r+b") as handle:
        handle.truncate(size + 3 * 1024 * 1024 + 8192)
    _run(["resize2fs", "-f", grown])
    return {"base": base, "edited": edited, "inner": inner, "grown": grown}


def _rewrite_and_check(tmp_path, images, case: Case, changed_image: str):
    tree = make_tree(str(tmp_path / "tree"), images["base"])
    base_sqfs = make_squashfs(tree, str(tmp_path / "base.squashfs"), ["-b", str(case.block_size), *case.args])
    indices = changed_blocks(images["base"], changed_image, case.block_size)
    assert indices, "the edit changed nothing"
    out = str(tmp_path / "new.squashfs")
    with FileRegion(base_sqfs) as base, FileRegion(changed_image) as new_content:
        report = squashfs.rewrite_squashfs(base, out, ROOT_IMAGE,
                                           squashfs.BlocksFromSource(new_content, indices, case.block_size),
                                           new_size=new_content.size, base_name=base_sqfs)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")], "debris left behind"

    # unsquashfs lists the same tree; only the root image's size may differ.
    before = [line.split() for line in lls(base_sqfs)]
    after = [line.split() for line in lls(out)]
    new_size = os.path.getsize(changed_image)
    for fields in before:
        if fields[-1].endswith("/LiveOS/rootfs.img"):
            fields[2] = str(new_size)
    assert after == before

    # unsquashfs extracts the changed image byte for byte, and every other file as the base had it.
    extracted = extract(out, str(tmp_path / "extracted"))
    assert filecmp.cmp(os.path.join(extracted, "LiveOS", "rootfs.img"), changed_image, shallow=False)
    base_extracted = extract(base_sqfs, str(tmp_path / "base-extracted"))
    assert _tree_facts(base_extracted) == _tree_facts(extracted)
    if case.args[1] != "lzma":  # Linux reads every squashfs compressor but the legacy lzma
        _kernel_reads(out, str(tmp_path / "mnt"), changed_image, extracted)

    # The reader reads every file as unsquashfs extracted it.
    with FileRegion(out) as region:
        image = squashfs.SquashfsImage(region, name=out)
        files = 0
        for entry in image.walk():
            local = os.path.join(extracted, entry.path.lstrip("/"))
            if entry.inode.is_file:
                with open(local, "rb") as handle:
                    assert image.open_file(entry.inode).read(0, entry.inode.file_size) == handle.read(), entry.path
                files += 1
            elif entry.inode.kind == "symlink":
                assert os.readlink(local) == os.fsdecode(entry.inode.target)
        assert files == 4 + 300
        new_root = image.lookup(ROOT_IMAGE)
        new_blocks = image.file_blocks(new_root)
        new_file = image.open_file(new_root)
        # Zero blocks are sparse; blocks the edit did not touch are the base's compressed bytes.
        with FileRegion(base_sqfs) as base_region:
            base_image = squashfs.SquashfsImage(base_region, name=base_sqfs)
            old_root = base_image.lookup(ROOT_IMAGE)
            old_blocks = base_image.file_blocks(old_root)
            # Besides the changed blocks, only the old and the new tail may be compressed anew.
            touched = set(indices) | {old_root.file_size // case.block_size, new_size // case.block_size}
            reused = 0
            for index, block in enumerate(new_blocks):
                content = new_file.block(index)
                assert block.sparse == (not content.strip(b"\0")), index
                if index not in touched and index < len(old_blocks):
                    assert (block.stored_size, block.compressed) == (old_blocks[index].stored_size,
                                                                     old_blocks[index].compressed)
                    assert image.read_raw(block.offset, block.stored_size) == \
                        base_image.read_raw(old_blocks[index].offset, old_blocks[index].stored_size)
                    reused += not block.sparse
            assert reused <= report.blocks_reused <= reused + 2
            # A verifier finds the changed blocks from the stored bytes alone: every block whose content
            # changed, and besides those only the tails and the blocks past the shorter file's end.
            found = set(squashfs.changed_file_blocks(base_image, image, ROOT_IMAGE))
            ends = sorted((len(old_blocks), len(new_blocks)))
            assert set(indices) <= found <= touched | set(range(ends[0], ends[1] + 1))
            assert base_image.compressor_options == image.compressor_options
            assert image.superblock.flags == base_image.superblock.flags
    assert report.blocks_compressed + report.blocks_reused + report.blocks_sparse == report.blocks_total
    assert report.blocks_compressed <= len(indices) + 2
    return report, base_sqfs, out


def _kernel_reads(image: str, mountpoint: str, root_image: str, extracted: str) -> None:
    """Linux (what dmsquash-live uses) mounts the image and reads the changed root image and every file."""
    os.makedirs(mountpoint)
    _run(["mount", "-t", "squashfs", "-o", "loop,ro", image, mountpoint])
    try:
        assert filecmp.cmp(os.path.join(mountpoint, "LiveOS", "rootfs.img"), root_image, shallow=False)
        assert _tree_facts(mountpoint) == _tree_facts(extracted)
    finally:
        _run(["umount", mountpoint])


def _tree_facts(root: str) -> dict[str, tuple]:
    """Every attribute unsquashfs restores, for every path but the root image (compared apart)."""
    facts = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            if os.path.relpath(path, root) == "LiveOS/rootfs.img":
                continue
            info = os.lstat(path)
            content = None
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            try:
                xattrs = {key: os.getxattr(path, key, follow_symlinks=False)
                          for key in os.listxattr(path, follow_symlinks=False)}
            except OSError as exc:  # a squashfs without an xattr table, mounted, has no xattr handler
                assert exc.errno == errno.EOPNOTSUPP
                xattrs = {}
            size = None if stat.S_ISDIR(info.st_mode) else info.st_size  # a folder's size is the file system's
            facts[os.path.relpath(path, root)] = (info.st_mode, info.st_uid, info.st_gid, size,
                                                  info.st_rdev, info.st_nlink, int(info.st_mtime), content, xattrs)
    return facts


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_rewrite_changed_blocks(tmp_path, images, case):
    report, _base, out = _rewrite_and_check(tmp_path, images, case, images["edited"])
    assert report.path_taken == "incremental" and report.compressor == case.args[1]
    assert report.blocks_sparse >= (1 << 20) // case.block_size
    assert os.path.getsize(out) % 4096 == 0


@pytest.mark.parametrize("case", [CASES[2], CASES[0], CASES[4]], ids=lambda case: case.name)
def test_rewrite_grown_file(tmp_path, images, case):
    report, _base, _out = _rewrite_and_check(tmp_path, images, case, images["grown"])
    assert report.new_size == os.path.getsize(images["grown"]) == report.old_size + 3 * 1024 * 1024 + 8192
    _run(["e2fsck", "-fn", images["grown"]])


@pytest.mark.parametrize("case", [CASES[2], CASES[5]], ids=lambda case: case.name)
def test_unchanged_tail_stays_in_its_fragment(tmp_path, images, case):
    _report, base_sqfs, out = _rewrite_and_check(tmp_path, images, case, images["inner"])
    with FileRegion(base_sqfs) as base_region, FileRegion(out) as new_region:
        old = squashfs.SquashfsImage(base_region).lookup(ROOT_IMAGE)
        new = squashfs.SquashfsImage(new_region).lookup(ROOT_IMAGE)
    assert old.has_fragment and (new.fragment, new.fragment_offset) == (old.fragment, old.fragment_offset)


def test_rewrite_shrunk_file(tmp_path, images):
    shrunk = str(tmp_path / "shrunk.img")
    with open(images["edited"], "rb") as source, open(shrunk, "wb") as dest:
        dest.write(source.read(os.path.getsize(images["edited"]) - 100 * 1024 - 512))
    _rewrite_and_check(tmp_path, images, CASES[3], shrunk)


def test_unchanged_rewrite_is_the_base_byte_for_byte(tmp_path, images):
    tree = make_tree(str(tmp_path / "tree"), images["base"])
    for case in (CASES[0], CASES[2], CASES[6], CASES[9]):
        base_sqfs = make_squashfs(tree, str(tmp_path / f"{case.name}.squashfs"), ["-b", str(case.block_size),
                                                                                  *case.args])
        out = str(tmp_path / f"{case.name}.new")
        with FileRegion(base_sqfs) as base:
            mkfs_time = squashfs.SquashfsImage(base).superblock.mkfs_time
            report = squashfs.rewrite_squashfs(base, out, ROOT_IMAGE, {}, mkfs_time=mkfs_time)
        assert report.blocks_compressed == 0 and report.bytes_compressed == 0
        assert filecmp.cmp(base_sqfs, out, shallow=False), case.name


def test_changed_blocks_with_the_base_content_are_reused(tmp_path, images):
    tree = make_tree(str(tmp_path / "tree"), images["base"])
    base_sqfs = make_squashfs(tree, str(tmp_path / "base.squashfs"), ["-b", "65536", "-comp", "zstd"])
    with FileRegion(images["base"]) as same_content, FileRegion(base_sqfs) as base:
        report = squashfs.rewrite_squashfs(base, str(tmp_path / "new.squashfs"), ROOT_IMAGE,
                                           squashfs.BlocksFromSource(same_content, range(0, 40), 65536))
    assert report.blocks_unchanged_content == 40 and report.blocks_compressed == 0


def test_same_inputs_give_the_same_bytes(tmp_path, images, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    tree = make_tree(str(tmp_path / "tree"), images["base"])
    base_sqfs = make_squashfs(tree, str(tmp_path / "base.squashfs"), ["-b", "131072", "-comp", "xz"])
    indices = changed_blocks(images["base"], images["edited"], 131072)
    outputs = []
    for number in range(2):
        out = str(tmp_path / f"new-{number}.squashfs")
        with FileRegion(base_sqfs) as base, FileRegion(images["edited"]) as new_content:
            squashfs.rewrite_squashfs(base, out, ROOT_IMAGE, squashfs.BlocksFromSource(new_content, indices, 131072),
                                      all_time=EPOCH)
        outputs.append(out)
    assert filecmp.cmp(*outputs, shallow=False)
    with FileRegion(outputs[0]) as region:
        image = squashfs.SquashfsImage(region)
        assert image.superblock.mkfs_time == EPOCH
        assert {entry.inode.mtime for entry in image.walk()} == {EPOCH}


def test_duplicate_file_falls_back_and_leaves_no_debris(tmp_path, images):
    tree = make_tree(str(tmp_path / "tree"), images["base"])
    shutil.copy(images["base"], os.path.join(tree, "LiveOS", "copy-of-rootfs.img"))
    base_sqfs = make_squashfs(tree, str(tmp_path / "base.squashfs"), ["-b", "131072", "-comp", "gzip"])
    out = tmp_path / "out" / "new.squashfs"
    out.parent.mkdir()
    out.write_bytes(b"previous output")
    with FileRegion(base_sqfs) as base, pytest.raises(squashfs.IncrementalUnsupported) as caught:
        squashfs.rewrite_squashfs(base, str(out), ROOT_IMAGE, {0: bytes(131072)})
    assert "duplicate" in caught.value.reason
    assert os.listdir(out.parent) == ["new.squashfs"] and out.read_bytes() == b"previous output"


def test_missing_compressor_in_mksquashfs_falls_back(tmp_path, images, monkeypatch):
    tree = make_tree(str(tmp_path / "tree"), images["base"])
    base_sqfs = make_squashfs(tree, str(tmp_path / "base.squashfs"), ["-b", "131072", "-comp", "gzip"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mksquashfs"  # an mksquashfs built without gzip answers like this
    fake.write_text("#!/bin/sh\necho 'mksquashfs: Compressor \"gzip\" is not supported!' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with FileRegion(base_sqfs) as base, pytest.raises(squashfs.IncrementalUnsupported) as caught:
        squashfs.rewrite_squashfs(base, str(tmp_path / "new.squashfs"), ROOT_IMAGE,
                                  {3: hashlib.shake_256(b"x").digest(131072)})
    assert "not supported" in caught.value.reason
    assert sorted(os.listdir(tmp_path)) == ["base.squashfs", "bin", "tree"]


def test_fixture_iso_read_in_place_and_rewritten(node_iso, tmp_path):
    """The Node-like fixture ISO: the root image read from the squashfs inside the ISO, then rewritten."""
    with IsoReader(node_iso.iso) as reader:
        offset, size = reader.extent(liveos.SQUASHFS_PATH)
    root_path = f"/LiveOS/{node_iso.spec.root_name}"
    unpacked = liveos.extract_root_image(node_iso.iso, str(tmp_path / "unpacked"))
    with FileRegion(node_iso.iso, offset, size) as region:
        image = squashfs.SquashfsImage(region, name=f"{node_iso.iso}:{liveos.SQUASHFS_PATH}")
        assert image.superblock.compressor == node_iso.spec.compressor
        known = liveos.parse_superblock(region.read(0, 96))  # the fields _liveos knows agree
        assert {field: getattr(image.superblock, field) for field in vars(known)} == vars(known)
        root = image.open_file(root_path)
        digest = hashlib.sha256()
        for position in range(0, root.size, 3 << 20):
            digest.update(root.read(position, 3 << 20))
        with open(unpacked, "rb") as handle:
            assert digest.hexdigest() == hashlib.sha256(handle.read()).hexdigest()

        edited = str(tmp_path / "edited.img")
        shutil.copy(unpacked, edited)
        note = tmp_path / "note"
        note.write_text("written by the squashfs test\n")
        _run(["debugfs", "-w", "-R", f"write {note} /etc/squashfs-test-note", edited])
        block_size = image.superblock.block_size
        indices = changed_blocks(unpacked, edited, block_size)
        out = str(tmp_path / "squashfs.img")
        with FileRegion(edited) as new_content:
            report = squashfs.rewrite_squashfs(region, out, root_path,
                                               squashfs.BlocksFromSource(new_content, indices, block_size),
                                               base_name=image.name)
    assert 0 < report.blocks_compressed <= len(indices)
    assert report.blocks_reused > 10 * report.blocks_compressed
    assert liveos.list_squashfs(out) == liveos.list_squashfs(node_iso.iso, offset=offset)
    again = liveos.extract_root_image(node_iso.iso, str(tmp_path / "again"), squashfs=out)
    assert filecmp.cmp(again, edited, shallow=False)


# -- measurements for the benchmark (not a test) -------------------------------------------------------

def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench(squashfs_image: str, file_path: str, *, offset: int = 0, changed: int = 64, threads: int = 2,
          read: bool = True) -> dict:
    """Reader throughput (1 and ``threads`` threads) and the time of a rewrite with ``changed`` blocks changed;
    CPU seconds (this process and its children) beside wall seconds, since the machine is shared."""
    results: dict = {}
    for count in sorted({1, threads}) if read else ():
        cpu = _cpu_seconds()
        results[f"read_{count}_threads"] = squashfs.measure_reader(squashfs_image, file_path, offset=offset,
                                                                   threads=count)
        results[f"read_{count}_threads"]["cpu_seconds"] = round(_cpu_seconds() - cpu, 2)
    with FileRegion(squashfs_image, offset) as region:
        image = squashfs.SquashfsImage(region, name=squashfs_image)
        inode = image.lookup(file_path)
        block_size = image.superblock.block_size
        count = len(image.file_blocks(inode))
        step = max(1, count // max(changed, 1))
        picks = list(range(0, count, step))[:changed]
        text = b"".join(b"changed line %d of a plugin's file\n" % number for number in range(block_size // 20))
        # Half text, half random, like the root image of the benchmark's fixture.
        payload = {index: text[:block_size] if number % 2 else
                   hashlib.shake_256(index.to_bytes(8, "little")).digest(block_size)
                   for number, index in enumerate(picks)}
        out = os.path.join(os.path.dirname(os.path.abspath(squashfs_image)), "bench-rewritten.squashfs")
        started, cpu = time.monotonic(), _cpu_seconds()
        report = squashfs.rewrite_squashfs(region, out, file_path, payload, base_name=squashfs_image)
        results["rewrite"] = {"wall_seconds": round(time.monotonic() - started, 3),
                              "cpu_seconds": round(_cpu_seconds() - cpu, 2), **report.to_dict()}
        os.unlink(out)
    results["max_rss_mib"] = {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                              "largest_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024}
    return results


def _bench_main() -> None:
    parser = argparse.ArgumentParser(description="squashfs reader throughput and incremental rewrite time")
    parser.add_argument("--squashfs", help="an existing squashfs (default: build one)")
    parser.add_argument("--offset", type=int, default=0, help="byte offset of the squashfs in that file (an ISO)")
    parser.add_argument("--file", default=ROOT_IMAGE, help="the file to read and rewrite")
    parser.add_argument("--build-mib", type=int, default=1024, help="size of the root image to build")
    parser.add_argument("--comp", default="xz")
    parser.add_argument("--changed", type=int, default=64, help="blocks to change")
    parser.add_argument("--workdir", default="/tmp/squashfs-bench")
    parser.add_argument("--no-read", action="store_true", help="measure the rewrite alone (its peak memory)")
    options = parser.parse_args()
    image = options.squashfs
    if image is None:
        os.makedirs(options.workdir, exist_ok=True)
        image = os.path.join(options.workdir, f"{options.comp}-{options.build_mib}.squashfs")
        if not os.path.exists(image):
            print(f"building a {options.build_mib} MiB root image and its {options.comp} squashfs ...", flush=True)
            root = make_root_image(os.path.join(options.workdir, "root.img"), size_kib=options.build_mib * 1024,
                                   data_mib=options.build_mib * 2 // 3)
            tree = os.path.join(options.workdir, "tree")
            shutil.rmtree(tree, ignore_errors=True)
            os.makedirs(os.path.join(tree, "LiveOS"))
            os.replace(root, os.path.join(tree, "LiveOS", "rootfs.img"))
            started = time.monotonic()
            make_squashfs(tree, image, ["-comp", options.comp])
            print(f"full mksquashfs: {time.monotonic() - started:.1f} s", flush=True)
            shutil.rmtree(tree)
    for name, figures in bench(image, options.file, offset=options.offset, changed=options.changed,
                               read=not options.no_read).items():
        print(name, figures, flush=True)


if __name__ == "__main__":
    _bench_main()
