# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only ext2/ext3/ext4 reader over random-access bytes (a ``_blockio.ByteSource``).

It reads only the blocks a question needs: a lookup reads the directories on the way and their
inodes, a file read its block map and data, ``owners`` the inode tables and block maps but never
file data. Every number read from the image is checked against the image before it is used, so a
damaged or hostile image gives a ``NodePluginError`` that names the image and the structure at
fault, never a traceback, a loop or a read outside the image.

    fs = ExtFilesystem(FileRegion("ext3fs.img"), name="node.iso:LiveOS/ext3fs.img")
    fs.listdir("/var/lib/rpm"); fs.read_file("/etc/default/version"); fs.copy_tree("/var/lib/rpm", "out/rpm")
    fs.owners([1234, 5678])  # what each block holds; fs.paths(inode) names the files

Refused: the features a reader cannot honour without writing or guessing (a journal that still
needs recovery, an external journal device, compression, inline data, encryption, case folding,
dirdata, bigalloc, snapshots, and any feature bit this reader does not know). Not thread-safe.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import os
import shutil
import stat as stat_mod
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator

from ._blockio import ByteSource
from ._errors import NodePluginError, quote

ROOT_INODE = 2
RESIZE_INODE = 7
MAX_SYMLINK_HOPS = 40  # as Linux (MAXSYMLINKS)
MAX_PATH_BYTES = 4096  # PATH_MAX: longer paths and symlink targets are refused
DEFAULT_READ_LIMIT = 64 << 20
DEFAULT_COPY_LIMIT = 4 << 30

_SUPERBLOCK_OFFSET = 1024
_MAGIC = 0xEF53
_EXTENT_MAGIC = 0xF30A
_XATTR_MAGIC = 0xEA020000
_MAX_EXTENT_DEPTH = 5
_UNWRITTEN_BIAS = 32768  # an extent longer than this is unwritten (reads as zeros)
_CHUNK = 1 << 20  # largest single read from the source
_BLOCK_CACHE = 256  # metadata blocks kept (1 MiB at 4 KiB blocks)
_INODE_CACHE = 4096
_DIR_CACHE = 128

# Superblock fields read (name: byte offset in the superblock, struct format).
_SB_FIELDS = {
    "inodes_count": (0x00, "I"), "blocks_lo": (0x04, "I"), "first_data_block": (0x14, "I"),
    "log_block_size": (0x18, "I"), "blocks_per_group": (0x20, "I"), "inodes_per_group": (0x28, "I"),
    "magic": (0x38, "H"), "revision": (0x4C, "I"), "first_ino": (0x54, "I"), "inode_size": (0x58, "H"),
    "compat": (0x5C, "I"), "incompat": (0x60, "I"), "ro_compat": (0x64, "I"), "uuid": (0x68, "16s"),
    "label": (0x78, "16s"), "reserved_gdt": (0xCE, "H"), "journal_inum": (0xE0, "I"), "desc_size": (0xFE, "H"),
    "first_meta_bg": (0x104, "I"), "mkfs_time": (0x108, "I"), "blocks_hi": (0x150, "I"), "mmp_block": (0x168, "Q"),
    "usr_quota_inum": (0x240, "I"), "grp_quota_inum": (0x244, "I"), "backup_bg0": (0x24C, "I"),
    "backup_bg1": (0x250, "I"), "prj_quota_inum": (0x26C, "I"), "orphan_file_inum": (0x280, "I"),
}
_GD32 = struct.Struct("<IIIHHHHIHHHH")
_GD64_HI = struct.Struct("<IIIHHHH")
_INODE = struct.Struct("<HHIIIIIHHIII60sIIIIHHHHHH")
_EXTENT_HEADER = struct.Struct("<HHHHI")
_EXTENT_ENTRY = struct.Struct("<IHHI")
_EXTENT_INDEX = struct.Struct("<IIHH")
_DIRENT = struct.Struct("<IHBB")
_XATTR_ENTRY = struct.Struct("<BBHIII")

# Feature bits: the ones read (with dumpe2fs's names) and the ones refused (with the reason).
_COMPAT = {0x1: "dir_prealloc", 0x2: "imagic_inodes", 0x4: "has_journal", 0x8: "ext_attr", 0x10: "resize_inode",
           0x20: "dir_index", 0x40: "lazy_bg", 0x80: "exclude_inode", 0x100: "exclude_bitmap",
           0x200: "sparse_super2", 0x400: "fast_commit", 0x800: "stable_inodes", 0x1000: "orphan_file"}
_INCOMPAT = {0x2: "filetype", 0x10: "meta_bg", 0x40: "extent", 0x80: "64bit", 0x100: "mmp", 0x200: "flex_bg",
             0x400: "ea_inode", 0x2000: "metadata_csum_seed", 0x4000: "large_dir"}
_INCOMPAT_REFUSED = {
    0x1: ("compression", "an experimental ext2 compression that no current tool reads"),
    0x4: ("needs_recovery", "its journal holds changes that were never applied: the image was not unmounted "
                            "cleanly; replay the journal on a copy (e2fsck -fy) and use that"),
    0x8: ("journal_dev", "it is an external journal device, not a file system"),
    0x1000: ("dirdata", "Lustre directory data is not read"),
    0x8000: ("inline_data", "files stored inside their inodes are not read; Node root images never use it"),
    0x10000: ("encrypt", "encrypted files cannot be read"),
    0x20000: ("casefold", "case-insensitive directories would be looked up wrongly"),
}
_RO_COMPAT = {0x1: "sparse_super", 0x2: "large_file", 0x4: "btree_dir", 0x8: "huge_file", 0x10: "uninit_bg",
              0x20: "dir_nlink", 0x40: "extra_isize", 0x100: "quota", 0x400: "metadata_csum", 0x800: "replica",
              0x1000: "read-only", 0x2000: "project", 0x4000: "shared_blocks", 0x8000: "verity",
              0x10000: "orphan_present"}
_RO_COMPAT_REFUSED = {
    0x80: ("snapshot", "snapshot images are not read"),
    0x200: ("bigalloc", "cluster allocation is not read; Node root images never use it"),
}

_FLAG_INDEX = 0x1000
_FLAG_HUGE_FILE = 0x40000
_FLAG_EXTENTS = 0x80000
_FLAG_EA_INODE = 0x200000
_FLAG_INLINE_DATA = 0x10000000
_BG_INODE_UNINIT = 0x1

_KIND_BY_MODE = {stat_mod.S_IFREG: "file", stat_mod.S_IFDIR: "dir", stat_mod.S_IFLNK: "symlink",
                 stat_mod.S_IFCHR: "chardev", stat_mod.S_IFBLK: "blockdev", stat_mod.S_IFIFO: "fifo",
                 stat_mod.S_IFSOCK: "socket"}
_KIND_BY_DIRENT = {1: "file", 2: "dir", 3: "chardev", 4: "blockdev", 5: "fifo", 6: "socket", 7: "symlink"}
_XATTR_PREFIXES = {1: "user.", 2: "system.posix_acl_access", 3: "system.posix_acl_default", 4: "trusted.",
                   6: "security.", 7: "system.", 8: "system.richacl"}


class BlockKind:
    """The values of ``BlockOwner.kind``: what a file-system block holds."""

    BOOT = "boot"  # block 0 of a 1 KiB-block file system (before the superblock)
    SUPERBLOCK = "superblock"  # the primary superblock or a backup
    GROUP_DESCRIPTORS = "group_descriptors"
    RESERVED_GDT = "reserved_gdt"  # room for descriptors of future groups (owned by the resize inode)
    BLOCK_BITMAP = "block_bitmap"
    INODE_BITMAP = "inode_bitmap"
    INODE_TABLE = "inode_table"
    MMP = "mmp"  # multiple-mount protection
    FILE_DATA = "file_data"  # data of a file, symlink or other non-directory inode
    DIRECTORY = "directory"  # entries of a directory
    BLOCK_MAP = "block_map"  # an extent tree node or an indirect block of an inode
    XATTR = "xattr"  # an extended-attribute block, or the data of an extended-attribute inode
    JOURNAL = "journal"  # any block of the journal inode
    SYSTEM = "system"  # data of another reserved inode (quota, orphan file, bad blocks, resize inode)
    UNUSED = "unused"  # claimed by nothing above
    BEYOND_END = "beyond_end"  # past the last block of the file system

    STATIC = (BOOT, SUPERBLOCK, GROUP_DESCRIPTORS, RESERVED_GDT, BLOCK_BITMAP, INODE_BITMAP, INODE_TABLE, MMP)


@dataclasses.dataclass(frozen=True)
class ExtSuperblock:
    """The facts of an ext file system that its readers and reports need."""

    fs_type: str  # "ext2", "ext3" or "ext4", as blkid would name it
    block_size: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    group_count: int
    inodes_count: int
    inodes_per_group: int
    inode_size: int
    first_inode: int  # the first inode that is not reserved
    revision: int
    features: tuple[str, ...]
    label: str
    uuid: str
    journal_inode: int  # 0 without an internal journal
    mkfs_time: int


@dataclasses.dataclass(frozen=True)
class GroupDescriptor:
    """Where a block group keeps its bitmaps and inode table, and how much of the table is in use."""

    group: int
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    flags: int
    itable_unused: int


@dataclasses.dataclass(frozen=True)
class InodeStat:
    """The metadata of one inode (times are seconds since the epoch)."""

    ino: int
    mode: int  # type and permission bits, as os.stat's st_mode
    kind: str  # file, dir, symlink, chardev, blockdev, fifo, socket or unknown
    uid: int
    gid: int
    size: int
    links: int
    atime: int
    ctime: int
    mtime: int
    mtime_ns: int  # the nanoseconds part of mtime (0 on 128-byte inodes)
    flags: int


@dataclasses.dataclass(frozen=True)
class DirEntry:
    """One entry of a directory ('.' and '..' left out); names keep any bytes, surrogate-escaped."""

    name: str
    ino: int
    kind: str


@dataclasses.dataclass(frozen=True)
class BlockRun:
    """``count`` blocks of a file from block index ``logical`` on, stored from block ``physical`` on."""

    logical: int
    physical: int
    count: int
    initialized: bool = True  # False: an unwritten extent, which reads as zeros


@dataclasses.dataclass(frozen=True)
class BlockOwner:
    """What one block of the file system holds and which inodes claim it."""

    block: int
    kind: str  # a BlockKind value
    inodes: tuple[int, ...] = ()  # claimers in inode order; more than one only for shared blocks
    logical: int | None = None  # block index inside the file or directory (data blocks)
    group: int | None = None  # the block group of a static structure
    table_inodes: range | None = None  # the inode numbers an inode-table block holds

    @property
    def inode(self) -> int | None:
        """The first inode that claims the block, if any."""
        return self.inodes[0] if self.inodes else None


@dataclasses.dataclass(frozen=True)
class InodeRecord:
    """Everything that says whether an inode changed: metadata, times (seconds, nanoseconds), block map, xattrs."""

    ino: int
    in_use: bool
    mode: int
    uid: int
    gid: int
    size: int
    links: int
    flags: int
    generation: int
    atime: tuple[int, int]
    ctime: tuple[int, int]
    mtime: tuple[int, int]
    crtime: tuple[int, int]
    dtime: int
    blocks: tuple[BlockRun, ...]
    map_blocks: tuple[int, ...]
    xattrs: tuple[tuple[str, bytes], ...]


@dataclasses.dataclass(frozen=True)
class CopiedTree:
    """What ``copy_tree`` wrote: the local folder and counts, and the image paths it left out (not files or folders)."""

    path: str
    files: int
    dirs: int
    bytes: int
    skipped: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Inode:
    ino: int
    mode: int
    uid: int
    gid: int
    size: int
    links: int
    flags: int
    generation: int
    blocks_512: int
    file_acl: int
    dtime: int
    atime: tuple[int, int]
    ctime: tuple[int, int]
    mtime: tuple[int, int]
    crtime: tuple[int, int]
    i_block: bytes
    extra: bytes  # the inode's bytes after its fixed fields (in-inode extended attributes)

    @property
    def kind(self) -> str:
        return _KIND_BY_MODE.get(stat_mod.S_IFMT(self.mode), "unknown")


@dataclasses.dataclass(frozen=True)
class _BlockMap:
    runs: tuple[BlockRun, ...]
    map_blocks: tuple[int, ...]


def _time(seconds: int, extra: int | None) -> tuple[int, int]:
    """(seconds, nanoseconds) of an inode time: signed 32-bit seconds, widened by the extra field's epoch bits."""
    seconds = seconds - (1 << 32) if seconds & 0x80000000 else seconds
    if extra is None:
        return seconds, 0
    return seconds + ((extra & 3) << 32), extra >> 2


def _split(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part]


class _RunBuilder:
    """Collects (logical, physical) block pairs in logical order, merging neighbours into runs."""

    def __init__(self) -> None:
        self._runs: list[list] = []  # [logical, physical, count, initialized], mutable while they grow

    def add(self, logical: int, physical: int, count: int = 1, initialized: bool = True) -> None:
        if self._runs:
            last = self._runs[-1]
            if last[3] == initialized and last[0] + last[2] == logical and last[1] + last[2] == physical:
                last[2] += count
                return
        self._runs.append([logical, physical, count, initialized])

    def runs(self) -> tuple[BlockRun, ...]:
        return tuple(BlockRun(*run) for run in self._runs)


class ExtFile:
    """One regular file of an ExtFilesystem as a ByteSource: holes and unwritten extents read as zeros."""

    def __init__(self, fs: ExtFilesystem, ino: int, size: int, runs: tuple[BlockRun, ...]) -> None:
        self._fs = fs
        self.ino = ino
        self._size = size
        self.runs = runs
        self._starts = [run.logical for run in runs]

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"negative read {offset}+{length}")
        end = min(self._size, offset + length)
        if offset >= end:
            return b""
        block_size = self._fs.block_size
        out = bytearray(end - offset)
        first, last = offset // block_size, (end - 1) // block_size
        for index in range(max(0, bisect.bisect_right(self._starts, first) - 1), len(self.runs)):
            run = self.runs[index]
            if run.logical > last:
                break
            if not run.initialized or run.logical + run.count <= first:
                continue
            byte_lo = max(run.logical * block_size, offset)
            byte_hi = min((run.logical + run.count) * block_size, end)
            source = run.physical * block_size + (byte_lo - run.logical * block_size)
            out[byte_lo - offset:byte_hi - offset] = self._fs._read(source, byte_hi - byte_lo, f"inode {self.ino} data")
        return bytes(out)


class ExtFilesystem:
    """A read-only view of an ext2/3/4 image held by a ByteSource; ``name`` is how errors name the image."""

    def __init__(self, source: ByteSource, *, name: str) -> None:
        self.source = source
        self.name = name
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._inodes: collections.OrderedDict[int, _Inode] = collections.OrderedDict()
        self._dirs: collections.OrderedDict[int, list[tuple[bytes, int, int]]] = collections.OrderedDict()
        self._path_index: dict[int, list[str]] | None = None
        self._layout: list[tuple[int, int, str, int | None]] | None = None
        self.block_size = 1024  # until the superblock says otherwise (the superblock read needs it)
        self.superblock = self._read_superblock()
        self.groups = self._read_group_descriptors()

    # -- errors and raw reads -------------------------------------------------------------------

    def _fail(self, message: str, hint: str | None = None) -> NodePluginError:
        return NodePluginError(message, path=self.name,
                               hint=hint or "the ext file system image is damaged or was tampered with; "
                                            "use the original image")

    def _read(self, offset: int, length: int, what: str) -> bytes:
        """``length`` bytes at ``offset`` of the image, refused when they lie outside it."""
        if offset < 0 or offset + length > self.source.size:
            raise self._fail(f"{what} lies outside the image (bytes {offset}+{length}, image of "
                             f"{self.source.size} bytes)")
        parts = []
        while length > 0:
            step = min(length, _CHUNK)
            data = self.source.read(offset, step)
            if len(data) != step:
                raise self._fail(f"{what}: the image ended early at byte {offset + len(data)}",
                                 hint="the image is truncated; extract it again")
            parts.append(data)
            offset += step
            length -= step
        return b"".join(parts)

    def _check_block(self, block: int, what: str, count: int = 1) -> None:
        lowest = max(1, self.superblock.first_data_block)
        if block < lowest or count < 0 or block + count > self.superblock.blocks_count:
            raise self._fail(f"{what} points at block {block}" + (f" (+{count})" if count != 1 else "")
                             + f", outside the file system's blocks {lowest}.."
                             f"{self.superblock.blocks_count - 1}")

    def _block(self, block: int, what: str) -> bytes:
        """One metadata block (cached)."""
        data = self._blocks.get(block)
        if data is not None:
            self._blocks.move_to_end(block)
            return data
        self._check_block(block, what)
        data = self._read(block * self.block_size, self.block_size, what)
        self._blocks[block] = data
        if len(self._blocks) > _BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return data

    # -- superblock and groups ------------------------------------------------------------------

    def _read_superblock(self) -> ExtSuperblock:
        if self.source.size < _SUPERBLOCK_OFFSET + 1024:
            raise self._fail(f"too small for an ext file system ({self.source.size} bytes)",
                             hint="this is not an ext2/3/4 image")
        raw = self._read(_SUPERBLOCK_OFFSET, 1024, "the superblock")
        field = {name: struct.unpack_from("<" + fmt, raw, offset)[0] for name, (offset, fmt) in _SB_FIELDS.items()}
        magic, revision = field["magic"], field["revision"]
        compat, incompat, ro_compat = field["compat"], field["incompat"], field["ro_compat"]
        first_ino, inode_size, desc_size = field["first_ino"], field["inode_size"], field["desc_size"]
        first_data_block, log_block_size = field["first_data_block"], field["log_block_size"]
        blocks_per_group, inodes_per_group = field["blocks_per_group"], field["inodes_per_group"]
        inodes_count = field["inodes_count"]
        if magic != _MAGIC:
            raise self._fail(f"not an ext2/3/4 file system (magic 0x{magic:04x} at byte 1080, expected 0xef53)",
                             hint="this is not an ext image, or it is damaged; use the original image")
        if revision > 1:
            raise self._fail(f"ext revision {revision} is not known (only 0 and 1)")
        if revision == 0:
            compat = incompat = ro_compat = 0
            first_ino, inode_size = 11, 128
        self._refuse_features(compat, incompat, ro_compat)
        if log_block_size > 6:
            raise self._fail(f"the superblock gives a block size of 1024 << {log_block_size} (at most 64 KiB)")
        block_size = 1024 << log_block_size
        self.block_size = block_size
        is64 = bool(incompat & 0x80)
        blocks_count = field["blocks_lo"] | (field["blocks_hi"] << 32 if is64 else 0)
        if first_data_block != (1 if block_size == 1024 else 0):
            raise self._fail(f"the superblock's first data block is {first_data_block} "
                             f"(must be {1 if block_size == 1024 else 0} with {block_size}-byte blocks)")
        if blocks_count <= first_data_block:
            raise self._fail(f"the superblock counts {blocks_count} blocks")
        if blocks_count * block_size > self.source.size:
            raise self._fail(f"the file system has {blocks_count} blocks of {block_size} bytes, more than the "
                             f"image's {self.source.size} bytes", hint="the image is truncated; extract it again")
        if not 8 <= blocks_per_group <= 8 * block_size or blocks_per_group % 8:
            raise self._fail(f"the superblock gives {blocks_per_group} blocks per group")
        if not 1 <= inodes_per_group <= 8 * block_size:
            raise self._fail(f"the superblock gives {inodes_per_group} inodes per group")
        if inode_size < 128 or inode_size > block_size or inode_size & (inode_size - 1):
            raise self._fail(f"the superblock gives an inode size of {inode_size} bytes")
        group_count = -(-(blocks_count - first_data_block) // blocks_per_group)
        if inodes_count != inodes_per_group * group_count:
            raise self._fail(f"the superblock counts {inodes_count} inodes, but {group_count} groups of "
                             f"{inodes_per_group} hold {inodes_per_group * group_count}")
        if not 11 <= first_ino <= inodes_count:
            raise self._fail(f"the superblock gives {first_ino} as the first ordinary inode")
        if is64:
            if desc_size < 64 or desc_size > block_size or desc_size & (desc_size - 1):
                raise self._fail(f"the superblock gives a group descriptor size of {desc_size} bytes")
        else:
            desc_size = 32
        self._desc_size = desc_size
        self._reserved_gdt = field["reserved_gdt"] if compat & 0x10 and not incompat & 0x10 else 0
        self._first_meta_bg = field["first_meta_bg"] if incompat & 0x10 else None
        self._mmp_block = field["mmp_block"] if incompat & 0x100 else 0
        self._csum_groups = bool(ro_compat & 0x410)  # uninit_bg or metadata_csum: itable_unused is meaningful
        self._large_file_blocks = bool(ro_compat & 0x8)
        self._filetype = bool(incompat & 0x2)
        self._extents = bool(incompat & 0x40)
        self._sparse_super = bool(ro_compat & 0x1)
        self._backup_groups = (field["backup_bg0"], field["backup_bg1"]) if compat & 0x200 else None
        quota = (field["usr_quota_inum"], field["grp_quota_inum"]) if ro_compat & 0x100 else (0, 0)
        project = field["prj_quota_inum"] if ro_compat & 0x2000 else 0
        orphan = field["orphan_file_inum"] if compat & 0x1000 else 0
        journal = field["journal_inum"] if compat & 0x4 else 0
        for what, ino in (("journal", journal), ("user quota", quota[0]), ("group quota", quota[1]),
                          ("project quota", project), ("orphan file", orphan)):
            if ino > inodes_count:
                raise self._fail(f"the superblock names inode {ino} as its {what} inode, beyond its {inodes_count}")
        self._system_inodes = frozenset(ino for ino in (*quota, project, orphan) if ino)
        if self._mmp_block and not first_data_block < self._mmp_block < blocks_count:
            raise self._fail(f"the superblock's multiple-mount protection block {self._mmp_block} lies outside it")
        features = [name for table, bits in ((_COMPAT, compat), (_INCOMPAT, incompat), (_RO_COMPAT, ro_compat))
                    for bit, name in table.items() if bits & bit]
        features += [f"compat_0x{bit:x}" for bit in (1 << n for n in range(32)) if compat & bit and bit not in _COMPAT]
        if incompat & 0x40 or incompat & 0x200 or incompat & 0x80:
            fs_type = "ext4"
        else:
            fs_type = "ext3" if compat & 0x4 else "ext2"
        return ExtSuperblock(
            fs_type=fs_type, block_size=block_size, blocks_count=blocks_count, first_data_block=first_data_block,
            blocks_per_group=blocks_per_group, group_count=group_count, inodes_count=inodes_count,
            inodes_per_group=inodes_per_group, inode_size=inode_size, first_inode=first_ino, revision=revision,
            features=tuple(features), label=field["label"].split(b"\0", 1)[0].decode("utf-8", "replace"),
            uuid=field["uuid"].hex(), journal_inode=journal, mkfs_time=field["mkfs_time"])

    def _refuse_features(self, compat: int, incompat: int, ro_compat: int) -> None:
        del compat  # compatible features may be ignored by definition
        for bits, known, refused, kind in ((incompat, _INCOMPAT, _INCOMPAT_REFUSED, "incompatible"),
                                           (ro_compat, _RO_COMPAT, _RO_COMPAT_REFUSED, "read-only compatible")):
            for bit, (feature, reason) in refused.items():
                if bits & bit:
                    raise NodePluginError(f"the ext file system uses the feature {feature}, which this reader "
                                          f"refuses: {reason}", path=self.name)
            unknown = bits & ~sum(known) & ~sum(refused)
            if unknown:
                raise NodePluginError(f"the ext file system uses {kind} feature bits 0x{unknown:x}, which this "
                                      "reader does not know", path=self.name,
                                      hint="it was made by a newer mke2fs than this reader knows; read it with "
                                           "debugfs of a matching e2fsprogs")

    def _descriptor_block(self, group: int) -> int:
        """The block holding ``group``'s descriptor (classic layout, or meta_bg's per-meta-group blocks)."""
        per_block = self.block_size // self._desc_size
        meta_group = group // per_block
        if self._first_meta_bg is None or meta_group < self._first_meta_bg:
            return self.superblock.first_data_block + 1 + meta_group
        first = meta_group * per_block
        return self._group_first_block(first) + (1 if self.has_superblock(first) else 0)

    def _read_group_descriptors(self) -> list[GroupDescriptor]:
        sb = self.superblock
        per_block = self.block_size // self._desc_size
        table_blocks = -(-sb.inodes_per_group * sb.inode_size // self.block_size)
        groups = []
        for group in range(sb.group_count):
            block = self._descriptor_block(group)
            data = self._block(block, f"the descriptor of block group {group}")
            offset = (group % per_block) * self._desc_size
            (block_bitmap, inode_bitmap, inode_table, _free_blocks, _free_inodes, _dirs, flags, _exclude,
             _bb_csum, _ib_csum, itable_unused, _csum) = _GD32.unpack_from(data, offset)
            if self._desc_size >= 64:
                bb_hi, ib_hi, it_hi, _fb_hi, _fi_hi, _dirs_hi, unused_hi = _GD64_HI.unpack_from(data, offset + 32)
                block_bitmap |= bb_hi << 32
                inode_bitmap |= ib_hi << 32
                inode_table |= it_hi << 32
                itable_unused |= unused_hi << 16
            where = f"block group {group}'s"
            self._check_block(block_bitmap, f"{where} block bitmap")
            self._check_block(inode_bitmap, f"{where} inode bitmap")
            self._check_block(inode_table, f"{where} inode table", table_blocks)
            if itable_unused > sb.inodes_per_group:
                raise self._fail(f"block group {group} says {itable_unused} of its {sb.inodes_per_group} inodes "
                                 "were never used")
            groups.append(GroupDescriptor(group=group, block_bitmap=block_bitmap, inode_bitmap=inode_bitmap,
                                          inode_table=inode_table, flags=flags, itable_unused=itable_unused))
        self._table_blocks = table_blocks
        return groups

    def _group_first_block(self, group: int) -> int:
        return self.superblock.first_data_block + group * self.superblock.blocks_per_group

    def has_superblock(self, group: int) -> bool:
        """Whether ``group`` holds a superblock copy (group 0, else sparse_super's 1 and powers of 3, 5, 7)."""
        if group == 0:
            return True
        if self._backup_groups is not None:
            return group in self._backup_groups
        if group == 1 or not self._sparse_super:
            return True
        if not group & 1:
            return False
        for base in (3, 5, 7):
            power = base
            while power < group:
                power *= base
            if power == group:
                return True
        return False

    # -- inodes ---------------------------------------------------------------------------------

    def _inode_location(self, ino: int) -> tuple[int, int]:
        """(group, byte offset in the image) of inode ``ino``."""
        sb = self.superblock
        if not 1 <= ino <= sb.inodes_count:
            raise self._fail(f"inode number {ino} is outside 1..{sb.inodes_count}")
        group, index = divmod(ino - 1, sb.inodes_per_group)
        return group, self.groups[group].inode_table * self.block_size + index * sb.inode_size

    def _inode(self, ino: int) -> _Inode:
        cached = self._inodes.get(ino)
        if cached is not None:
            self._inodes.move_to_end(ino)
            return cached
        _group, offset = self._inode_location(ino)
        block, within = divmod(offset, self.block_size)
        raw = self._block(block, f"the inode table holding inode {ino}")[within:within + self.superblock.inode_size]
        inode = self._parse_inode(ino, raw)
        self._inodes[ino] = inode
        if len(self._inodes) > _INODE_CACHE:
            self._inodes.popitem(last=False)
        return inode

    def _parse_inode(self, ino: int, raw: bytes) -> _Inode:
        (mode, uid, size_lo, atime, ctime, mtime, dtime, gid, links, blocks_lo, flags, _osd1, i_block, generation,
         acl_lo, size_hi, _faddr, blocks_hi, acl_hi, uid_hi, gid_hi, _csum_lo, _reserved) = _INODE.unpack_from(raw)
        extra_size = 0
        extra_times: dict[str, int] = {}
        if len(raw) > 128:
            extra_size = struct.unpack_from("<H", raw, 128)[0]
            if extra_size & 3 or 128 + extra_size > len(raw):
                raise self._fail(f"inode {ino} gives {extra_size} extra bytes, more than its "
                                 f"{len(raw)}-byte slot holds")
            for field, offset in (("ctime", 132), ("mtime", 136), ("atime", 140), ("crtime", 144),
                                  ("crtime_extra", 148)):
                if 128 + extra_size >= offset + 4:
                    extra_times[field] = struct.unpack_from("<I", raw, offset)[0]
        blocks_512 = blocks_lo | (blocks_hi << 32 if self._large_file_blocks else 0)
        if flags & _FLAG_HUGE_FILE and self._large_file_blocks:
            blocks_512 *= self.block_size // 512
        crtime = (_time(extra_times["crtime"], extra_times.get("crtime_extra"))
                  if "crtime" in extra_times else (0, 0))
        return _Inode(
            ino=ino, mode=mode, uid=uid | uid_hi << 16, gid=gid | gid_hi << 16, size=size_lo | size_hi << 32,
            links=links, flags=flags, generation=generation, blocks_512=blocks_512,
            file_acl=acl_lo | (acl_hi << 32 if self._desc_size >= 64 else 0), dtime=dtime,
            atime=_time(atime, extra_times.get("atime")), ctime=_time(ctime, extra_times.get("ctime")),
            mtime=_time(mtime, extra_times.get("mtime")), crtime=crtime, i_block=i_block,
            extra=raw[128 + extra_size:] if len(raw) > 128 else b"")

    def _in_use(self, ino: int, inode: _Inode) -> bool:
        """Whether an inode is live: in an initialized part of its table, linked and not deleted (as icheck)."""
        group, index = divmod(ino - 1, self.superblock.inodes_per_group)
        descriptor = self.groups[group]
        if self._csum_groups and (descriptor.flags & _BG_INODE_UNINIT
                                  or index >= self.superblock.inodes_per_group - descriptor.itable_unused):
            return False
        if ino == 1:  # the bad-blocks inode has no links but may own blocks
            return inode.i_block != bytes(60)
        return inode.links > 0 and inode.dtime == 0

    # -- block maps -----------------------------------------------------------------------------

    def _block_map(self, inode: _Inode, claim: Callable[[int, int], None] | None = None) -> _BlockMap:
        """The data runs and the map's own blocks of an inode (extent tree or indirect blocks).

        ``claim(block, ino)`` sees every map block first, so a scan can refuse a block claimed twice.
        """
        if inode.flags & _FLAG_INLINE_DATA:
            raise self._fail(f"inode {inode.ino} stores its data inline, which this file system's features "
                             "do not allow")
        kind = stat_mod.S_IFMT(inode.mode)
        if kind in (stat_mod.S_IFCHR, stat_mod.S_IFBLK, stat_mod.S_IFIFO, stat_mod.S_IFSOCK):
            return _BlockMap((), ())
        if kind == stat_mod.S_IFLNK and self._fast_symlink(inode):
            return _BlockMap((), ())
        if inode.flags & _FLAG_EXTENTS:
            if not self._extents:
                raise self._fail(f"inode {inode.ino} uses extents, but the file system lacks the extent feature")
            return self._extent_map(inode, claim)
        return self._indirect_map(inode, claim)

    def _extent_map(self, inode: _Inode, claim: Callable[[int, int], None] | None) -> _BlockMap:
        runs = _RunBuilder()
        map_blocks: list[int] = []
        visited: set[int] = set()
        next_logical = 0
        # (node bytes, block it came from (None: the inode), expected depth (None: any))
        stack: list[tuple[bytes, int | None, int | None]] = [(inode.i_block, None, None)]
        while stack:
            node, origin, expected = stack.pop()
            where = (f"inode {inode.ino}'s extent tree" if origin is None
                     else f"inode {inode.ino}'s extent tree block {origin}")
            magic, entries, maximum, depth, _generation = _EXTENT_HEADER.unpack_from(node)
            if magic != _EXTENT_MAGIC:
                raise self._fail(f"{where} has no extent header (magic 0x{magic:04x})")
            if maximum > (len(node) - 12) // 12 or entries > maximum:
                raise self._fail(f"{where} holds {entries} of {maximum} entries, more than fit")
            if depth > _MAX_EXTENT_DEPTH or (expected is not None and depth != expected):
                wanted = f"expected {expected}" if expected is not None else f"at most {_MAX_EXTENT_DEPTH}"
                raise self._fail(f"{where} has depth {depth}, {wanted}")
            if depth == 0:
                for index in range(entries):
                    logical, length, start_hi, start_lo = _EXTENT_ENTRY.unpack_from(node, 12 + 12 * index)
                    initialized = length <= _UNWRITTEN_BIAS
                    count = length if initialized else length - _UNWRITTEN_BIAS
                    physical = start_hi << 32 | start_lo
                    if count == 0:
                        raise self._fail(f"{where} holds an empty extent")
                    if logical < next_logical:
                        raise self._fail(f"{where} maps file block {logical} again or out of order")
                    self._check_block(physical, f"{where}'s extent for file block {logical}", count)
                    runs.add(logical, physical, count, initialized)
                    next_logical = logical + count
                continue
            children = []
            for index in range(entries):
                _logical, leaf_lo, leaf_hi, _unused = _EXTENT_INDEX.unpack_from(node, 12 + 12 * index)
                children.append(leaf_hi << 32 | leaf_lo)
            for child in reversed(children):
                if child in visited:
                    raise self._fail(f"{where} refers to block {child} twice (a loop or shared node)")
                visited.add(child)
                self._check_block(child, f"{where}'s index")
                if claim:
                    claim(child, inode.ino)
                map_blocks.append(child)
                stack.append((self._block(child, f"inode {inode.ino}'s extent tree block {child}"), child, depth - 1))
        return _BlockMap(runs.runs(), tuple(sorted(map_blocks)))

    def _indirect_map(self, inode: _Inode, claim: Callable[[int, int], None] | None) -> _BlockMap:
        per_block = self.block_size // 4
        pointers = struct.unpack("<15I", inode.i_block)
        runs = _RunBuilder()
        map_blocks: list[int] = []
        visited: set[int] = set()
        where = f"inode {inode.ino}'s block map"
        for logical, physical in enumerate(pointers[:12]):
            if physical:
                self._check_block(physical, f"{where} (file block {logical})")
                runs.add(logical, physical)
        starts = (12, 12 + per_block, 12 + per_block + per_block ** 2)
        # (indirect block, levels of indirection left, first file block it maps), in file order.
        stack = [(pointers[12 + level], level + 1, starts[level]) for level in (2, 1, 0) if pointers[12 + level]]
        while stack:
            block, level, base = stack.pop()
            if block in visited:
                raise self._fail(f"{where} uses indirect block {block} twice (a loop)")
            visited.add(block)
            self._check_block(block, f"{where}'s indirect block")
            if claim:
                claim(block, inode.ino)
            map_blocks.append(block)
            words = struct.unpack(f"<{per_block}I", self._block(block, f"{where}'s indirect block {block}"))
            if level == 1:
                for index, physical in enumerate(words):
                    if physical:
                        self._check_block(physical, f"{where} (file block {base + index})")
                        runs.add(base + index, physical)
            else:
                span = per_block ** (level - 1)
                stack.extend((words[index], level - 1, base + index * span)
                             for index in range(per_block - 1, -1, -1) if words[index])
        return _BlockMap(runs.runs(), tuple(sorted(map_blocks)))

    def _fast_symlink(self, inode: _Inode) -> bool:
        acl_blocks = self.block_size // 512 if inode.file_acl else 0
        return (not inode.flags & (_FLAG_EXTENTS | _FLAG_INLINE_DATA) and inode.size < 60
                and inode.blocks_512 - acl_blocks == 0)

    def block_map(self, path_or_ino: str | int, *, follow: bool = False) -> tuple[BlockRun, ...]:
        """The data runs of a file or directory, in file order (holes are the gaps between runs)."""
        return self._block_map(self._inode(self._ino(path_or_ino, follow))).runs

    # -- directories ----------------------------------------------------------------------------

    def _dir_entries(self, ino: int) -> list[tuple[bytes, int, int]]:
        """(name, inode, dirent file type) of a directory, '.' and '..' left out; cached."""
        cached = self._dirs.get(ino)
        if cached is not None:
            self._dirs.move_to_end(ino)
            return cached
        inode = self._inode(ino)
        if inode.kind != "dir":
            raise self._fail(f"inode {ino} is read as a directory but is a {inode.kind}")
        block_size = self.block_size
        used_blocks = -(-inode.size // block_size)
        entries: list[tuple[bytes, int, int]] = []
        names: set[bytes] = set()
        for run in self._block_map(inode).runs:
            if run.logical >= used_blocks or not run.initialized:
                continue
            count = min(run.count, used_blocks - run.logical)
            for first in range(0, count, _CHUNK // block_size):
                step = min(count - first, _CHUNK // block_size)
                data = self._read((run.physical + first) * block_size, step * block_size,
                                  f"directory inode {ino}'s blocks")
                for index in range(step):
                    self._parse_dir_block(ino, run.logical + first + index, data[index * block_size:
                                                                                 (index + 1) * block_size],
                                          entries, names)
        self._dirs[ino] = entries
        if len(self._dirs) > _DIR_CACHE:
            self._dirs.popitem(last=False)
        return entries

    def _parse_dir_block(self, ino: int, logical: int, block: bytes, entries: list[tuple[bytes, int, int]],
                         names: set[bytes]) -> None:
        # Linear and htree directories alike: htree index nodes look like one empty entry over the block.
        block_size = len(block)
        position = 0
        while position < block_size:
            where = f"directory inode {ino}, block {logical}, byte {position}"
            if position + 8 > block_size:
                raise self._fail(f"{where}: an entry header crosses the block's end")
            child, rec_len, name_len, file_type = _DIRENT.unpack_from(block, position)
            if not self._filetype:
                name_len, file_type = name_len | file_type << 8, 0
            if block_size >= 65536:  # 64 KiB blocks store lengths above 65532 folded (e2fsprogs' get_rec_len)
                rec_len = block_size if rec_len in (0, 65535) else (rec_len & 65532) | ((rec_len & 3) << 16)
            if rec_len < 8 or rec_len & 3 or position + rec_len > block_size:
                raise self._fail(f"{where}: an entry length of {rec_len} bytes")
            if child:
                if 8 + name_len > rec_len or name_len == 0:
                    raise self._fail(f"{where}: a name of {name_len} bytes in an entry of {rec_len}")
                if child > self.superblock.inodes_count:
                    raise self._fail(f"{where}: an entry for inode {child}, beyond the last "
                                     f"({self.superblock.inodes_count})")
                name = block[position + 8:position + 8 + name_len]
                if b"/" in name or b"\0" in name:
                    raise self._fail(f"{where}: a name holding '/' or NUL ({quote(name.decode('latin-1'))})")
                if name not in (b".", b".."):
                    if name in names:
                        raise self._fail(f"{where}: the name {quote(name.decode('utf-8', 'surrogateescape'))} "
                                         "appears twice")
                    names.add(name)
                    entries.append((name, child, file_type))
            position += rec_len

    def _entry_kind(self, ino: int, file_type: int) -> str:
        kind = _KIND_BY_DIRENT.get(file_type & 7) if self._filetype else None
        return kind or self._inode(ino).kind

    def _entries(self, ino: int) -> list[DirEntry]:
        return [DirEntry(name=name.decode("utf-8", "surrogateescape"), ino=child, kind=self._entry_kind(child, ftype))
                for name, child, ftype in self._dir_entries(ino)]

    # -- paths ----------------------------------------------------------------------------------

    def _encode_path(self, path: str) -> bytes:
        if not isinstance(path, str) or not path.startswith("/"):
            raise NodePluginError(f"{quote(str(path))} is no absolute path in the image", path=self.name,
                                  hint="give a path that starts with '/'")
        raw = path.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_PATH_BYTES or b"\0" in raw:
            raise NodePluginError(f"{quote(path)} is no valid path (NUL, or longer than {MAX_PATH_BYTES} bytes)",
                                  path=self.name)
        return raw

    def _symlink_target(self, inode: _Inode) -> bytes:
        if inode.size > MAX_PATH_BYTES:
            raise self._fail(f"symlink inode {inode.ino} has a target of {inode.size} bytes "
                             f"(at most {MAX_PATH_BYTES})")
        if self._fast_symlink(inode):
            target = inode.i_block[:inode.size]
        else:
            target = ExtFile(self, inode.ino, inode.size, self._block_map(inode).runs).read(0, inode.size)
        if b"\0" in target or not target:
            raise self._fail(f"symlink inode {inode.ino} has an empty target or one holding NUL")
        return target

    def _resolve(self, path: str, follow: bool, missing_ok: bool = False) -> int | None:
        """The inode of an image path; symlinks followed inside the image only (absolute targets are image paths)."""
        parts = collections.deque(_split(self._encode_path(path)))
        stack = [ROOT_INODE]  # the directories walked through, for '..'
        hops = 0
        while parts:
            part = parts.popleft()
            if part == b".":
                continue
            if part == b"..":
                if len(stack) > 1:
                    stack.pop()
                continue
            here = stack[-1]
            if self._inode(here).kind != "dir":
                if missing_ok:
                    return None
                raise NodePluginError(f"{quote(path)}: a part of the path is not a directory", path=self.name)
            found = next((child for name, child, _ftype in self._dir_entries(here) if name == part), None)
            if found is None:
                if missing_ok:
                    return None
                raise NodePluginError(f"{quote(path)} does not exist in the image", path=self.name)
            inode = self._inode(found)
            if inode.kind == "symlink" and (parts or follow):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise NodePluginError(f"{quote(path)}: more than {MAX_SYMLINK_HOPS} symlinks on the way "
                                          "(a loop?)", path=self.name)
                target = self._symlink_target(inode)
                if target.startswith(b"/"):
                    stack = [ROOT_INODE]
                parts.extendleft(reversed(_split(target)))
                continue
            stack.append(found)
        return stack[-1]

    def _ino(self, path_or_ino: str | int, follow: bool) -> int:
        if isinstance(path_or_ino, int):
            self._inode_location(path_or_ino)
            return path_or_ino
        ino = self._resolve(path_or_ino, follow)
        if ino is None:  # _resolve raises itself unless missing_ok; this keeps the promise of an int
            raise NodePluginError(f"{quote(path_or_ino)} does not exist in the image", path=self.name)
        return ino

    def lookup(self, path: str, *, follow: bool = True) -> int:
        """The inode number of an absolute image path; a final symlink is followed unless ``follow`` is False."""
        return self._ino(path, follow)

    def exists(self, path: str, *, follow: bool = True) -> bool:
        """Whether an image path exists (a dangling final symlink counts only with ``follow`` False)."""
        return self._resolve(path, follow, missing_ok=True) is not None

    def stat(self, path_or_ino: str | int, *, follow: bool = True) -> InodeStat:
        """The metadata of a path or inode number."""
        inode = self._inode(self._ino(path_or_ino, follow))
        return InodeStat(ino=inode.ino, mode=inode.mode, kind=inode.kind, uid=inode.uid, gid=inode.gid,
                         size=inode.size, links=inode.links, atime=inode.atime[0], ctime=inode.ctime[0],
                         mtime=inode.mtime[0], mtime_ns=inode.mtime[1], flags=inode.flags)

    def readlink(self, path: str) -> str:
        """The target of a symlink, as stored."""
        inode = self._inode(self._ino(path, False))
        if inode.kind != "symlink":
            raise NodePluginError(f"{quote(path)} is a {inode.kind}, not a symlink", path=self.name)
        return self._symlink_target(inode).decode("utf-8", "surrogateescape")

    def listdir(self, path: str) -> list[DirEntry]:
        """The entries of a directory in on-disk order, without '.' and '..'."""
        ino = self._ino(path, True)
        if self._inode(ino).kind != "dir":
            raise NodePluginError(f"{quote(path)} is not a directory", path=self.name)
        return self._entries(ino)

    def open(self, path: str) -> ExtFile:
        """A regular file as a ByteSource (symlinks followed)."""
        ino = self._ino(path, True)
        inode = self._inode(ino)
        if inode.kind != "file":
            raise NodePluginError(f"{quote(path)} is a {inode.kind}, not a regular file", path=self.name)
        return ExtFile(self, ino, inode.size, self._block_map(inode).runs)

    def read_file(self, path: str, *, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """The content of a regular file (symlinks followed); refused when larger than ``limit`` bytes."""
        handle = self.open(path)
        if handle.size > limit:
            raise NodePluginError(f"{quote(path)} holds {handle.size} bytes, more than the {limit} this read "
                                  "allows", path=self.name, hint="open() it and read it in parts")
        return handle.read(0, handle.size)

    def walk(self, top: str = "/") -> Iterator[tuple[str, list[DirEntry], list[DirEntry]]]:
        """(path, directories, other entries) of every directory under ``top``, top-down like os.walk.

        Removing entries from the yielded directory list prunes the walk. A directory reached twice
        (a loop, or a hard link to a directory) is refused.
        """
        start = self._ino(top, True)
        if self._inode(start).kind != "dir":
            raise NodePluginError(f"{quote(top)} is not a directory", path=self.name)
        seen = {start}
        pending = [(top.rstrip("/") or "/", start)]
        while pending:
            path, ino = pending.pop()
            entries = self._entries(ino)
            dirs = [entry for entry in entries if entry.kind == "dir"]
            others = [entry for entry in entries if entry.kind != "dir"]
            yield path, dirs, others
            for entry in reversed(dirs):
                child_path = f"{path.rstrip('/')}/{entry.name}"
                if entry.ino in seen:
                    raise self._fail(f"the directory {quote(child_path)} (inode {entry.ino}) was already reached "
                                     "on another path: the directory tree has a loop or a hard-linked directory")
                seen.add(entry.ino)
                pending.append((child_path, entry.ino))

    def paths(self, ino: int) -> list[str]:
        """Every path of an inode (hard links give several), [] when no directory names it.

        The first call reads every directory, and refuses an entry that names an inode the inode
        tables mark as free: such an inode's blocks would otherwise pass for unused.
        """
        self._inode_location(ino)
        return sorted(self._paths_by_inode(None).get(ino, []))

    def _paths_by_inode(self, live: set[int] | None) -> dict[int, list[str]]:
        """Inode -> paths of the whole tree (cached); ``live`` is the set of live inodes if a scan made it."""
        if self._path_index is not None:
            return self._path_index
        index: dict[int, list[str]] = {ROOT_INODE: ["/"]}
        for path, dirs, others in self.walk("/"):
            for entry in (*dirs, *others):
                entry_path = f"{path.rstrip('/')}/{entry.name}"
                if not (entry.ino in live if live is not None else self._in_use(entry.ino, self._inode(entry.ino))):
                    raise self._fail(f"the directory entry {quote(entry_path)} names inode {entry.ino}, which the "
                                     "inode table marks as free")
                index.setdefault(entry.ino, []).append(entry_path)
        self._path_index = index
        return index

    # -- extended attributes --------------------------------------------------------------------

    def xattrs(self, path_or_ino: str | int, *, follow: bool = False) -> dict[str, bytes]:
        """The extended attributes of a path or inode (in the inode and in its attribute block)."""
        return dict(self._xattrs(self._inode(self._ino(path_or_ino, follow))))

    def _xattrs(self, inode: _Inode) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        if len(inode.extra) >= 4 and struct.unpack_from("<I", inode.extra)[0] == _XATTR_MAGIC:
            area = inode.extra[4:]
            self._parse_xattrs(area, 0, area, found, f"inode {inode.ino}'s in-inode attributes")
        if inode.file_acl:
            where = f"inode {inode.ino}'s attribute block {inode.file_acl}"
            block = self._block(inode.file_acl, where)
            magic, _refcount, blocks = struct.unpack_from("<III", block)
            if magic != _XATTR_MAGIC or blocks != 1:
                raise self._fail(f"{where} has no attribute header")
            self._parse_xattrs(block, 32, block, found, where)
        return sorted(found)

    def _parse_xattrs(self, area: bytes, start: int, values: bytes, found: list[tuple[str, bytes]],
                      where: str) -> None:
        position = start
        while position + 4 <= len(area) and struct.unpack_from("<I", area, position)[0]:
            if position + _XATTR_ENTRY.size > len(area):
                raise self._fail(f"{where}: an entry crosses the end")
            entry = _XATTR_ENTRY.unpack_from(area, position)
            name_len, name_index, value_offset, value_inode, value_size, _hash = entry
            name = area[position + 16:position + 16 + name_len]
            if len(name) != name_len:
                raise self._fail(f"{where}: a name crosses the end")
            prefix = _XATTR_PREFIXES.get(name_index, f"index{name_index}.")
            if value_inode:
                value_holder = self._inode(value_inode)
                if not value_holder.flags & _FLAG_EA_INODE or value_size > 65536:
                    raise self._fail(f"{where}: a value in inode {value_inode}, which holds no attribute value")
                value = ExtFile(self, value_inode, value_holder.size,
                                self._block_map(value_holder).runs).read(0, value_size)
            else:
                if value_offset + value_size > len(values):
                    raise self._fail(f"{where}: a value at {value_offset}+{value_size} crosses the end")
                value = values[value_offset:value_offset + value_size]
            found.append((prefix + name.decode("utf-8", "surrogateescape"), value))
            position += (16 + name_len + 3) & ~3

    # -- copying out ----------------------------------------------------------------------------

    def copy_tree(self, path: str, local_dir: str, *, max_bytes: int = DEFAULT_COPY_LIMIT) -> CopiedTree:
        """Copy the directory ``path`` of the image to the new local folder ``local_dir``: regular files and
        folders only (with permission bits and mtimes), never through a link, never outside ``local_dir``.

        The copy is made next to ``local_dir`` and renamed into place; a failure leaves nothing behind. It is
        refused when the files hold more than ``max_bytes`` in all (sparse files stay sparse).
        """
        start = self._ino(path, True)
        if self._inode(start).kind != "dir":
            raise NodePluginError(f"{quote(path)} is not a directory", path=self.name)
        target = os.path.abspath(local_dir)
        parent = os.path.dirname(target)
        if os.path.lexists(target):
            raise NodePluginError("the destination of the copy already exists", path=target,
                                  hint="give a folder that does not exist yet")
        if not os.path.isdir(parent):
            raise NodePluginError("the destination's parent folder does not exist", path=target)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
        try:
            files, dirs, total, skipped = self._copy_into(path, start, staging, max_bytes)
            os.rename(staging, target)
        except BaseException:
            _remove_tree(staging)
            raise
        return CopiedTree(path=target, files=files, dirs=dirs, bytes=total, skipped=tuple(skipped))

    def _copy_into(self, path: str, start: int, staging: str, max_bytes: int) -> tuple[int, int, int, list[str]]:
        files = dirs = total = 0
        skipped: list[str] = []
        dir_modes: list[tuple[tuple[str, ...], _Inode]] = [((), self._inode(start))]
        base = path.rstrip("/")  # walk() names every folder below path as path/...
        for image_dir, subdirs, others in self.walk(path):
            rel = tuple(image_dir[len(base) + 1:].split("/")) if image_dir != (base or "/") else ()
            dir_fd = _open_local_dir(staging, rel)
            try:
                for entry in subdirs:
                    os.mkdir(entry.name, 0o700, dir_fd=dir_fd)
                    dir_modes.append(((*rel, entry.name), self._inode(entry.ino)))
                    dirs += 1
                for entry in others:
                    inode = self._inode(entry.ino)
                    if inode.kind != "file":
                        skipped.append(f"{image_dir.rstrip('/')}/{entry.name}")
                        continue
                    total += inode.size
                    if total > max_bytes:
                        raise NodePluginError(f"{quote(path)} holds more than {max_bytes} bytes of files",
                                              path=self.name, hint="copy a smaller folder or raise the limit")
                    self._copy_file(inode, entry.name, dir_fd)
                    files += 1
            finally:
                os.close(dir_fd)
        # Folder modes last, deepest first, so that a read-only folder does not stop its own copy.
        for rel, inode in reversed(dir_modes):
            dir_fd = _open_local_dir(staging, rel)
            try:
                os.chmod(dir_fd, stat_mod.S_IMODE(inode.mode) & 0o777)
                os.utime(dir_fd, ns=(_ns(inode.atime), _ns(inode.mtime)))
            finally:
                os.close(dir_fd)
        return files, dirs, total, skipped

    def _copy_file(self, inode: _Inode, name: str, dir_fd: int) -> None:
        handle = ExtFile(self, inode.ino, inode.size, self._block_map(inode).runs)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            for run in handle.runs:  # holes and unwritten extents stay holes
                if not run.initialized:
                    continue
                start = run.logical * self.block_size
                end = min(inode.size, (run.logical + run.count) * self.block_size)
                for offset in range(start, end, _CHUNK):
                    os.pwrite(fd, handle.read(offset, min(_CHUNK, end - offset)), offset)
            os.ftruncate(fd, inode.size)
            os.chmod(fd, stat_mod.S_IMODE(inode.mode) & 0o777)
            os.utime(fd, ns=(_ns(inode.atime), _ns(inode.mtime)))
        finally:
            os.close(fd)

    # -- block ownership ------------------------------------------------------------------------

    def _static_layout(self) -> list[tuple[int, int, str, int | None]]:
        """(first block, count, kind, group) of every structure at a fixed place, sorted by block."""
        if self._layout is not None:
            return self._layout
        sb = self.superblock
        per_block = self.block_size // self._desc_size
        desc_blocks = -(-sb.group_count // per_block)
        layout: list[tuple[int, int, str, int | None]] = []
        if sb.first_data_block:
            layout.append((0, 1, BlockKind.BOOT, None))
        for group, descriptor in enumerate(self.groups):
            first = self._group_first_block(group)
            has_super = self.has_superblock(group)
            meta_group = group // per_block
            if has_super:
                layout.append((first, 1, BlockKind.SUPERBLOCK, group))
            # As e2fsprogs' ext2fs_super_and_bgd_loc2: the classic table (and its reserve) follows each
            # superblock; with meta_bg each meta group keeps its one block in its first, second and last group.
            if self._first_meta_bg is None:
                if has_super:
                    layout.append((first + 1, desc_blocks, BlockKind.GROUP_DESCRIPTORS, group))
                    if self._reserved_gdt:
                        layout.append((first + 1 + desc_blocks, self._reserved_gdt, BlockKind.RESERVED_GDT, group))
            elif meta_group < self._first_meta_bg:
                if has_super:
                    layout.append((first + 1, self._first_meta_bg, BlockKind.GROUP_DESCRIPTORS, group))
            elif group % per_block in (0, 1, per_block - 1):
                layout.append((first + (1 if has_super else 0), 1, BlockKind.GROUP_DESCRIPTORS, group))
            layout.append((descriptor.block_bitmap, 1, BlockKind.BLOCK_BITMAP, group))
            layout.append((descriptor.inode_bitmap, 1, BlockKind.INODE_BITMAP, group))
            layout.append((descriptor.inode_table, self._table_blocks, BlockKind.INODE_TABLE, group))
        if self._mmp_block:
            layout.append((self._mmp_block, 1, BlockKind.MMP, None))
        layout.sort()
        self._layout = layout
        return layout

    def _static_owner(self, block: int) -> BlockOwner | None:
        layout = self._static_layout()
        index = bisect.bisect_right(layout, (block, float("inf"))) - 1
        # Structures do not overlap on a sound image; look back over a few in case a damaged one does.
        for first, count, kind, group in reversed(layout[max(0, index - 8):index + 1]):
            if first <= block < first + count:
                table_inodes = None
                if kind == BlockKind.INODE_TABLE and group is not None:  # every inode table has its group
                    per_block = self.block_size // self.superblock.inode_size
                    start = group * self.superblock.inodes_per_group + (block - first) * per_block + 1
                    end = min(start + per_block, (group + 1) * self.superblock.inodes_per_group + 1)
                    table_inodes = range(start, end)
                inodes = (RESIZE_INODE,) if kind == BlockKind.RESERVED_GDT else ()
                return BlockOwner(block=block, kind=kind, inodes=inodes, group=group, table_inodes=table_inodes)
        return None

    def _live_inodes(self) -> Iterator[_Inode]:
        """Every live inode, read group by group in large reads of the used part of each inode table."""
        sb = self.superblock
        inode_size = sb.inode_size
        for descriptor in self.groups:
            if self._csum_groups and descriptor.flags & _BG_INODE_UNINIT:
                continue
            used = sb.inodes_per_group - (descriptor.itable_unused if self._csum_groups else 0)
            first_ino = descriptor.group * sb.inodes_per_group + 1
            per_read = max(1, _CHUNK // inode_size)
            for chunk_start in range(0, used, per_read):
                count = min(per_read, used - chunk_start)
                data = self._read(descriptor.inode_table * self.block_size + chunk_start * inode_size,
                                  count * inode_size, f"block group {descriptor.group}'s inode table")
                for index in range(count):
                    ino = first_ino + chunk_start + index
                    raw = data[index * inode_size:(index + 1) * inode_size]
                    links, = struct.unpack_from("<H", raw, 26)
                    if not links and ino != 1:
                        continue
                    inode = self._parse_inode(ino, raw)
                    if self._in_use(ino, inode):
                        yield inode

    def _data_kind(self, inode: _Inode) -> str:
        if inode.ino == self.superblock.journal_inode:
            return BlockKind.JOURNAL
        if inode.flags & _FLAG_EA_INODE:
            return BlockKind.XATTR
        if inode.ino < self.superblock.first_inode and inode.ino != ROOT_INODE or inode.ino in self._system_inodes:
            return BlockKind.SYSTEM
        return BlockKind.DIRECTORY if inode.kind == "dir" else BlockKind.FILE_DATA

    def owners(self, blocks: Iterable[int]) -> dict[int, BlockOwner]:
        """What each given block holds: a structure at a fixed place, or which inode's data, map or attributes.

        Unless every block asked about is a fixed structure, reads the inode tables, the block maps of
        live inodes and every directory (never file data). Refused as damage: a map block that two
        inodes claim, and a directory entry that names an inode the tables mark as free.
        """
        wanted = sorted(set(blocks))
        if wanted and (not isinstance(wanted[0], int) or wanted[0] < 0):
            raise ValueError(f"block numbers must be non-negative integers, got {wanted[0]!r}")
        result: dict[int, BlockOwner] = {}
        for block in wanted:
            if block >= self.superblock.blocks_count:
                result[block] = BlockOwner(block=block, kind=BlockKind.BEYOND_END)
            else:
                owner = self._static_owner(block)
                if owner is not None:
                    result[block] = owner
        if len(result) == len(wanted):
            return result
        wanted_set = set(wanted)
        claims: dict[int, list[tuple[int, str, int | None]]] = {}
        map_owner: dict[int, int] = {}

        def claim_map(block: int, ino: int) -> None:
            if block in map_owner:
                raise self._fail(f"block {block} is part of the block maps of both inode {map_owner[block]} and "
                                 f"inode {ino}")
            map_owner[block] = ino

        live: set[int] = set()
        for inode in self._live_inodes():
            live.add(inode.ino)
            data_kind = self._data_kind(inode)
            block_map = self._block_map(inode, claim_map)
            for block in block_map.map_blocks:
                if block in wanted_set:
                    kind = BlockKind.JOURNAL if data_kind == BlockKind.JOURNAL else BlockKind.BLOCK_MAP
                    claims.setdefault(block, []).append((inode.ino, kind, None))
            for run in block_map.runs:
                index = bisect.bisect_left(wanted, run.physical)
                while index < len(wanted) and wanted[index] < run.physical + run.count:
                    block = wanted[index]
                    claims.setdefault(block, []).append((inode.ino, data_kind, run.logical + block - run.physical))
                    index += 1
            if inode.file_acl:
                self._check_block(inode.file_acl, f"inode {inode.ino}'s attribute block")
                if inode.file_acl in wanted_set:
                    claims.setdefault(inode.file_acl, []).append((inode.ino, BlockKind.XATTR, None))
        self._paths_by_inode(live)  # every inode a path reaches was scanned: none hides its blocks
        for block in wanted:
            found = claims.get(block, [])
            inodes = tuple(sorted({ino for ino, _kind, _logical in found}))
            static = result.get(block)
            if static is not None:
                if found:
                    result[block] = dataclasses.replace(static, inodes=tuple(sorted({*static.inodes, *inodes})))
            elif found:
                ino, kind, logical = found[0]
                result[block] = BlockOwner(block=block, kind=kind, inodes=inodes, logical=logical)
            else:
                result[block] = BlockOwner(block=block, kind=BlockKind.UNUSED)
        return result

    # -- comparing inodes -----------------------------------------------------------------------

    def inode_record(self, ino: int) -> InodeRecord:
        """What ``changed_inodes`` compares of one inode; a free inode gives only in_use=False and zeros."""
        _group, offset = self._inode_location(ino)
        inode = self._inode(ino)
        if not self._in_use(ino, inode):
            return InodeRecord(ino=ino, in_use=False, mode=0, uid=0, gid=0, size=0, links=0, flags=0, generation=0,
                               atime=(0, 0), ctime=(0, 0), mtime=(0, 0), crtime=(0, 0), dtime=0, blocks=(),
                               map_blocks=(), xattrs=())
        block_map = self._block_map(inode)
        return InodeRecord(ino=ino, in_use=True, mode=inode.mode, uid=inode.uid, gid=inode.gid, size=inode.size,
                           links=inode.links, flags=inode.flags, generation=inode.generation, atime=inode.atime,
                           ctime=inode.ctime, mtime=inode.mtime, crtime=inode.crtime, dtime=inode.dtime,
                           blocks=block_map.runs, map_blocks=block_map.map_blocks, xattrs=tuple(self._xattrs(inode)))


def changed_inodes(old: ExtFilesystem, new: ExtFilesystem, inodes: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """For each given inode that differs between two images, the names of the InodeRecord fields that differ.

    Used to narrow a changed inode-table block to the inodes that really changed: an inode free in
    both images is unchanged whatever its slot holds.
    """
    changed = {}
    for ino in sorted(set(inodes)):
        before, after = old.inode_record(ino), new.inode_record(ino)
        fields = tuple(field.name for field in dataclasses.fields(InodeRecord)
                       if getattr(before, field.name) != getattr(after, field.name))
        if fields:
            changed[ino] = fields
    return changed


def _ns(time_pair: tuple[int, int]) -> int:
    return time_pair[0] * 1_000_000_000 + time_pair[1]


def _open_local_dir(root: str, parts: tuple[str, ...]) -> int:
    """A descriptor of root/parts..., opened one component at a time without following any link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_tree(path: str) -> None:
    """Remove a staging folder whose modes the copy may have made read-only."""
    for top, dirs, _files in os.walk(path):
        for name in dirs:
            try:
                os.chmod(os.path.join(top, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
