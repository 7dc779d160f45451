# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Squashfs 4.0, read lazily from a ByteSource, and rewritten with one regular file changed.

``SquashfsImage`` parses the superblock, the compressor options and every table of an image that
lies anywhere (``FileRegion`` of an ISO), and serves any file as a ``ByteSource`` whose blocks are
decompressed on demand into a bounded LRU cache. ``rewrite_squashfs`` makes a new image in which
one regular file (the LiveOS root image) has some blocks changed: the base's compressed blocks are
copied verbatim, only the changed blocks are compressed (by ``mksquashfs`` with the base's
compressor, block size and options, on all cores), and the inode, directory, fragment, export and
id tables are written anew; the xattr table is copied and relocated. What the writer does not
handle raises ``IncrementalUnsupported`` so that the caller can fall back to a full mksquashfs.

Everything read from an image is bounded by the image's size before it is used: offsets, sizes and
counts, metadata chains (which only move forward) and the directory walk (each directory once).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import lzma
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from ._blockio import ByteSource, FileRegion
from ._errors import NodePluginError, quote
from ._reproducible import source_date_epoch
from ._run import StageTimer, run

try:
    import lz4.block as lz4_block
    HAS_LZ4 = True
except ImportError:
    lz4_block = None
    HAS_LZ4 = False

try:
    import zstandard
    HAS_ZSTANDARD = True
except ImportError:
    # zstandard ships types, so mypy takes the name for the module; None means not installed (HAS_ZSTANDARD).
    zstandard = None  # type: ignore[assignment]
    HAS_ZSTANDARD = False

try:
    import lzo
    HAS_LZO = True
except ImportError:
    lzo = None
    HAS_LZO = False

SUPERBLOCK_SIZE = 96
SQUASHFS_MAGIC = b"hsqs"
COMPRESSORS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
METADATA_SIZE = 8192
INVALID_TABLE = 0xFFFFFFFFFFFFFFFF
INVALID_FRAGMENT = 0xFFFFFFFF
INVALID_XATTR = 0xFFFFFFFF
UNCOMPRESSED_BLOCK = 1 << 24
UNCOMPRESSED_METADATA = 0x8000
# Superblock flags (squashfs_fs.h).
FLAG_NOI, FLAG_NOD, FLAG_NOF, FLAG_NO_FRAG, FLAG_ALWAYS_FRAG = 0x1, 0x2, 0x8, 0x10, 0x20
FLAG_EXPORT, FLAG_NOX, FLAG_NO_XATTR, FLAG_COMP_OPT, FLAG_NOID = 0x80, 0x100, 0x200, 0x400, 0x800

# Inode types; an extended type is the basic one + 7.
DIR, FILE, SYMLINK, BLKDEV, CHRDEV, FIFO, SOCKET = 1, 2, 3, 4, 5, 6, 7
LDIR, LFILE, LSYMLINK, LBLKDEV, LCHRDEV, LFIFO, LSOCKET = 8, 9, 10, 11, 12, 13, 14
KINDS = {DIR: "dir", FILE: "file", SYMLINK: "symlink", BLKDEV: "blockdev", CHRDEV: "chardev", FIFO: "fifo",
         SOCKET: "socket"}

_SUPERBLOCK = struct.Struct("<4sIIIIHHHHHHQQQQQQQQ")
_INODE_BASE = struct.Struct("<HHHHII")       # type, mode, uid index, gid index, mtime, inode number
_DIR_INODE = struct.Struct("<IIHHI")         # start block, nlink, file size, offset, parent
_LDIR_INODE = struct.Struct("<IIIIHHI")      # nlink, file size, start block, parent, index count, offset, xattr
_FILE_INODE = struct.Struct("<IIII")         # blocks start, fragment, fragment offset, file size
_LFILE_INODE = struct.Struct("<QQQIIII")     # blocks start, file size, sparse, nlink, fragment, offset, xattr
_SYMLINK_INODE = struct.Struct("<II")        # nlink, target size
_DEV_INODE = struct.Struct("<II")            # nlink, rdev
_LDEV_INODE = struct.Struct("<III")          # nlink, rdev, xattr
_IPC_INODE = struct.Struct("<I")             # nlink
_LIPC_INODE = struct.Struct("<II")           # nlink, xattr
_DIR_INDEX = struct.Struct("<III")           # listing offset, directory block, name size - 1
_DIR_HEADER = struct.Struct("<III")          # entry count - 1, inode block, base inode number
_DIR_ENTRY = struct.Struct("<HhHH")          # inode offset, inode number delta, basic type, name size - 1
_FRAGMENT_ENTRY = struct.Struct("<QII")      # start, stored size word, unused
_XATTR_TABLE = struct.Struct("<QII")         # key/value table start, xattr ids, unused
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# Bounds that keep a hostile image from costing unbounded memory or time.
MAX_FILE_BLOCKS = 1 << 22          # 512 GiB at 128 KiB blocks; 16 GiB at the smallest (4 KiB)
MAX_DIRECTORY_BYTES = 64 << 20
MAX_WALK_ENTRIES = 1 << 24
MAX_DEPTH = 1024
MAX_TABLE_ENTRIES = 1 << 24        # inodes, fragments or xattr ids: far beyond any root image's squashfs
MAX_SYMLINK = 65535
DEFAULT_CACHE_BYTES = 64 << 20
_COPY_CHUNK = 4 << 20
_GZIP_STRATEGIES = ("default", "filtered", "huffman_only", "run_length_encoded", "fixed")
_XZ_BCJ = ("x86", "powerpc", "ia64", "arm", "armthumb", "sparc")
_LZO_ALGORITHMS = ("lzo1x_1", "lzo1x_1_11", "lzo1x_1_12", "lzo1x_1_15", "lzo1x_999")
_COMPRESSOR_LIBRARIES = {"lz4": ("lz4", HAS_LZ4), "zstd": ("zstandard", HAS_ZSTANDARD),
                         "lzo": ("python3-lzo (Debian) or python-lzo", HAS_LZO)}
_CODEC_ERRORS: tuple[type[BaseException], ...] = (zlib.error, lzma.LZMAError, ValueError, RuntimeError, MemoryError)
if HAS_LZ4:
    _CODEC_ERRORS += (lz4_block.LZ4BlockError,)
if HAS_ZSTANDARD:
    _CODEC_ERRORS += (zstandard.ZstdError,)
if HAS_LZO:
    _CODEC_ERRORS += (lzo.error,)
_DAMAGED_HINT = "the squashfs is damaged or was not made by squashfs-tools 4; use the original ISO"


def _name(raw: bytes) -> str:
    """A name from an image, fit for a message."""
    return quote(os.fsdecode(raw), 80)


@dataclasses.dataclass(frozen=True)
class SquashfsSuperblock:
    """A squashfs 4.0 superblock: what a rebuild keeps (compressor, block size) and where the tables are."""

    inode_count: int
    mkfs_time: int
    block_size: int
    fragment_count: int
    compression_id: int
    block_log: int
    flags: int
    id_count: int
    version: str
    bytes_used: int
    root_inode: int = 0
    id_table_start: int = 0
    xattr_id_table_start: int = INVALID_TABLE
    inode_table_start: int = 0
    directory_table_start: int = 0
    fragment_table_start: int = INVALID_TABLE
    export_table_start: int = INVALID_TABLE

    @property
    def compressor(self) -> str:
        return COMPRESSORS.get(self.compression_id, f"unknown({self.compression_id})")

    @property
    def has_compressor_options(self) -> bool:
        return bool(self.flags & FLAG_COMP_OPT)

    @property
    def has_export_table(self) -> bool:
        return self.export_table_start != INVALID_TABLE

    @property
    def has_xattrs(self) -> bool:
        return self.xattr_id_table_start != INVALID_TABLE

    def pack(self) -> bytes:
        major, minor = (int(part) for part in self.version.split("."))
        return _SUPERBLOCK.pack(SQUASHFS_MAGIC, self.inode_count, self.mkfs_time, self.block_size,
                                self.fragment_count, self.compression_id, self.block_log, self.flags, self.id_count,
                                major, minor, self.root_inode, self.bytes_used, self.id_table_start,
                                self.xattr_id_table_start, self.inode_table_start, self.directory_table_start,
                                self.fragment_table_start, self.export_table_start)


def parse_superblock(data: bytes, *, source: str = "squashfs.img") -> SquashfsSuperblock:
    """Parse the first 96 bytes of a squashfs image; raise naming ``source`` when it is not one."""
    if len(data) < SUPERBLOCK_SIZE or data[:4] != SQUASHFS_MAGIC:
        raise NodePluginError("not a squashfs image (no 'hsqs' magic at its start)", path=source,
                              hint="the ISO's LiveOS/squashfs.img is damaged or of another kind; use the original ISO")
    (_magic, inodes, mkfs_time, block_size, fragments, compression, block_log, flags, ids, major, minor,
     root_inode, bytes_used, id_table, xattr_table, inode_table, directory_table, fragment_table,
     export_table) = _SUPERBLOCK.unpack_from(data)
    if major != 4:
        raise NodePluginError(f"squashfs version {major}.{minor} is not supported (only 4.x)", path=source,
                              hint="rebuild the image with squashfs-tools 4")
    if block_size != 1 << block_log:
        raise NodePluginError(f"inconsistent squashfs superblock (block size {block_size}, log {block_log})",
                              path=source, hint="the image is damaged; use the original ISO")
    return SquashfsSuperblock(inode_count=inodes, mkfs_time=mkfs_time, block_size=block_size,
                              fragment_count=fragments, compression_id=compression, block_log=block_log,
                              flags=flags, id_count=ids, version=f"{major}.{minor}", bytes_used=bytes_used,
                              root_inode=root_inode, id_table_start=id_table, xattr_id_table_start=xattr_table,
                              inode_table_start=inode_table, directory_table_start=directory_table,
                              fragment_table_start=fragment_table, export_table_start=export_table)


@dataclasses.dataclass(frozen=True)
class CompressorOptions:
    """The compressor and its options as mksquashfs stored them (defaults when no options block)."""

    compressor: str
    block_size: int
    raw: bytes = b""
    level: int | None = None
    window_size: int | None = None
    strategies: tuple[str, ...] = ()
    dict_size: int | None = None
    bcj: tuple[str, ...] = ()
    algorithm: str | None = None
    high_compression: bool = False
    lz4_version: int | None = None

    def mksquashfs_args(self) -> list[str]:
        """The ``-comp``, ``-b`` and ``-X...`` arguments with which mksquashfs stores the same options."""
        args = ["-comp", self.compressor, "-b", str(self.block_size)]
        if not self.raw:
            return args
        if self.compressor == "gzip":
            args += ["-Xcompression-level", str(self.level), "-Xwindow-size", str(self.window_size)]
            if self.strategies:
                args += ["-Xstrategy", ",".join(self.strategies)]
        elif self.compressor == "xz":
            args += ["-Xdict-size", str(self.dict_size)]
            if self.bcj:
                args += ["-Xbcj", ",".join(self.bcj)]
        elif self.compressor == "lz4":
            if self.high_compression:
                args.append("-Xhc")
        elif self.compressor == "zstd":
            args += ["-Xcompression-level", str(self.level)]
        elif self.compressor == "lzo":
            args += ["-Xalgorithm", str(self.algorithm)]
            if self.algorithm == "lzo1x_999":
                args += ["-Xcompression-level", str(self.level)]
        return args


def parse_compressor_options(compressor: str, block_size: int, raw: bytes, *,
                             source: str = "squashfs.img") -> CompressorOptions:
    """The options block of ``compressor`` (empty: the compressor's defaults), checked like mksquashfs checks it."""
    def bad(detail: str) -> NodePluginError:
        return NodePluginError(f"damaged squashfs: compressor options: {detail}", path=source, hint=_DAMAGED_HINT)

    if not raw:
        return CompressorOptions(compressor=compressor, block_size=block_size,
                                 level={"gzip": 9, "zstd": 15, "lzo": 8}.get(compressor),
                                 window_size=15 if compressor == "gzip" else None,
                                 dict_size=block_size if compressor == "xz" else None,
                                 algorithm="lzo1x_999" if compressor == "lzo" else None)
    if compressor == "gzip" and len(raw) == 8:
        level, window, mask = struct.unpack("<IHH", raw)
        if not 1 <= level <= 9 or not 8 <= window <= 15 or mask >> len(_GZIP_STRATEGIES):
            raise bad(f"gzip level {level}, window {window}, strategies {mask:#x}")
        strategies = tuple(name for bit, name in enumerate(_GZIP_STRATEGIES) if mask >> bit & 1)
        return CompressorOptions(compressor, block_size, raw, level=level, window_size=window, strategies=strategies)
    if compressor == "xz" and len(raw) == 8:
        dict_size, mask = struct.unpack("<II", raw)
        high = dict_size.bit_length() - 1
        valid = dict_size >= 8192 and (dict_size == 1 << high or dict_size == 3 << (high - 1))
        if not valid or dict_size > block_size or mask >> len(_XZ_BCJ):
            raise bad(f"xz dictionary {dict_size}, filters {mask:#x}")
        return CompressorOptions(compressor, block_size, raw, dict_size=dict_size,
                                 bcj=tuple(name for bit, name in enumerate(_XZ_BCJ) if mask >> bit & 1))
    if compressor == "lz4" and len(raw) >= 8:
        version, flags = struct.unpack_from("<II", raw)
        if flags & ~3:
            raise bad(f"lz4 flags {flags:#x}")
        return CompressorOptions(compressor, block_size, raw, lz4_version=version, high_compression=bool(flags & 1))
    if compressor == "zstd" and len(raw) == 4:
        (level,) = struct.unpack("<I", raw)
        if not 1 <= level <= 22:
            raise bad(f"zstd level {level}")
        return CompressorOptions(compressor, block_size, raw, level=level)
    if compressor == "lzo" and len(raw) == 8:
        algorithm, level = struct.unpack("<II", raw)
        if algorithm >= len(_LZO_ALGORITHMS) or level > 9:
            raise bad(f"lzo algorithm {algorithm}, level {level}")
        return CompressorOptions(compressor, block_size, raw, algorithm=_LZO_ALGORITHMS[algorithm],
                                 level=level if algorithm == 4 else None)
    raise bad(f"{len(raw)} bytes of options for {compressor}")


class _Codec:
    """Decompression of one compressor, bounded by the expected size; compression of metadata blocks."""

    def __init__(self, options: CompressorOptions, source: str) -> None:
        self.options = options
        self.name = options.compressor
        self.source = source
        library = _COMPRESSOR_LIBRARIES.get(self.name)
        if library is not None and not library[1]:
            raise NodePluginError(f"the squashfs is compressed with {self.name}, and the Python package for it "
                                  f"({library[0]}) is not installed", path=source,
                                  hint="make setup installs it (requirements.txt and bindep.txt)")
        self._local = threading.local()

    def _fail(self, what: str, detail: object) -> NodePluginError:
        return NodePluginError(f"damaged squashfs: {what} does not decompress with {self.name} ({detail})",
                               path=self.source, hint=_DAMAGED_HINT)

    def decompress(self, data: bytes, limit: int, what: str) -> bytes:
        """The decompressed bytes (at most ``limit``); a damaged or oversized stream raises naming ``what``."""
        try:
            if self.name == "gzip":
                stream = zlib.decompressobj()
                out = stream.decompress(data, limit)
                if stream.unconsumed_tail or not stream.eof:
                    raise self._fail(what, "longer than expected" if stream.unconsumed_tail else "truncated")
                return out
            if self.name in ("xz", "lzma"):
                xz_stream = lzma.LZMADecompressor(lzma.FORMAT_XZ if self.name == "xz" else lzma.FORMAT_ALONE,
                                                  memlimit=256 << 20)
                out = xz_stream.decompress(data, limit)
                if not xz_stream.eof:
                    raise self._fail(what, "longer than expected" if len(out) >= limit else "truncated")
                return out
            if self.name == "lz4":
                return lz4_block.decompress(data, uncompressed_size=limit)
            if self.name == "zstd":
                declared = zstandard.frame_content_size(data)
                if declared > limit:
                    raise self._fail(what, f"declares {declared} bytes, more than {limit}")
                decompressor = getattr(self._local, "zstd", None)
                if decompressor is None:
                    decompressor = self._local.zstd = zstandard.ZstdDecompressor()
                return decompressor.decompress(data, max_output_size=limit)
            if self.name == "lzo":
                return lzo.decompress(data, False, limit)
        except _CODEC_ERRORS as exc:
            raise self._fail(what, exc) from exc
        raise NodePluginError(f"the squashfs uses the compressor {self.name}, which this reader does not know",
                              path=self.source, hint="use an image made with gzip, xz, lzma, lzo, lz4 or zstd")

    def compress(self, data: bytes) -> bytes | None:
        """``data`` compressed the way the base's compressor does it; None where it is stored uncompressed."""
        options = self.options
        # mksquashfs compresses metadata with the compressor's level and window but never with the
        # data-only choices (gzip strategies, xz BCJ filters and dictionary size).
        if self.name == "gzip":
            stream = zlib.compressobj(options.level or 9, zlib.DEFLATED, options.window_size or 15, 8)
            return stream.compress(data) + stream.flush()
        if self.name == "xz":
            return _xz_single_call(data, METADATA_SIZE)
        if self.name == "lz4":
            mode = "high_compression" if options.high_compression else "default"
            return lz4_block.compress(data, mode=mode, store_size=False)
        if self.name == "zstd":
            return zstandard.ZstdCompressor(level=options.level or 15).compress(data)
        if self.name == "lzo":
            if options.algorithm != "lzo1x_999":
                return lzo.compress(data, 1, False)
            return lzo.optimize(lzo.compress(data, options.level or 8, False), False, len(data))
        return None  # lzma: its legacy header wants sizes liblzma does not write; metadata is stored plainly


def _vli(value: int) -> bytes:
    """An xz variable-length integer."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _xz_single_call(data: bytes, dict_size: int) -> bytes:
    """The .xz stream liblzma's lzma_stream_buffer_encode writes (one block whose header holds both sizes,
    CRC32 check, LZMA2 at the default preset), which mksquashfs uses for every block."""
    lzma2 = {"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": dict_size}
    payload = lzma.compress(data, format=lzma.FORMAT_RAW, filters=[lzma2])
    flags = b"\x00\x01"
    header = b"\xfd7zXZ\x00" + flags + _U32.pack(zlib.crc32(flags))
    # Private to the lzma module and so absent from typeshed: the only way to the LZMA2 properties byte.
    properties = lzma._encode_filter_properties(lzma2)  # type: ignore[attr-defined]  # pylint: disable=protected-access
    fields = b"\xc0" + _vli(len(payload)) + _vli(len(data)) + _vli(lzma.FILTER_LZMA2) + _vli(len(properties)) \
        + properties
    size = -(-(1 + len(fields) + 4) // 4) * 4
    block_header = bytes([size // 4 - 1]) + fields + bytes(size - 1 - len(fields) - 4)
    block_header += _U32.pack(zlib.crc32(block_header))
    unpadded = len(block_header) + len(payload) + 4
    block = block_header + payload + bytes(-len(payload) % 4) + _U32.pack(zlib.crc32(data))
    index = b"\x00" + _vli(1) + _vli(unpadded) + _vli(len(data))
    index += bytes(-len(index) % 4)
    index += _U32.pack(zlib.crc32(index))
    backward = _U32.pack(len(index) // 4 - 1) + flags
    return header + block + index + _U32.pack(zlib.crc32(backward)) + backward + b"YZ"


@dataclasses.dataclass(frozen=True)
class DataBlock:
    """One data block of a file: where it lies in the squashfs, how it is stored, its length in the file."""

    offset: int
    stored_size: int
    compressed: bool
    size: int

    @property
    def sparse(self) -> bool:
        return self.stored_size == 0


@dataclasses.dataclass(frozen=True)
class FragmentEntry:
    """A fragment block (the packed tails of small files)."""

    start: int
    stored_size: int
    compressed: bool


@dataclasses.dataclass(frozen=True, eq=False)
class SquashfsInode:
    """One inode with every field squashfs stores for its type (``ref`` is where it lies in the inode table)."""

    ref: int
    type: int
    mode: int
    uid_index: int
    gid_index: int
    uid: int
    gid: int
    mtime: int
    number: int
    nlink: int = 1
    xattr: int = INVALID_XATTR
    file_size: int = 0
    blocks_start: int = 0
    fragment: int = INVALID_FRAGMENT
    fragment_offset: int = 0
    sparse: int = 0
    block_words: array = dataclasses.field(default_factory=lambda: array("I"))
    dir_block: int = 0
    dir_offset: int = 0
    parent: int = 0
    dir_index: tuple[tuple[int, int, bytes], ...] = ()
    target: bytes = b""
    rdev: int = 0

    @property
    def basic_type(self) -> int:
        return self.type - 7 if self.type > 7 else self.type

    @property
    def kind(self) -> str:
        return KINDS[self.basic_type]

    @property
    def extended(self) -> bool:
        return self.type > 7

    @property
    def is_dir(self) -> bool:
        return self.basic_type == DIR

    @property
    def is_file(self) -> bool:
        return self.basic_type == FILE

    @property
    def has_fragment(self) -> bool:
        return self.is_file and self.fragment != INVALID_FRAGMENT

    @property
    def xattr_index(self) -> int | None:
        return None if self.xattr == INVALID_XATTR else self.xattr

    @property
    def size(self) -> int:
        """Bytes of a file, of a directory listing (+3, as squashfs counts), or of a symlink target."""
        return len(self.target) if self.basic_type == SYMLINK else self.file_size

    @property
    def major(self) -> int:
        return (self.rdev >> 8) & 0xFFF

    @property
    def minor(self) -> int:
        return (self.rdev & 0xFF) | ((self.rdev >> 12) & 0xFFF00)


@dataclasses.dataclass(frozen=True)
class DirEntry:
    """One name in a directory listing."""

    name: str
    raw_name: bytes
    ref: int
    number: int
    type: int


@dataclasses.dataclass(frozen=True)
class SquashfsEntry:
    """A path of the tree and its inode (hard links give one entry per name)."""

    path: str
    inode: SquashfsInode


class BlockList(Sequence[DataBlock]):
    """The data blocks of a regular file, computed from its block size words on access (no object per block)."""

    def __init__(self, words: array, start: int, block_size: int, file_size: int) -> None:
        self.words = words
        self.block_size = block_size
        self.file_size = file_size
        self.offsets = array("Q", itertools.accumulate((word & ~UNCOMPRESSED_BLOCK for word in words), initial=start))
        self.end = self.offsets[-1]

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self.words)
        word = self.words[index]
        size = min(self.block_size, self.file_size - index * self.block_size)
        return DataBlock(offset=self.offsets[index], stored_size=word & ~UNCOMPRESSED_BLOCK,
                         compressed=not word & UNCOMPRESSED_BLOCK, size=size)


class _LruCache:
    """A thread-safe LRU of decompressed blocks, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._items: collections.OrderedDict[object, bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: object) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: object, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _key, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


class _MetadataTable:
    """A chain of metadata blocks in ``[start, end)``: a 2-byte header (size, uncompressed bit), then data."""

    def __init__(self, image: SquashfsImage, name: str, start: int, end: int) -> None:
        self.image = image
        self.name = name
        self.start = start
        self.end = end
        self.positions = array("Q")
        position = start
        while position < end:
            if position + 2 > end:
                raise image.damaged(name, f"a block header at byte {position} crosses the table's end ({end})")
            (header,) = _U16.unpack(image.source.read(position, 2))
            stored = header & ~UNCOMPRESSED_METADATA
            if not 0 < stored <= METADATA_SIZE:
                raise image.damaged(name, f"a block at byte {position} claims {stored} bytes")
            self.positions.append(position - start)
            position += 2 + stored
        if position != end:
            raise image.damaged(name, f"its last block ends at byte {position}, past the table's end ({end})")

    def _index(self, relative: int) -> int:
        index = bisect.bisect_left(self.positions, relative)
        if index >= len(self.positions) or self.positions[index] != relative:
            raise self.image.damaged(self.name, f"a reference points at byte {relative}, not at a block")
        return index

    def block(self, index: int) -> bytes:
        return self.image.metadata_block(self.start + self.positions[index], self.name, self.end)

    def read(self, relative: int, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` in the block at ``relative``, continuing into the next blocks."""
        return _Cursor(self, relative, offset).read(length)


class _Cursor:
    """Sequential reads through a metadata table from one reference on."""

    def __init__(self, table: _MetadataTable, relative: int, offset: int) -> None:
        self.table = table
        self.index = table._index(relative) if table.positions or relative or offset else 0
        self.offset = offset

    def read(self, length: int) -> bytes:
        if length == 0:
            return b""
        table = self.table
        capacity = (len(table.positions) - self.index) * METADATA_SIZE - self.offset
        if length > capacity:
            raise table.image.damaged(table.name, f"a record of {length} bytes runs past the table's end")
        pieces = []
        while length > 0:
            if self.index >= len(table.positions):
                raise table.image.damaged(table.name, "a record runs past the table's last block")
            data = table.block(self.index)
            if self.offset > len(data):
                raise table.image.damaged(table.name, f"offset {self.offset} beyond a block of {len(data)} bytes")
            piece = data[self.offset:self.offset + length]
            pieces.append(piece)
            length -= len(piece)
            self.offset += len(piece)
            if self.offset >= len(data):
                if self.offset == len(data) and len(data) < METADATA_SIZE and length > 0:
                    raise table.image.damaged(table.name, "a record runs past a short block")
                self.index += 1
                self.offset = 0
        return b"".join(pieces)

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.read(layout.size))


class SquashfsImage:
    """A squashfs 4.0 image read from a ByteSource: tables on demand, files as ByteSources.

    ``name`` names the image in every error. Reads are thread-safe; decompressed data blocks are kept
    in one LRU of ``cache_bytes`` shared by all files opened from this image.
    """

    def __init__(self, source: ByteSource, *, name: str = "squashfs.img",
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.source = source
        self.name = name
        if source.size < SUPERBLOCK_SIZE:
            raise NodePluginError(f"not a squashfs image ({source.size} bytes, shorter than a superblock)", path=name,
                                  hint="the ISO's LiveOS/squashfs.img is damaged; use the original ISO")
        self.superblock = parse_superblock(source.read(0, SUPERBLOCK_SIZE), source=name)
        self._metadata_cache = _LruCache(4 << 20)
        self._data_cache = _LruCache(cache_bytes)
        self._lock = threading.Lock()
        self._fragments: list[FragmentEntry] | None = None
        self._inodes: dict[int, SquashfsInode] = {}
        self._cached_words = 0
        self.bytes_decompressed = 0
        self.blocks_decompressed = 0
        self._check_layout()
        self.compressor_options, self.data_start = self._read_compressor_options()
        self._codec = _Codec(self.compressor_options, name)
        self.ids = self._read_ids()
        self.xattr_table_start, self.xattr_count, self.xattr_lookup = self._read_xattr_header()
        self.export_lookup = self._read_lookup_positions(
            "export table", self.superblock.export_table_start, self.superblock.inode_count, 8) \
            if self.superblock.has_export_table else array("Q")
        self.inode_table = _MetadataTable(self, "inode table", self.superblock.inode_table_start,
                                          self.superblock.directory_table_start)
        self.directory_table = _MetadataTable(self, "directory table", self.superblock.directory_table_start,
                                              self._directory_table_end())

    # -- errors and layout -------------------------------------------------------------------------
    def damaged(self, table: str, detail: str) -> NodePluginError:
        """The error for a table whose content cannot be right."""
        return NodePluginError(f"damaged squashfs: {table}: {detail}", path=self.name, hint=_DAMAGED_HINT)

    def _check_layout(self) -> None:
        sb = self.superblock
        if sb.compression_id not in COMPRESSORS:
            raise NodePluginError(f"the squashfs uses an unknown compressor (id {sb.compression_id})", path=self.name,
                                  hint="use an image made with gzip, xz, lzma, lzo, lz4 or zstd")
        if not 12 <= sb.block_log <= 20:
            raise self.damaged("superblock", f"block size {sb.block_size} is outside 4 KiB..1 MiB")
        if sb.bytes_used > self.source.size or sb.bytes_used < SUPERBLOCK_SIZE:
            raise NodePluginError(f"the squashfs is cut short ({self.source.size} bytes, its superblock says "
                                  f"{sb.bytes_used})", path=self.name, hint="copy or download the ISO again")
        if not SUPERBLOCK_SIZE <= sb.inode_table_start < sb.directory_table_start < sb.bytes_used:
            raise self.damaged("superblock", f"inode table at {sb.inode_table_start}, directory table at "
                                             f"{sb.directory_table_start}, image of {sb.bytes_used} bytes")
        for table, start in (("id table", sb.id_table_start), ("fragment table", sb.fragment_table_start),
                             ("export table", sb.export_table_start), ("xattr table", sb.xattr_id_table_start)):
            optional = table != "id table"
            if optional and start == INVALID_TABLE:
                continue
            if not sb.directory_table_start <= start <= sb.bytes_used:
                raise self.damaged("superblock", f"the {table} at byte {start} lies outside the tables' area")
        if sb.inode_count == 0 or sb.id_count == 0:
            raise self.damaged("superblock", f"{sb.inode_count} inodes and {sb.id_count} ids")
        if sb.inode_count > MAX_TABLE_ENTRIES or sb.fragment_count > MAX_TABLE_ENTRIES or \
                sb.fragment_count > sb.inode_table_start:
            raise self.damaged("superblock", f"{sb.inode_count} inodes and {sb.fragment_count} fragments in an "
                                             f"image of {sb.bytes_used} bytes")
        if sb.fragment_count and sb.fragment_table_start == INVALID_TABLE:
            raise self.damaged("superblock", f"{sb.fragment_count} fragments but no fragment table")
        if sb.root_inode >> 16 >= sb.directory_table_start - sb.inode_table_start or \
                sb.root_inode & 0xFFFF >= METADATA_SIZE:
            raise self.damaged("superblock", f"the root inode reference {sb.root_inode:#x} lies outside the "
                                             f"inode table")

    def metadata_block(self, position: int, table: str, end: int | None = None) -> bytes:
        """The decompressed metadata block at absolute ``position`` (cached)."""
        cached = self._metadata_cache.get(position)
        if cached is not None:
            return cached
        limit = self.superblock.bytes_used if end is None else end
        if position + 2 > limit:
            raise self.damaged(table, f"a block at byte {position} lies past the end ({limit})")
        (header,) = _U16.unpack(self.source.read(position, 2))
        stored = header & ~UNCOMPRESSED_METADATA
        if not 0 < stored <= METADATA_SIZE or position + 2 + stored > limit:
            raise self.damaged(table, f"a block at byte {position} claims {stored} bytes")
        raw = self.source.read(position + 2, stored)
        if header & UNCOMPRESSED_METADATA:
            data = raw
        else:
            data = self._codec.decompress(raw, METADATA_SIZE, f"the {table} block at byte {position}")
            self._count(len(data))
        self._metadata_cache.put(position, data)
        return data

    def _count(self, decompressed: int) -> None:
        with self._lock:
            self.bytes_decompressed += decompressed
            self.blocks_decompressed += 1

    def _read_compressor_options(self) -> tuple[CompressorOptions, int]:
        sb = self.superblock
        if not sb.has_compressor_options:
            return parse_compressor_options(sb.compressor, sb.block_size, b"", source=self.name), SUPERBLOCK_SIZE
        (header,) = _U16.unpack(self.source.read(SUPERBLOCK_SIZE, 2))
        stored = header & ~UNCOMPRESSED_METADATA
        end = SUPERBLOCK_SIZE + 2 + stored
        if not 0 < stored <= 64 or not header & UNCOMPRESSED_METADATA or end > sb.inode_table_start:
            raise self.damaged("compressor options", f"an options block of {stored} bytes (header {header:#x})")
        raw = self.source.read(SUPERBLOCK_SIZE + 2, stored)
        return parse_compressor_options(sb.compressor, sb.block_size, raw, source=self.name), end

    def _read_lookup_positions(self, table: str, start: int, count: int, entry_size: int) -> array:
        """The absolute positions of the metadata blocks that hold ``count`` entries of a table."""
        if count > MAX_TABLE_ENTRIES:
            raise self.damaged(table, f"{count} entries")
        blocks = -(-count * entry_size // METADATA_SIZE)
        if start + 8 * blocks > self.superblock.bytes_used:
            raise self.damaged(table, f"{count} entries need a list of {blocks} blocks that runs past the image's end")
        positions = array("Q", self.source.read(start, 8 * blocks))
        if sys.byteorder == "big":
            positions.byteswap()
        previous = self.superblock.directory_table_start - 3
        for position in positions:
            # Each block follows the one before it (at least a header and a byte later), so a table never
            # reads one block twice.
            if not previous + 3 <= position < start:
                raise self.damaged(table, f"a block at byte {position} lies outside the table's area or before "
                                          f"the block that precedes it")
            previous = position
        return positions

    def _read_table(self, table: str, positions: array, count: int, entry_size: int, end: int) -> bytes:
        pieces = []
        remaining = count * entry_size
        for position in positions:
            data = self.metadata_block(position, table, end)
            expected = min(METADATA_SIZE, remaining)
            if len(data) != expected:
                raise self.damaged(table, f"a block at byte {position} holds {len(data)} bytes, not {expected}")
            pieces.append(data)
            remaining -= expected
        return b"".join(pieces)

    def _read_ids(self) -> tuple[int, ...]:
        sb = self.superblock
        positions = self._read_lookup_positions("id table", sb.id_table_start, sb.id_count, 4)
        data = self._read_table("id table", positions, sb.id_count, 4, sb.id_table_start)
        return struct.unpack(f"<{sb.id_count}I", data)

    def _read_xattr_header(self) -> tuple[int, int, array]:
        sb = self.superblock
        if not sb.has_xattrs:
            return INVALID_TABLE, 0, array("Q")
        if sb.xattr_id_table_start + _XATTR_TABLE.size > sb.bytes_used:
            raise self.damaged("xattr table", "its header lies past the image's end")
        kv_start, count, _unused = _XATTR_TABLE.unpack(self.source.read(sb.xattr_id_table_start, _XATTR_TABLE.size))
        if not sb.directory_table_start <= kv_start <= sb.xattr_id_table_start or count == 0:
            raise self.damaged("xattr table", f"key/value table at byte {kv_start}, {count} ids")
        lookup = self._read_lookup_positions("xattr table", sb.xattr_id_table_start + _XATTR_TABLE.size, count, 16)
        for position in lookup:
            if not kv_start <= position < sb.xattr_id_table_start:
                raise self.damaged("xattr table", f"an id block at byte {position} lies before the key/value table")
        return kv_start, count, lookup

    def _directory_table_end(self) -> int:
        """The directory table ends where the next table's first block or list begins (empty: where it starts)."""
        sb = self.superblock
        candidates = [sb.bytes_used, sb.id_table_start]
        for start in (sb.fragment_table_start, sb.export_table_start, sb.xattr_id_table_start):
            if start != INVALID_TABLE:
                candidates.append(start)
        candidates += list(self.export_lookup)
        candidates += [int(position) for position in self._fragment_positions()]
        candidates += list(self._id_positions())
        if sb.has_xattrs:
            candidates.append(self.xattr_table_start)
        return min(candidate for candidate in candidates if candidate >= sb.directory_table_start)

    def _fragment_positions(self) -> array:
        sb = self.superblock
        if not sb.fragment_count:
            return array("Q")
        return self._read_lookup_positions("fragment table", sb.fragment_table_start, sb.fragment_count, 16)

    def _id_positions(self) -> array:
        return self._read_lookup_positions("id table", self.superblock.id_table_start, self.superblock.id_count, 4)

    # -- fragments ---------------------------------------------------------------------------------
    @property
    def fragments(self) -> list[FragmentEntry]:
        """Every fragment block (read once, on first use)."""
        if self._fragments is None:
            sb = self.superblock
            positions = self._fragment_positions()
            data = self._read_table("fragment table", positions, sb.fragment_count, 16, sb.fragment_table_start)
            entries: list[FragmentEntry] = []
            for start, word, _unused in _FRAGMENT_ENTRY.iter_unpack(data):
                stored = word & ~UNCOMPRESSED_BLOCK
                if word >> 25 or not 0 < stored <= sb.block_size or \
                        not self.data_start <= start <= sb.inode_table_start - stored:
                    raise self.damaged("fragment table", f"fragment {len(entries)} at byte {start}, word {word:#x}")
                entries.append(FragmentEntry(start=start, stored_size=stored, compressed=not word & UNCOMPRESSED_BLOCK))
            self._fragments = entries
        return self._fragments

    # -- inodes and directories --------------------------------------------------------------------
    @property
    def root(self) -> SquashfsInode:
        return self.inode(self.superblock.root_inode)

    def inode(self, ref: int) -> SquashfsInode:
        """The inode at reference ``ref`` (block << 16 | offset), parsed and checked."""
        cached = self._inodes.get(ref)
        if cached is not None:
            return cached
        inode = self._parse_inode(ref)
        # Bounded by the block lists it holds: a hostile table could make many large overlapping ones.
        if self._cached_words + len(inode.block_words) < 1 << 22:
            self._cached_words += len(inode.block_words) + 1
            self._inodes[ref] = inode
        return inode

    def _parse_inode(self, ref: int) -> SquashfsInode:
        sb = self.superblock
        block, offset = ref >> 16, ref & 0xFFFF
        if offset >= METADATA_SIZE:
            raise self.damaged("inode table", f"reference {ref:#x} has offset {offset}")
        cursor = _Cursor(self.inode_table, block, offset)
        kind, mode, uid_index, gid_index, mtime, number = cursor.unpack(_INODE_BASE)
        where = f"inode {number} at {block}+{offset}"
        if not DIR <= kind <= LSOCKET:
            raise self.damaged("inode table", f"{where} has type {kind}")
        if not 1 <= number <= sb.inode_count:
            raise self.damaged("inode table", f"{where}: the number lies outside 1..{sb.inode_count}")
        if uid_index >= len(self.ids) or gid_index >= len(self.ids):
            raise self.damaged("inode table", f"{where} names id {max(uid_index, gid_index)} of {len(self.ids)}")
        fields: dict = {"ref": ref, "type": kind, "mode": mode & 0xFFF, "uid_index": uid_index,
                        "gid_index": gid_index, "uid": self.ids[uid_index], "gid": self.ids[gid_index],
                        "mtime": mtime, "number": number}
        if kind == DIR:
            dir_block, nlink, size, dir_offset, parent = cursor.unpack(_DIR_INODE)
            fields.update(dir_block=dir_block, nlink=nlink, file_size=size, dir_offset=dir_offset, parent=parent)
        elif kind == LDIR:
            nlink, size, dir_block, parent, index_count, dir_offset, xattr = cursor.unpack(_LDIR_INODE)
            index = []
            if index_count > size // 12 + 1:
                raise self.damaged("inode table", f"{where} has {index_count} index entries for {size} bytes")
            for _entry in range(index_count):
                position, start, name_size = cursor.unpack(_DIR_INDEX)
                if name_size >= 256:
                    raise self.damaged("inode table", f"{where} has an index name of {name_size + 1} bytes")
                index.append((position, start, cursor.read(name_size + 1)))
            fields.update(nlink=nlink, file_size=size, dir_block=dir_block, parent=parent, dir_offset=dir_offset,
                          xattr=xattr, dir_index=tuple(index))
        elif kind in (FILE, LFILE):
            if kind == FILE:
                blocks_start, fragment, fragment_offset, size = cursor.unpack(_FILE_INODE)
                nlink, sparse, xattr = 1, 0, INVALID_XATTR
            else:
                blocks_start, size, sparse, nlink, fragment, fragment_offset, xattr = cursor.unpack(_LFILE_INODE)
            count = size // sb.block_size if fragment != INVALID_FRAGMENT else -(-size // sb.block_size)
            if count > MAX_FILE_BLOCKS:
                raise self.damaged("inode table", f"{where}: a file of {size} bytes ({count} blocks) is larger "
                                                  f"than this reader accepts")
            words = array("I", cursor.read(4 * count))
            if sys.byteorder == "big":
                words.byteswap()
            fields.update(blocks_start=blocks_start, file_size=size, sparse=sparse, nlink=nlink, fragment=fragment,
                          fragment_offset=fragment_offset, xattr=xattr, block_words=words)
        elif kind in (SYMLINK, LSYMLINK):
            nlink, target_size = cursor.unpack(_SYMLINK_INODE)
            if target_size > MAX_SYMLINK:
                raise self.damaged("inode table", f"{where}: a symlink target of {target_size} bytes")
            fields.update(nlink=nlink, target=cursor.read(target_size))
            if kind == LSYMLINK:
                (fields["xattr"],) = cursor.unpack(_U32)
        elif kind in (BLKDEV, CHRDEV):
            fields["nlink"], fields["rdev"] = cursor.unpack(_DEV_INODE)
        elif kind in (LBLKDEV, LCHRDEV):
            fields["nlink"], fields["rdev"], fields["xattr"] = cursor.unpack(_LDEV_INODE)
        elif kind in (FIFO, SOCKET):
            (fields["nlink"],) = cursor.unpack(_IPC_INODE)
        else:
            fields["nlink"], fields["xattr"] = cursor.unpack(_LIPC_INODE)
        inode = SquashfsInode(**fields)
        if inode.xattr != INVALID_XATTR and inode.xattr >= self.xattr_count:
            raise self.damaged("inode table", f"{where} names xattr id {inode.xattr} of {self.xattr_count}")
        if inode.is_file:
            self._check_file(inode, where)
        return inode

    def _check_file(self, inode: SquashfsInode, where: str) -> None:
        sb = self.superblock
        for word in inode.block_words:
            stored = word & ~UNCOMPRESSED_BLOCK
            if word >> 25 or stored > sb.block_size or (word & UNCOMPRESSED_BLOCK and stored == 0):
                raise self.damaged("inode table", f"{where} has a block size word {word:#x}")
        blocks = self.file_blocks(inode)
        if blocks.end > inode.blocks_start and \
                not self.data_start <= inode.blocks_start < blocks.end <= sb.inode_table_start:
            raise self.damaged("inode table", f"{where}: its blocks [{inode.blocks_start}, {blocks.end}) lie outside "
                                              f"the data area [{self.data_start}, {sb.inode_table_start})")
        if inode.has_fragment:
            tail = inode.file_size - len(blocks) * sb.block_size
            if inode.fragment >= sb.fragment_count or inode.fragment_offset + tail > sb.block_size:
                raise self.damaged("inode table", f"{where} names fragment {inode.fragment} of {sb.fragment_count} "
                                                  f"at offset {inode.fragment_offset}")

    def file_blocks(self, inode: SquashfsInode) -> BlockList:
        """The data blocks of a regular file (the tail in a fragment is not among them)."""
        if not inode.is_file:
            raise NodePluginError(f"inode {inode.number} is a {inode.kind}, not a regular file", path=self.name)
        return BlockList(inode.block_words, inode.blocks_start, self.superblock.block_size, inode.file_size)

    def listdir(self, inode: SquashfsInode) -> list[DirEntry]:
        """The entries of a directory, in the order stored (sorted by name, as squashfs requires)."""
        if not inode.is_dir:
            raise NodePluginError(f"inode {inode.number} is a {inode.kind}, not a directory", path=self.name)
        where = f"directory inode {inode.number}"
        if inode.file_size < 3 or inode.file_size - 3 > MAX_DIRECTORY_BYTES or inode.dir_offset >= METADATA_SIZE:
            raise self.damaged("directory table", f"{where} has size {inode.file_size} at offset {inode.dir_offset}")
        data = self.directory_table.read(inode.dir_block, inode.dir_offset, inode.file_size - 3)
        entries = []
        position = 0
        inode_blocks = self.superblock.directory_table_start - self.superblock.inode_table_start
        while position < len(data):
            if position + _DIR_HEADER.size > len(data):
                raise self.damaged("directory table", f"{where}: a header is cut short")
            count, start_block, base_number = _DIR_HEADER.unpack_from(data, position)
            position += _DIR_HEADER.size
            if count >= 256 or start_block >= inode_blocks:
                raise self.damaged("directory table", f"{where}: a header of {count + 1} entries at block "
                                                      f"{start_block}")
            for _entry in range(count + 1):
                if position + _DIR_ENTRY.size > len(data):
                    raise self.damaged("directory table", f"{where}: an entry is cut short")
                offset, delta, kind, name_size = _DIR_ENTRY.unpack_from(data, position)
                position += _DIR_ENTRY.size
                raw = data[position:position + name_size + 1]
                position += name_size + 1
                if len(raw) != name_size + 1 or name_size >= 256:
                    raise self.damaged("directory table", f"{where}: a name is cut short")
                if b"/" in raw or b"\0" in raw or raw in (b".", b".."):
                    raise self.damaged("directory table", f"{where} holds the name {_name(raw)}")
                number = base_number + delta
                if not DIR <= kind <= SOCKET or offset >= METADATA_SIZE or \
                        not 1 <= number <= self.superblock.inode_count:
                    raise self.damaged("directory table", f"{where}: entry {_name(raw)} has type {kind}, inode "
                                                          f"{number}, offset {offset}")
                entries.append(DirEntry(name=os.fsdecode(raw), raw_name=raw, ref=start_block << 16 | offset,
                                        number=number, type=kind))
        return entries

    def entry_inode(self, entry: DirEntry) -> SquashfsInode:
        """The inode a directory entry names, checked against the entry's type and number."""
        inode = self.inode(entry.ref)
        if inode.basic_type != entry.type or inode.number != entry.number:
            raise self.damaged("directory table", f"entry {_name(entry.raw_name)} says {KINDS[entry.type]} "
                                                  f"{entry.number}, its inode is {inode.kind} {inode.number}")
        return inode

    def walk(self) -> Iterator[SquashfsEntry]:
        """Every path from ``/`` down, depth first, each directory once (a loop or shared directory raises)."""
        root = self.root
        if not root.is_dir:
            raise self.damaged("inode table", f"the root inode is a {root.kind}")
        yield SquashfsEntry("/", root)
        seen_dirs = {root.ref}
        seen_numbers = {root.number}
        stack: list[tuple[str, Iterator[DirEntry]]] = [("", iter(self.listdir(root)))]
        walked = 0
        while stack:
            prefix, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            walked += 1
            if walked > MAX_WALK_ENTRIES:
                raise self.damaged("directory table", f"more than {MAX_WALK_ENTRIES} entries")
            inode = self.entry_inode(entry)
            path = f"{prefix}/{entry.name}"
            yield SquashfsEntry(path, inode)
            if inode.is_dir:
                if inode.ref in seen_dirs or inode.number in seen_numbers:
                    raise self.damaged("directory table", f"the directory {quote(path)} appears twice (a loop)")
                if len(stack) >= MAX_DEPTH:
                    raise self.damaged("directory table", f"directories nest deeper than {MAX_DEPTH} levels")
                seen_dirs.add(inode.ref)
                seen_numbers.add(inode.number)
                stack.append((path, iter(self.listdir(inode))))

    def lookup(self, path: str) -> SquashfsInode:
        """The inode at ``path`` (``/LiveOS/rootfs.img`` or ``LiveOS/rootfs.img``); symlinks are not followed."""
        inode = self.root
        walked = "/"
        for part in (part for part in path.split("/") if part):
            if not inode.is_dir:
                raise NodePluginError(f"{quote(walked)} is a {inode.kind}, not a directory, in the squashfs",
                                      path=self.name)
            wanted = os.fsencode(part)
            match = next((entry for entry in self.listdir(inode) if entry.raw_name == wanted), None)
            if match is None:
                raise NodePluginError(f"{quote(path)} does not exist in the squashfs", path=self.name,
                                      hint=f"{quote(walked)} holds no {quote(part, 100)}")
            inode = self.entry_inode(match)
            walked = f"{walked.rstrip('/')}/{part}"
        return inode

    # -- data --------------------------------------------------------------------------------------
    def read_raw(self, offset: int, length: int) -> bytes:
        """Stored bytes of the image (a compressed block as it lies on disk)."""
        return self.source.read(offset, length)

    def read_block(self, block: DataBlock) -> bytes:
        """The content of a data block (zeros for a sparse one), decompressed and cached."""
        if block.sparse:
            return bytes(block.size)
        key = ("block", block.offset)
        cached = self._data_cache.get(key)
        if cached is not None and len(cached) == block.size:
            return cached
        raw = self.source.read(block.offset, block.stored_size)
        if block.compressed:
            data = self._codec.decompress(raw, block.size, f"the data block at byte {block.offset}")
            self._count(len(data))
        else:
            data = raw
        if len(data) != block.size:
            raise self.damaged("data", f"the block at byte {block.offset} holds {len(data)} bytes, not {block.size}")
        self._data_cache.put(key, data)
        return data

    def read_fragment(self, index: int) -> bytes:
        """The content of fragment block ``index``, decompressed and cached."""
        if not 0 <= index < len(self.fragments):
            raise self.damaged("fragment table", f"fragment {index} of {len(self.fragments)}")
        key = ("fragment", index)
        cached = self._data_cache.get(key)
        if cached is not None:
            return cached
        entry = self.fragments[index]
        raw = self.source.read(entry.start, entry.stored_size)
        if entry.compressed:
            data = self._codec.decompress(raw, self.superblock.block_size, f"fragment block {index}")
            self._count(len(data))
        else:
            data = raw
        self._data_cache.put(key, data)
        return data

    def file_tail(self, inode: SquashfsInode) -> bytes:
        """The tail of a file that lies in a fragment (empty without one)."""
        if not inode.has_fragment:
            return b""
        tail = inode.file_size - (inode.file_size // self.superblock.block_size) * self.superblock.block_size
        data = self.read_fragment(inode.fragment)
        if inode.fragment_offset + tail > len(data):
            raise self.damaged("fragment table", f"inode {inode.number}'s tail lies past fragment {inode.fragment}")
        return data[inode.fragment_offset:inode.fragment_offset + tail]

    def open_file(self, path: str | SquashfsInode) -> SquashfsFile:
        """A regular file of the image as a ByteSource; blocks are decompressed when read."""
        inode = path if isinstance(path, SquashfsInode) else self.lookup(path)
        if not inode.is_file:
            raise NodePluginError(f"{path if isinstance(path, str) else inode.number} is a {inode.kind}, "
                                  f"not a regular file", path=self.name)
        return SquashfsFile(self, inode)


class SquashfsFile:
    """A regular file inside a squashfs, read at any offset and length (thread-safe)."""

    def __init__(self, image: SquashfsImage, inode: SquashfsInode) -> None:
        self.image = image
        self.inode = inode
        self.blocks = image.file_blocks(inode)
        self.block_size = image.superblock.block_size

    @property
    def size(self) -> int:
        return self.inode.file_size

    def block(self, index: int) -> bytes:
        """The content of block ``index`` of the file (the fragment tail for the last one, if any)."""
        if index < len(self.blocks):
            return self.image.read_block(self.blocks[index])
        if index == len(self.blocks) and self.inode.has_fragment:
            return self.image.file_tail(self.inode)
        raise IndexError(index)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"negative read {offset}+{length}")
        end = min(self.size, offset + length)
        pieces = []
        position = offset
        while position < end:
            index, within = divmod(position, self.block_size)
            data = self.block(index)
            piece = data[within:within + end - position]
            if not piece:
                raise self.image.damaged("data", f"block {index} of inode {self.inode.number} is short")
            pieces.append(piece)
            position += len(piece)
        return b"".join(pieces)


# -- the writer ------------------------------------------------------------------------------------

class IncrementalUnsupported(NodePluginError):
    """The incremental writer cannot make this image; ``reason`` says why (fall back to a full mksquashfs)."""

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"the squashfs cannot be rewritten incrementally: {reason}", path=path,
                         hint="rebuild it with a full mksquashfs")


@dataclasses.dataclass
class RewriteReport:
    """What ``rewrite_squashfs`` did: which blocks it reused, compressed or kept sparse, and how long each step took."""

    output: str
    file_path: str
    compressor: str
    block_size: int
    old_size: int
    new_size: int
    blocks_total: int = 0
    blocks_reused: int = 0
    blocks_compressed: int = 0
    blocks_sparse: int = 0
    blocks_unchanged_content: int = 0
    bytes_copied: int = 0
    bytes_compressed: int = 0
    bytes_compressed_stored: int = 0
    bytes_decompressed: int = 0
    bytes_written: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    path_taken: str = "incremental"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class BlocksFromSource(Mapping[int, bytes]):
    """Changed blocks read on demand from the new content of the file (e.g. the edited root image)."""

    def __init__(self, source: ByteSource, indices: Iterable[int], block_size: int) -> None:
        self.source = source
        self.block_size = block_size
        self.indices = sorted(set(indices))
        self._members = set(self.indices)

    def __contains__(self, index: object) -> bool:
        return index in self._members  # without reading the block, as Mapping's default would

    def __getitem__(self, index: int) -> bytes:
        if index not in self._members:
            raise KeyError(index)
        return self.source.read(index * self.block_size, self.block_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class _MetadataWriter:
    """A metadata table being written: 8 KiB blocks compressed as the base does, spooled to a temporary file."""

    def __init__(self, codec: _Codec, uncompressed: bool, spool_dir: str) -> None:
        self._codec = codec
        self._uncompressed = uncompressed
        self._file = tempfile.SpooledTemporaryFile(max_size=16 << 20, dir=spool_dir)
        self.written = 0
        self._pending = bytearray()

    def position(self) -> tuple[int, int]:
        """(block start in the table, offset in that block) where the next byte goes."""
        return self.written, len(self._pending)

    def append(self, data: bytes) -> list[tuple[int, int]]:
        """Add bytes; return (offset in ``data``, block start) for each block that ``data`` begins or enters."""
        starts = [(0, self.written)]
        position = 0
        while position < len(data):
            take = min(METADATA_SIZE - len(self._pending), len(data) - position)
            self._pending += data[position:position + take]
            position += take
            if len(self._pending) == METADATA_SIZE:
                self._flush()
                starts.append((position, self.written))
        return starts

    def _flush(self) -> None:
        chunk = bytes(self._pending)
        self._pending.clear()
        packed = None if self._uncompressed else self._codec.compress(chunk)
        if packed is None or len(packed) >= len(chunk):
            block = _U16.pack(len(chunk) | UNCOMPRESSED_METADATA) + chunk
        else:
            block = _U16.pack(len(packed)) + packed
        self._file.write(block)
        self.written += len(block)

    def finish(self) -> int:
        if self._pending:
            self._flush()
        return self.written

    def copy_to(self, out) -> None:
        self._file.seek(0)
        shutil.copyfileobj(self._file, out, _COPY_CHUNK)
        self._file.close()


def _write_table(out, codec: _Codec, uncompressed: bool, payload: bytes) -> tuple[int, int]:
    """Write ``payload`` as metadata blocks followed by the list of their positions; (list start, bytes written)."""
    position = out.tell()
    start = position
    pointers = []
    for offset in range(0, len(payload), METADATA_SIZE):
        chunk = payload[offset:offset + METADATA_SIZE]
        packed = None if uncompressed else codec.compress(chunk)
        if packed is None or len(packed) >= len(chunk):
            block = _U16.pack(len(chunk) | UNCOMPRESSED_METADATA) + chunk
        else:
            block = _U16.pack(len(packed)) + packed
        pointers.append(position)
        out.write(block)
        position += len(block)
    table_start = position
    out.write(b"".join(_U64.pack(pointer) for pointer in pointers))
    return table_start, out.tell() - start


def _encode_inode(inode: SquashfsInode) -> bytes:
    head = _INODE_BASE.pack(inode.type, inode.mode, inode.uid_index, inode.gid_index, inode.mtime, inode.number)
    kind = inode.type
    if kind == DIR:
        return head + _DIR_INODE.pack(inode.dir_block, inode.nlink, inode.file_size, inode.dir_offset, inode.parent)
    if kind == LDIR:
        index = b"".join(_DIR_INDEX.pack(position, start, len(name) - 1) + name
                         for position, start, name in inode.dir_index)
        return head + _LDIR_INODE.pack(inode.nlink, inode.file_size, inode.dir_block, inode.parent,
                                       len(inode.dir_index), inode.dir_offset, inode.xattr) + index
    words = inode.block_words
    if sys.byteorder == "big":
        words = array("I", words)
        words.byteswap()
    if kind == FILE:
        return head + _FILE_INODE.pack(inode.blocks_start, inode.fragment, inode.fragment_offset,
                                       inode.file_size) + words.tobytes()
    if kind == LFILE:
        return head + _LFILE_INODE.pack(inode.blocks_start, inode.file_size, inode.sparse, inode.nlink,
                                        inode.fragment, inode.fragment_offset, inode.xattr) + words.tobytes()
    if kind in (SYMLINK, LSYMLINK):
        tail = _U32.pack(inode.xattr) if kind == LSYMLINK else b""
        return head + _SYMLINK_INODE.pack(inode.nlink, len(inode.target)) + inode.target + tail
    if kind in (BLKDEV, CHRDEV):
        return head + _DEV_INODE.pack(inode.nlink, inode.rdev)
    if kind in (LBLKDEV, LCHRDEV):
        return head + _LDEV_INODE.pack(inode.nlink, inode.rdev, inode.xattr)
    if kind in (FIFO, SOCKET):
        return head + _IPC_INODE.pack(inode.nlink)
    return head + _LIPC_INODE.pack(inode.nlink, inode.xattr)


def _encode_listing(entries: list[tuple[bytes, int, int, int]]) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A directory listing (name, inode ref, number, type) and its index, grouped the way mksquashfs groups them."""
    listing = bytearray()
    index: list[tuple[int, bytes]] = []
    count, start_block, base_number, header_at, index_from, have_header = 256, -1, 0, 0, 0, False
    for name, ref, number, kind in entries:
        block, offset = ref >> 16, ref & 0xFFFF
        crosses = have_header and len(listing) + _DIR_ENTRY.size + len(name) - index_from > METADATA_SIZE
        if count == 256 or block != start_block or crosses or not -32768 <= number - base_number <= 32767:
            if have_header:
                if crosses:
                    index.append((len(listing), name))
                    index_from = len(listing)
                _DIR_HEADER.pack_into(listing, header_at, count - 1, start_block, base_number)
            header_at = len(listing)
            listing += bytes(_DIR_HEADER.size)
            have_header, start_block, count, base_number = True, block, 0, number
        listing += _DIR_ENTRY.pack(offset, number - base_number, kind, len(name) - 1) + name
        count += 1
    if have_header:
        _DIR_HEADER.pack_into(listing, header_at, count - 1, start_block, base_number)
    return bytes(listing), index


@dataclasses.dataclass
class _Plan:
    """Where the rewritten file's blocks come from: ``sources[i]`` >= 0 is a base offset to copy, -1 sparse,
    <= -2 the (-2 - value)th block that mksquashfs compressed."""

    target: SquashfsInode
    new_size: int
    keep_fragment: bool
    words: array
    sources: array
    to_compress: list[int]
    run_start: int
    run_end: int


def _copy_range(image: SquashfsImage, out, start: int, end: int) -> int:
    """Copy stored bytes ``[start, end)`` of the image to ``out``: in the kernel when the image is a file region."""
    position = start
    source = image.source
    if isinstance(source, FileRegion) and end > start:
        out.flush()
        target = out.tell()
        try:
            fd = os.open(source.path, os.O_RDONLY)
        except OSError:
            fd = -1
        try:
            while fd >= 0 and position < end:
                copied = os.copy_file_range(fd, out.fileno(), end - position, source.offset + position, target)
                if copied <= 0:
                    break
                position += copied
                target += copied
        except OSError:
            pass  # no copy_file_range between these file systems: copy through memory
        finally:
            if fd >= 0:
                os.close(fd)
            out.seek(target)
    while position < end:
        chunk = image.read_raw(position, min(_COPY_CHUNK, end - position))
        out.write(chunk)
        position += len(chunk)
    return end - start


def _all_zero(data: bytes) -> bool:
    return not data.strip(b"\0")


def _check_other_files(image: SquashfsImage, target: SquashfsInode, run_start: int, run_end: int) -> None:
    """Data the writer moves must belong to the target alone: no other file's blocks inside its run."""
    for entry in image.walk():
        inode = entry.inode
        if not inode.is_file or inode.ref == target.ref:
            continue
        blocks = image.file_blocks(inode)
        if not len(blocks) or blocks.end == inode.blocks_start:
            continue
        if inode.blocks_start < run_end and blocks.end > run_start:
            raise IncrementalUnsupported(f"{quote(entry.path)} shares data blocks with the file being rewritten "
                                         f"(a duplicate file)", path=image.name)
    for number, fragment in enumerate(image.fragments):
        if fragment.start < run_end and fragment.start + fragment.stored_size > run_start:
            raise IncrementalUnsupported(f"fragment block {number} lies inside the file's data", path=image.name)


def _plan(image: SquashfsImage, target: SquashfsInode, new_size: int, changed: Mapping[int, bytes],
          report: RewriteReport, compare: bool, to_compress, run: tuple[int, int]) -> _Plan:
    """Decide per block: copy, sparse or compress; blocks to compress are written to ``to_compress`` in order."""
    block_size = image.superblock.block_size
    base_blocks = image.file_blocks(target)
    base_file = image.open_file(target)
    run_start, run_end = run
    tail_index = len(base_blocks)
    keep_fragment = target.has_fragment and new_size == target.file_size and tail_index not in changed
    count = len(base_blocks) if keep_fragment else -(-new_size // block_size)
    if count > MAX_FILE_BLOCKS:
        raise IncrementalUnsupported(f"a file of {new_size} bytes has more blocks than the writer handles",
                                     path=image.name)
    for index in changed:
        if not 0 <= index < -(-new_size // block_size):
            raise NodePluginError(f"changed block {index} lies outside the file's {new_size} bytes", path=image.name)
    words = array("I")
    sources = array("q")
    compressed: list[int] = []
    for index in range(count):
        length = min(block_size, new_size - index * block_size)
        base_block = base_blocks[index] if index < len(base_blocks) else None
        same_shape = base_block if base_block is not None and base_block.size == length else None
        kept = None  # the base's block, reused as stored: unchanged, or "changed" to the bytes it holds
        content = b""
        if index in changed:
            content = changed[index]
            if len(content) != length:
                raise NodePluginError(f"changed block {index} holds {len(content)} bytes; block {index} of a file of "
                                      f"{new_size} bytes has {length}", path=image.name)
            if compare and same_shape is not None and content == image.read_block(same_shape):
                report.blocks_unchanged_content += 1
                kept = same_shape
        elif same_shape is not None:
            kept = same_shape
        else:
            # The base's tail grows (or is cut) into this block: its bytes come from the base, zero-extended.
            old = base_file.read(index * block_size, length)
            content = old + bytes(length - len(old))
        if kept is not None:
            words.append(base_blocks.words[index])
            sources.append(-1 if kept.sparse else kept.offset)
            if kept.sparse:
                report.blocks_sparse += 1
            else:
                report.blocks_reused += 1
        elif _all_zero(content):
            words.append(0)
            sources.append(-1)
            report.blocks_sparse += 1
        else:
            words.append(0)
            sources.append(-2 - len(compressed))
            compressed.append(index)
            to_compress.write(content)
            report.bytes_compressed += len(content)
    return _Plan(target=target, new_size=new_size, keep_fragment=keep_fragment, words=words, sources=sources,
                 to_compress=compressed, run_start=run_start, run_end=run_end)


def _compress_blocks(image: SquashfsImage, plan: _Plan, raw_path: str, workdir: str,
                     report: RewriteReport) -> tuple[SquashfsImage | None, BlockList | None]:
    """Compress the planned blocks (``raw_path``, in order) with mksquashfs: the base's compressor and options."""
    if not plan.to_compress:
        return None, None
    packed_path = os.path.join(workdir, "blocks.squashfs")
    options = image.compressor_options
    argv = ["mksquashfs", raw_path, packed_path, "-noappend", "-no-progress", "-quiet", "-no-fragments",
            "-no-xattrs", "-no-exports", "-no-duplicates", *options.mksquashfs_args()]
    if image.superblock.flags & FLAG_NOD:
        argv.append("-noD")
    result = run(argv, check=False)
    os.unlink(raw_path)
    if result.returncode != 0:
        stderr = (result.stderr or b"").decode("utf-8", "replace").strip()
        raise IncrementalUnsupported(f"mksquashfs cannot compress with the base's options "
                                     f"({' '.join(options.mksquashfs_args())}): {quote(stderr[-300:])}",
                                     path=image.name)
    packed = SquashfsImage(FileRegion(packed_path), name=packed_path, cache_bytes=0)
    if packed.compressor_options != options:
        packed.source.close()  # type: ignore[attr-defined]
        raise IncrementalUnsupported(f"mksquashfs stored other compressor options ({packed.compressor_options}) "
                                     f"than the base's ({options})", path=image.name)
    inode = packed.lookup("/blocks")
    packed_blocks = packed.file_blocks(inode)
    if len(packed_blocks) != len(plan.to_compress) or inode.has_fragment:
        packed.source.close()  # type: ignore[attr-defined]
        raise IncrementalUnsupported(f"mksquashfs made {len(packed_blocks)} blocks of {len(plan.to_compress)}",
                                     path=image.name)
    for number, index in enumerate(plan.to_compress):
        block = packed_blocks[number]
        if block.sparse:
            packed.source.close()  # type: ignore[attr-defined]
            raise IncrementalUnsupported(f"mksquashfs stored block {index} as sparse", path=image.name)
        plan.words[index] = block.stored_size | (0 if block.compressed else UNCOMPRESSED_BLOCK)
        report.bytes_compressed_stored += block.stored_size
    report.blocks_compressed = len(plan.to_compress)
    return packed, packed_blocks


def rewrite_squashfs(base: ByteSource, out_path: str, file_path: str, changed: Mapping[int, bytes], *,
                     new_size: int | None = None, base_name: str = "squashfs.img", mkfs_time: int | None = None,
                     file_mtime: int | None = None, all_time: int | None = None,
                     compare_changed: bool = True) -> RewriteReport:
    """Write to ``out_path`` the squashfs ``base`` with the regular file ``file_path`` changed.

    ``changed`` maps block indices (of ``block_size`` bytes) to their new content, exactly as long as the
    block is in a file of ``new_size`` bytes (default: unchanged; larger or smaller both work); blocks not
    in it keep the base's content, zero-extended where the file grows, cut where it shrinks (a tail that
    changes, or a tail of a file that changes size, leaves its fragment and becomes a block of its own).
    Unchanged blocks are copied verbatim, all-zero blocks become sparse, the rest are compressed by
    mksquashfs with the base's compressor and options (``compare_changed``: a "changed" block equal to the
    base's is copied too). ``mkfs_time`` defaults to SOURCE_DATE_EPOCH, else now; ``file_mtime`` sets the
    file's mtime (default: the base's); ``all_time`` sets every inode's mtime like ``mksquashfs -all-time``.
    The image is written next to ``out_path`` and renamed into place. Raises IncrementalUnsupported for
    what it cannot do.
    """
    timer = StageTimer()
    directory = os.path.dirname(os.path.abspath(out_path))
    workdir = tempfile.mkdtemp(prefix=f".{os.path.basename(out_path)}.", dir=directory)
    packed: SquashfsImage | None = None
    try:
        with timer.stage("plan"):
            image = SquashfsImage(base, name=base_name, cache_bytes=8 << 20)
            target = image.lookup(file_path)
            if not target.is_file:
                raise IncrementalUnsupported(f"{quote(file_path)} is a {target.kind}, not a regular file",
                                             path=base_name)
            size = target.file_size if new_size is None else new_size
            if size < 0:
                raise NodePluginError(f"the new size {size} is negative", path=base_name)
            report = RewriteReport(output=out_path, file_path=file_path, compressor=image.superblock.compressor,
                                   block_size=image.superblock.block_size, old_size=target.file_size, new_size=size)
            run_start, run_end = target.blocks_start, image.file_blocks(target).end
            if run_end == run_start:
                # No stored block (a tail in a fragment, or all sparse; mksquashfs then records 0 as the
                # start): new blocks go at the end of the data area, where they move nothing.
                run_start = run_end = image.superblock.inode_table_start
            if image.superblock.has_xattrs and image.xattr_table_start < image.superblock.id_table_start:
                raise IncrementalUnsupported("the xattr table lies before the id table", path=base_name)
            _check_other_files(image, target, run_start, run_end)
            raw_path = os.path.join(workdir, "blocks")
            with open(raw_path, "wb") as to_compress:
                plan = _plan(image, target, size, changed, report, compare_changed, to_compress, (run_start, run_end))
            report.blocks_total = len(plan.words)
        with timer.stage("compress"):
            packed, packed_blocks = _compress_blocks(image, plan, raw_path, workdir, report)
        staging = os.path.join(workdir, "squashfs.img")
        with open(staging, "wb") as out:
            with timer.stage("data"):
                delta = _write_data(image, plan, packed, packed_blocks, out, report)
            with timer.stage("tables"):
                superblock = _write_tables(image, plan, delta, out, workdir, mkfs_time=mkfs_time,
                                           file_mtime=file_mtime, all_time=all_time)
                out.seek(0)
                out.write(superblock.pack())
                out.flush()
                os.fsync(out.fileno())
            report.bytes_written = os.fstat(out.fileno()).st_size
        with timer.stage("check"):
            _check_result(image, staging, plan, file_path)
        os.replace(staging, out_path)
    finally:
        if packed is not None:
            packed.source.close()  # type: ignore[attr-defined]
        shutil.rmtree(workdir, ignore_errors=True)
    report.bytes_decompressed = image.bytes_decompressed
    report.seconds = dict(timer.durations)
    return report


def _write_data(image: SquashfsImage, plan: _Plan, packed: SquashfsImage | None, packed_blocks: BlockList | None,
                out, report: RewriteReport) -> int:
    """Superblock space, options and the data area with the file's new run; returns the shift of later data."""
    out.write(bytes(SUPERBLOCK_SIZE))
    report.bytes_copied += _copy_range(image, out, SUPERBLOCK_SIZE, plan.run_start)
    copy_from = copy_to = -1
    for index, source in enumerate(plan.sources):
        stored = plan.words[index] & ~UNCOMPRESSED_BLOCK
        if source == -1:
            continue  # sparse: nothing stored, and the base's blocks around it stay contiguous
        if source >= 0 and source == copy_to:
            copy_to += stored
            continue
        if copy_to > copy_from:
            report.bytes_copied += _copy_range(image, out, copy_from, copy_to)
        copy_from = copy_to = -1
        if source >= 0:
            copy_from, copy_to = source, source + stored
        elif source <= -2:
            if packed is None or packed_blocks is None:  # _compress_blocks packs whenever the plan compresses
                raise NodePluginError(f"block {index} is planned compressed, but no block was compressed",
                                      path=image.name)
            block = packed_blocks[-2 - source]
            out.write(packed.read_raw(block.offset, block.stored_size))
    if copy_to > copy_from:
        report.bytes_copied += _copy_range(image, out, copy_from, copy_to)
    new_run_end = out.tell()
    report.bytes_copied += _copy_range(image, out, plan.run_end, image.superblock.inode_table_start)
    return new_run_end - plan.run_end


def _write_tables(image: SquashfsImage, plan: _Plan, delta: int, out, workdir: str, *, mkfs_time: int | None,
                  file_mtime: int | None, all_time: int | None) -> SquashfsSuperblock:
    """Inode, directory, fragment, export, id and xattr tables for the moved data; returns the new superblock."""
    sb = image.superblock
    codec = image._codec
    no_inode_compression = bool(sb.flags & FLAG_NOI)

    def moved(position: int) -> int:
        return position if position < plan.run_start else position + delta

    inodes = _MetadataWriter(codec, no_inode_compression, workdir)
    directories = _MetadataWriter(codec, no_inode_compression, workdir)
    new_refs: dict[int, int] = {}
    numbers: dict[int, int] = {}

    def emit(inode: SquashfsInode, **changes) -> int:
        if all_time is not None:
            changes["mtime"] = all_time
        encoded = _encode_inode(dataclasses.replace(inode, **changes) if changes else inode)
        block, offset = inodes.position()
        inodes.append(encoded)
        ref = block << 16 | offset
        new_refs[inode.ref] = ref
        if inode.number in numbers:
            raise IncrementalUnsupported(f"inode number {inode.number} is used twice", path=image.name)
        numbers[inode.number] = ref
        return ref

    def emit_file(inode: SquashfsInode) -> int:
        if inode.ref != plan.target.ref:
            if len(inode.block_words):
                return emit(inode, blocks_start=moved(inode.blocks_start))
            return emit(inode)
        # The sparse count only feeds st_blocks; mksquashfs records it when the source file was sparse, so
        # it is recounted when the base recorded one, and stays 0 otherwise.
        sparse_bytes = 0
        if inode.sparse:
            sparse_bytes = sum(min(sb.block_size, plan.new_size - index * sb.block_size)
                               for index, word in enumerate(plan.words) if word == 0)
            sparse_bytes = min(sparse_bytes, max(plan.new_size - 1, 0))
        extended = inode.type == LFILE or plan.new_size >= 1 << 32 or plan.run_start >= 1 << 32
        changes = {"type": LFILE if extended else FILE, "file_size": plan.new_size, "block_words": plan.words,
                   "sparse": sparse_bytes, "blocks_start": plan.run_start}
        if not plan.keep_fragment:
            changes.update(fragment=INVALID_FRAGMENT, fragment_offset=0)
        if file_mtime is not None:
            changes["mtime"] = file_mtime
        return emit(inode, **changes)

    def emit_directory(inode: SquashfsInode, entries: list[tuple[bytes, int, int, int]]) -> int:
        listing, index = _encode_listing(entries)
        block, offset = directories.position()
        starts = directories.append(listing)
        dir_index = []
        for position, name in index:
            at = bisect.bisect_right([start for start, _block in starts], position) - 1
            dir_index.append((position, starts[at][1], name))
        size = len(listing) + 3
        extended = inode.type == LDIR or dir_index or size > 0xFFFF
        return emit(inode, type=LDIR if extended else DIR, dir_block=block, dir_offset=offset, file_size=size,
                    dir_index=tuple(dir_index))

    # Post-order, children in listing order: the order mksquashfs writes inodes and directories in.
    root = image.root
    stack: list[tuple[SquashfsInode, list[DirEntry], int, list[tuple[bytes, int, int, int]]]] = \
        [(root, image.listdir(root), 0, [])]
    seen_dirs = {root.ref}
    while stack:
        directory, entries, position, done = stack[-1]
        if position == len(entries):
            stack.pop()
            ref = emit_directory(directory, done)
            if stack:
                parent = stack[-1]
                entry = parent[1][parent[2] - 1]
                parent[3].append((entry.raw_name, ref, entry.number, entry.type))
            continue
        entry = entries[position]
        stack[-1] = (directory, entries, position + 1, done)
        child = image.entry_inode(entry)
        if child.is_dir:
            if child.ref in seen_dirs or len(stack) >= MAX_DEPTH:
                raise image.damaged("directory table", f"the directory {quote(entry.name)} appears twice (a loop)")
            seen_dirs.add(child.ref)
            stack.append((child, image.listdir(child), 0, []))
            continue
        child_ref = new_refs.get(child.ref)
        if child_ref is None:
            child_ref = emit_file(child) if child.is_file else emit(child)
        done.append((entry.raw_name, child_ref, entry.number, entry.type))
    if len(numbers) != sb.inode_count:
        raise IncrementalUnsupported(f"the tree reaches {len(numbers)} inodes, the superblock counts {sb.inode_count}",
                                     path=image.name)

    inode_table_start = out.tell()
    inodes.finish()
    inodes.copy_to(out)
    directory_table_start = out.tell()
    directories.finish()
    directories.copy_to(out)
    fragment_table_start = sb.fragment_table_start
    if sb.fragment_table_start != INVALID_TABLE:
        payload = b"".join(
            _FRAGMENT_ENTRY.pack(moved(fragment.start),
                                 fragment.stored_size | (0 if fragment.compressed else UNCOMPRESSED_BLOCK), 0)
            for fragment in image.fragments)
        fragment_table_start, _size = _write_table(out, codec, bool(sb.flags & FLAG_NOF), payload)
    export_table_start = INVALID_TABLE
    if sb.has_export_table:
        payload = b"".join(_U64.pack(numbers[number]) for number in range(1, sb.inode_count + 1))
        export_table_start, _size = _write_table(out, codec, no_inode_compression, payload)
    id_payload = struct.pack(f"<{len(image.ids)}I", *image.ids)
    id_table_start, _size = _write_table(out, codec, bool(sb.flags & (FLAG_NOI | FLAG_NOID)), id_payload)
    xattr_id_table_start = INVALID_TABLE
    if sb.has_xattrs:
        shift = out.tell() - image.xattr_table_start
        _copy_range(image, out, image.xattr_table_start, sb.xattr_id_table_start)
        xattr_id_table_start = out.tell()
        out.write(_XATTR_TABLE.pack(image.xattr_table_start + shift, image.xattr_count, 0))
        out.write(b"".join(_U64.pack(position + shift) for position in image.xattr_lookup))
    bytes_used = out.tell()
    out.write(bytes(-bytes_used % 4096))
    epoch = source_date_epoch()
    if mkfs_time is None:
        mkfs_time = epoch if epoch is not None else int(time.time())
    return dataclasses.replace(sb, mkfs_time=mkfs_time, bytes_used=bytes_used, root_inode=new_refs[root.ref],
                               inode_table_start=inode_table_start, directory_table_start=directory_table_start,
                               fragment_table_start=fragment_table_start, export_table_start=export_table_start,
                               id_table_start=id_table_start, xattr_id_table_start=xattr_id_table_start)


def _listing(image: SquashfsImage) -> dict[str, tuple]:
    return {entry.path: (entry.inode.kind, entry.inode.mode, entry.inode.uid, entry.inode.gid, entry.inode.number,
                         entry.inode.nlink, entry.inode.xattr, entry.inode.size, entry.inode.target, entry.inode.rdev)
            for entry in image.walk()}


def _check_result(image: SquashfsImage, staging: str, plan: _Plan, file_path: str) -> None:
    """Read the new image back: the same tree and attributes, the file with its new size and block words."""
    with FileRegion(staging) as region:
        written = SquashfsImage(region, name=staging, cache_bytes=0)
        before, after = _listing(image), _listing(written)
        target = written.lookup(file_path)
        for path, facts in before.items():
            if facts[4] == plan.target.number:
                before[path] = facts[:7] + (plan.new_size,) + facts[8:]
        if before != after or target.file_size != plan.new_size or target.block_words != plan.words:
            changed = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
            raise NodePluginError("the rewritten squashfs does not read back as planned", path=image.name,
                                  hint="report this; rebuild with a full mksquashfs meanwhile",
                                  details=f"differences at: {', '.join(changed[:10])[:1000]}")


def changed_file_blocks(base: SquashfsImage, new: SquashfsImage, path: str) -> list[int]:
    """Indices of the blocks of file ``path`` whose stored bytes differ between two images (grown or cut
    blocks and a changed fragment tail included): what a verifier must decompress, and nothing else."""
    old_inode, new_inode = base.lookup(path), new.lookup(path)
    if not old_inode.is_file or not new_inode.is_file:
        raise NodePluginError(f"{quote(path)} is not a regular file in both images", path=new.name)
    block_size = new.superblock.block_size
    if base.superblock.block_size != block_size:
        raise NodePluginError(f"the images have different block sizes ({base.superblock.block_size} and "
                              f"{block_size})", path=new.name)
    old_blocks, new_blocks = base.file_blocks(old_inode), new.file_blocks(new_inode)
    count = max(-(-old_inode.file_size // block_size), -(-new_inode.file_size // block_size))
    changed = []
    for index in range(count):
        old = old_blocks[index] if index < len(old_blocks) else None
        fresh = new_blocks[index] if index < len(new_blocks) else None
        if old is None or fresh is None:
            old_tail = base.file_tail(old_inode) if old is None and index == len(old_blocks) else None
            new_tail = new.file_tail(new_inode) if fresh is None and index == len(new_blocks) else None
            old_content = old_tail if old is None else base.read_block(old)
            new_content = new_tail if fresh is None else new.read_block(fresh)
            if old_content is None or new_content is None or old_content != new_content:
                changed.append(index)
        elif (old.size, old.stored_size, old.compressed) != (fresh.size, fresh.stored_size, fresh.compressed) or \
                (not old.sparse and base.read_raw(old.offset, old.stored_size) !=
                 new.read_raw(fresh.offset, fresh.stored_size)):
            changed.append(index)
    return changed


def measure_reader(squashfs: str, file_path: str, *, offset: int = 0, chunk: int = 1 << 20,
                   threads: int = 1, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Read one file of a squashfs end to end with ``threads`` readers; bytes, seconds and MiB/s (for benchmarks)."""
    with FileRegion(squashfs, offset) as region:
        image = SquashfsImage(region, name=squashfs)
        handle = image.open_file(file_path)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            total = sum(pool.map(lambda position: len(handle.read(position, chunk)), range(0, handle.size, chunk)))
        elapsed = time.monotonic() - started
    if progress:
        progress(f"read {total} bytes in {elapsed:.2f} s")
    return {"bytes": total, "seconds": round(elapsed, 3), "mib_per_s": round(total / (1 << 20) / max(elapsed, 1e-9), 1),
            "bytes_decompressed": image.bytes_decompressed}
