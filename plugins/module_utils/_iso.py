# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ISO 9660 images: read with pycdlib (no root, no loop mount), rewrite with xorriso boot replay.

Reading prefers Rock Ridge names, then Joliet, then plain ISO 9660. Files are streamed, never held
in memory. Writing never uses pycdlib's writer (it corrupts isohybrid GPTs and refuses the classic
Fedora layout): ``xorriso -indev BASE -outdev NEW -boot_image any replay`` keeps every El Torito
entry, the boot-info-table and the hybrid MBR/GPT, and the result is checked for exactly that
before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import BinaryIO

from ._bootcfg import (GRUB, GRUB_LEGACY, ISOLINUX, BootEntry, ConfigEdit, KernelArgEdits, check_volume_id,
                       detect_format, edit_kernel_args, efiboot_configs, list_entries, read_efiboot_file,
                       replace_volume_label, write_efiboot_file)
from ._errors import NodePluginError
from ._isomd5 import implant as implant_md5
from ._isomd5 import read_field
from ._outputs import run_dir, work_dir
from ._reproducible import source_date_epoch
from ._run import run

try:
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException
    HAS_PYCDLIB = True
    PYCDLIB_IMPORT_ERROR: Exception | None = None
except ImportError as _import_error:  # pragma: no cover - reported by the modules
    HAS_PYCDLIB = False
    PYCDLIB_IMPORT_ERROR = _import_error
    PyCdlibException = Exception  # type: ignore[misc,assignment]

SECTOR_SIZE = 2048
# Files up to this size may be read whole into memory by read_bytes' fallback.
_SMALL_FILE = 1 << 20
_EFI_IMAGE_NAMES = ("efiboot.img", "macboot.img")
_CONFIG_NAMES = ("isolinux.cfg", "syslinux.cfg", "grub.cfg")


@dataclasses.dataclass(frozen=True)
class IsoFile:
    """One file or directory in the ISO, by its preferred (Rock Ridge) path."""

    path: str
    size: int
    is_dir: bool = False
    symlink_target: str | None = None


@dataclasses.dataclass(frozen=True)
class ElToritoEntry:
    """One El Torito boot image: platform (BIOS, UEFI, ...) and the file it boots, if in the tree."""

    index: int
    platform: str
    bootable: bool
    emulation: str
    load_size: int
    lba: int
    path: str | None
    # xorriso patched a boot info table (PVD, file LBA, length, checksum) into bytes 8-64 of the image.
    boot_info_table: bool = False


@dataclasses.dataclass(frozen=True)
class HybridInfo:
    """What the system area (first 32 KiB) holds: an isohybrid MBR, a GPT, their partitions."""

    mbr: bool
    gpt: bool
    mbr_partitions: list[dict]
    gpt_partition_count: int


@dataclasses.dataclass(frozen=True)
class BootRecords:
    """Boot records as xorriso reports them; compared before and after a rewrite."""

    el_torito: list[ElToritoEntry]
    system_area: str
    mbr_partition_types: list[str]
    gpt_partition_count: int
    image_sectors: int
    report: str = dataclasses.field(repr=False, default="")
    catalog_path: str | None = None


@dataclasses.dataclass(frozen=True)
class IsoWriteResult:
    """What rewrite_iso wrote and what it kept."""

    path: str
    volume_id: str
    replaced: list[str]
    added: list[str]
    removed: list[str]
    boot_records: BootRecords
    md5: str | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class BootConfig:
    """A boot config found in the ISO (``efiboot`` set when it sits inside a FAT image) and its entries."""

    path: str
    fmt: str
    entries: list[BootEntry]
    efiboot: str | None = None
    text: str = dataclasses.field(default="", repr=False, compare=False)

    @property
    def where(self) -> str:
        """``<efi image>:<config>`` for a config inside an EFI image, else the config's path."""
        return f"{self.efiboot}:{self.path}" if self.efiboot else self.path

    @property
    def loader(self) -> str:
        if self.efiboot:
            return "efiboot"
        return "isolinux" if self.fmt == ISOLINUX else "grub"


@dataclasses.dataclass(frozen=True)
class BootConfigEdits:
    """Edited boot configs ready for rewrite_iso(replace_files=...), what changed in each, and every
    config as it reads after the edit (``configs``, in the order of IsoReader.boot_configs())."""

    replace_files: dict[str, str]
    changes: dict[str, list[str]]
    configs: list[BootConfig]


def _require_pycdlib() -> None:
    if not HAS_PYCDLIB:
        raise NodePluginError("the Python library pycdlib is not installed",
                              hint="pip install pycdlib (make setup does it)")


def _norm(path: str) -> str:
    return "/" + path.strip("/")


class IsoReader:
    """An ISO opened read-only with pycdlib, once; use as a context manager.

    Facts that cost a walk, a tool run or an extraction are computed on first use and kept while
    the reader is open (the file list, the boot records, the boot configs with each EFI image
    extracted once): every stage that holds the reader asks it instead of the path.
    """

    def __init__(self, path: str) -> None:
        _require_pycdlib()
        self.path = path
        if not os.path.isfile(path):
            what = "a folder, not an ISO file" if os.path.isdir(path) else "does not exist or is not a regular file"
            raise NodePluginError(f"the ISO {what}", path=path, hint="give the path of an .iso file")
        check_complete(path)
        self._iso = pycdlib.PyCdlib()
        try:
            self._iso.open(path)
        except (PyCdlibException, struct.error, ValueError, OSError, IndexError, KeyError, RecursionError) as exc:
            raise NodePluginError(f"not a readable ISO 9660 image: {str(exc)[:300]}", path=path,
                                  hint="pass the path of an .iso file (a damaged download also fails here)") from exc
        if self._iso.has_rock_ridge():
            self._name_kind = "rr_path"
        elif self._iso.has_joliet():
            self._name_kind = "joliet_path"
        else:
            self._name_kind = "iso_path"
        self._entries: list[IsoFile] | None = None
        self._boot_records: BootRecords | None = None
        self._hybrid: HybridInfo | None = None
        self._boot_configs: list[BootConfig] | None = None
        self._scratch: str | None = None
        self._efi_images: dict[str, str] = {}

    def __enter__(self) -> IsoReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._iso.close()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @property
    def name_kind(self) -> str:
        """Which name table paths come from: rr_path (Rock Ridge), joliet_path or iso_path."""
        return self._name_kind

    @property
    def volume_id(self) -> str:
        return self._iso.pvd.volume_identifier.decode("ascii", "replace").rstrip(" \0")

    @property
    def volume_size(self) -> int:
        """Bytes the primary volume descriptor claims (compare with the file size to spot truncation)."""
        return self._iso.pvd.space_size * self._iso.pvd.logical_block_size()

    def _kw(self, path: str) -> dict:
        path = _norm(path)
        if self._name_kind == "iso_path":
            # Plain ISO 9660 names are upper case with a version suffix on files.
            path = path.upper()
            try:
                record = self._iso.get_record(iso_path=path)
                if record.is_dir():
                    return {"iso_path": path}
            except PyCdlibException:
                pass
            return {"iso_path": path + ";1"}
        return {self._name_kind: path}

    def _display(self, parent: str, name: str) -> str:
        if self._name_kind == "iso_path":
            name = name.split(";", 1)[0].rstrip(".").lower()
        return parent.rstrip("/") + "/" + name

    def _walk_tree(self) -> Iterator[IsoFile]:
        stack = ["/"]
        seen: set[int] = set()
        while stack:
            directory = stack.pop()
            kind = self._name_kind
            query = directory if kind != "iso_path" else directory.upper()
            try:
                children = list(self._iso.list_children(**{kind: query}))
            except (PyCdlibException, struct.error, ValueError, IndexError, KeyError) as exc:
                raise NodePluginError(f"cannot list the folder {directory} of the ISO: {str(exc)[:200]}",
                                      path=self.path, hint="the image is damaged") from exc
            for child in children:
                if child is None or child.is_dot() or child.is_dotdot():
                    continue
                if kind == "rr_path":
                    name = child.rock_ridge.name().decode("utf-8", "surrogateescape")
                elif kind == "joliet_path":
                    name = child.file_identifier().decode("utf-16_be", "replace")
                else:
                    name = child.file_identifier().decode("ascii", "replace")
                if not name or "/" in name or name in (".", ".."):
                    raise NodePluginError(f"the ISO holds an entry named {name!r} in {directory}", path=self.path,
                                          hint="the image is damaged or crafted")
                path = self._display(directory, name)
                if child.is_dir():
                    # A directory record pointing back at an ancestor would make the walk endless.
                    if child.extent_location() in seen:
                        raise NodePluginError(f"the folder {path} of the ISO loops back on itself", path=self.path,
                                              hint="the image is damaged or crafted")
                    seen.add(child.extent_location())
                    yield IsoFile(path=path, size=0, is_dir=True)
                    stack.append(path)
                    continue
                target = None
                if kind == "rr_path" and child.rock_ridge.is_symlink():
                    target = child.rock_ridge.symlink_path().decode("utf-8", "surrogateescape")
                yield IsoFile(path=path, size=child.get_data_length(), symlink_target=target)

    def walk(self) -> list[IsoFile]:
        """Every file and directory, depth first, with its preferred name (walked once per reader)."""
        if self._entries is None:
            self._entries = list(self._walk_tree())
        return self._entries

    def files(self) -> list[IsoFile]:
        """Regular files (and symlinks), sorted by path."""
        return sorted((entry for entry in self.walk() if not entry.is_dir), key=lambda entry: entry.path)

    def boot_records(self) -> BootRecords:
        """El Torito entries and system area as xorriso reports them (run once per reader)."""
        if self._boot_records is None:
            self._boot_records = boot_records(self.path)
        return self._boot_records

    def hybrid(self) -> HybridInfo:
        """The isohybrid MBR/GPT of the system area (read once per reader)."""
        if self._hybrid is None:
            self._hybrid = read_hybrid(self.path)
        return self._hybrid

    def scratch_dir(self) -> str:
        """A private folder that lives as long as the reader (for extracted EFI images)."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="node-iso-", dir=run_dir())
        return self._scratch

    def efi_image(self, image_path: str) -> str:
        """A local copy of an EFI boot image of the ISO (extracted once; callers must not change it)."""
        if image_path not in self._efi_images:
            local = os.path.join(self.scratch_dir(), image_path.strip("/").replace("/", "_"))
            self.extract(image_path, local)
            os.chmod(local, 0o444)
            self._efi_images[image_path] = local
        return self._efi_images[image_path]

    def boot_configs(self) -> list[BootConfig]:
        """Every boot config of the ISO (tree and inside each EFI image) with its entries (read once)."""
        if self._boot_configs is None:
            configs = []
            for path, image, text in find_boot_configs(self):
                fmt = detect_format(path, text)
                configs.append(BootConfig(path=path, fmt=fmt, entries=list_entries(text, fmt), efiboot=image,
                                          text=text))
            self._boot_configs = configs
        return self._boot_configs

    def exists(self, path: str) -> bool:
        try:
            self._iso.get_record(**self._kw(path))
        except PyCdlibException:
            return False
        return True

    def size(self, path: str) -> int:
        return self._record(path).get_data_length()

    def extent(self, path: str) -> tuple[int, int]:
        """(byte offset in the ISO file, size) of a file stored in one extent, for tools that take an offset."""
        record = self._record(path)
        if record.data_continuation is not None:
            raise NodePluginError(f"{path} is stored in several extents (over 4 GiB)", path=self.path,
                                  hint="this reader needs the file in one extent")
        return record.extent_location() * self._iso.pvd.logical_block_size(), record.get_data_length()

    def _record(self, path: str):
        try:
            return self._iso.get_record(**self._kw(path))
        except PyCdlibException as exc:
            raise NodePluginError(f"{path} is not in the ISO", path=self.path,
                                  hint="check the path inside the ISO (paths are case-sensitive)") from exc

    def extract(self, path: str, dest: str | BinaryIO) -> None:
        """Stream one file out of the ISO to a local path or an open binary file object."""
        self._record(path)
        try:
            if isinstance(dest, str):
                self._iso.get_file_from_iso(dest, **self._kw(path))
            else:
                self._iso.get_file_from_iso_fp(dest, **self._kw(path))
        except PyCdlibException as exc:
            raise NodePluginError(f"cannot read {path} out of the ISO: {exc}", path=self.path,
                                  hint="the image may be truncated or damaged") from exc

    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        """The first ``limit`` bytes (all when None) of a small file in the ISO."""
        size = self._record(path).get_data_length()
        if size == 0:
            return b""  # pycdlib refuses to open a file without data
        try:
            with self._iso.open_file_from_iso(**self._kw(path)) as handle:
                return handle.read() if limit is None else handle.read(limit)
        except PyCdlibException:
            if size > _SMALL_FILE:
                raise
        # The boot catalog has no data pycdlib will open as a file, but it can be copied out.
        buffer = io.BytesIO()
        self.extract(path, buffer)
        return buffer.getvalue() if limit is None else buffer.getvalue()[:limit]

    def file_sha256(self, path: str) -> str:
        """sha256 of one file of the ISO, streamed."""
        digest = hashlib.sha256()
        if self._record(path).get_data_length() > _SMALL_FILE:
            try:
                with self._iso.open_file_from_iso(**self._kw(path)) as handle:
                    for block in iter(lambda: handle.read(_SMALL_FILE), b""):
                        digest.update(block)
            except (PyCdlibException, OSError, ValueError) as exc:
                raise NodePluginError(f"cannot read {path} out of the ISO: {str(exc)[:200]}", path=self.path,
                                      hint="the image may be truncated or damaged") from exc
        else:
            digest.update(self.read_bytes(path))
        return digest.hexdigest()

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", "surrogateescape")


def check_complete(iso: str) -> int:
    """The volume size the primary volume descriptor claims; raise when the file is shorter."""
    claimed = read_field(iso).volume_size
    actual = os.path.getsize(iso)
    if actual < claimed:
        raise NodePluginError(f"the ISO is truncated: its volume descriptor says {claimed} bytes, the file has "
                              f"{actual}", path=iso, hint="copy or download the ISO again")
    return claimed


def read_hybrid(iso: str) -> HybridInfo:
    """Read the system area: MBR signature and partition entries, GPT header at LBA 1 ("EFI PART")."""
    with open(iso, "rb") as handle:
        head = handle.read(16 * SECTOR_SIZE)
        mbr = len(head) >= 512 and head[510:512] == b"\x55\xaa"
        partitions = []
        if mbr:
            for index in range(4):
                entry = head[446 + 16 * index:446 + 16 * (index + 1)]
                if entry[4] == 0 and entry[8:16] == b"\0" * 8:
                    continue
                partitions.append({"index": index + 1, "bootable": entry[0] == 0x80, "type": f"0x{entry[4]:02x}",
                                   "start": int.from_bytes(entry[8:12], "little"),
                                   "sectors": int.from_bytes(entry[12:16], "little")})
        gpt = head[512:520] == b"EFI PART"
        used = 0
        if gpt:
            array_lba = int.from_bytes(head[512 + 72:512 + 80], "little")
            count = int.from_bytes(head[512 + 80:512 + 84], "little")
            size = int.from_bytes(head[512 + 84:512 + 88], "little")
            handle.seek(array_lba * 512)
            array = handle.read(min(count, 1024) * size) if size >= 16 else b""
            used = sum(1 for start in range(0, len(array) - size + 1, size)
                       if array[start:start + 16] != b"\0" * 16)
    return HybridInfo(mbr=mbr and bool(partitions), gpt=gpt, mbr_partitions=partitions, gpt_partition_count=used)


_ET_IMG = re.compile(r"^El Torito boot img :\s+(\d+)\s+(\S+)\s+([yn])\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s+(\d+)")
_ET_PATH = re.compile(r"^El Torito img path :\s+(\d+)\s+(.*)$")
_ET_OPTS = re.compile(r"^El Torito img opts :\s+(\d+)\s+(.*)$")


def boot_records(iso: str) -> BootRecords:
    """El Torito entries and the system area, from ``xorriso -report_el_torito/-report_system_area``."""
    result = run(["xorriso", "-no_rc", "-indev", iso, "-report_el_torito", "plain", "-report_system_area", "plain"])
    report = result.stdout.decode("utf-8", "replace")
    images: dict[int, dict] = {}
    paths: dict[int, str] = {}
    options: dict[int, list[str]] = {}
    summary, mbr_types, gpt_count, sectors, catalog = "", [], 0, 0, None
    for line in report.splitlines():
        if match := _ET_IMG.match(line):
            images[int(match.group(1))] = {"platform": match.group(2), "bootable": match.group(3) == "y",
                                           "emulation": match.group(4), "load_size": int(match.group(5)),
                                           "lba": int(match.group(6))}
        elif match := _ET_PATH.match(line):
            paths[int(match.group(1))] = match.group(2).strip()
        elif match := _ET_OPTS.match(line):
            options[int(match.group(1))] = match.group(2).split()
        elif line.startswith("El Torito cat path :"):
            catalog = line.split(":", 1)[1].strip() or None
        elif line.startswith("System area summary:"):
            summary = line.split(":", 1)[1].strip()
        elif line.startswith("MBR partition      :"):
            mbr_types.append(line.split()[5])
        elif line.startswith("GPT start and size :"):
            gpt_count += 1
        elif line.startswith("ISO image size/512 :"):
            sectors = int(line.split(":", 1)[1])
    entries = [ElToritoEntry(index=index, path=paths.get(index), boot_info_table="boot-info-table" in
                             options.get(index, []), **images[index]) for index in sorted(images)]
    return BootRecords(el_torito=entries, system_area=summary, mbr_partition_types=mbr_types,
                       gpt_partition_count=gpt_count, image_sectors=sectors, report=report, catalog_path=catalog)


def boot_info_table_problem(reader: IsoReader, path: str) -> str | None:
    """What is wrong with the boot info table of an El Torito image, or None when it is right.

    The table (bytes 8-64) holds the PVD's LBA (16), the image's own LBA and length, and the sum of
    its 32-bit little-endian words from byte 64 on; a boot loader that trusts a stale one misboots.
    """
    data = reader.read_bytes(path, _SMALL_FILE + 1)
    if len(data) > _SMALL_FILE or len(data) < 64:
        return f"{path}: {len(data)} bytes, not a boot image with a boot info table"
    pvd, lba, length, checksum = struct.unpack_from("<IIII", data, 8)
    offset, size = reader.extent(path)
    body = data[64:] + b"\0" * (-len(data[64:]) % 4)
    expected = sum(struct.unpack_from(f"<{len(body) // 4}I", body)) & 0xFFFFFFFF
    problems = []
    if pvd != 16:
        problems.append(f"PVD at {pvd}, not 16")
    if lba != offset // SECTOR_SIZE:
        problems.append(f"file LBA {lba}, not {offset // SECTOR_SIZE}")
    if length != size:
        problems.append(f"length {length}, not {size}")
    if checksum != expected:
        problems.append("wrong checksum")
    return f"the boot info table of {path} is stale ({', '.join(problems)})" if problems else None


def lost_boot_records(before: BootRecords, after: BootRecords) -> list[str]:
    """What a rewrite lost: El Torito entries (platform + file), MBR, GPT, partition types."""
    lost = []
    kept = {(entry.platform, entry.path) for entry in after.el_torito}
    for entry in before.el_torito:
        if (entry.platform, entry.path) not in kept:
            lost.append(f"El Torito entry {entry.index} ({entry.platform}, {entry.path or 'no file'})")
    for kind in ("MBR", "GPT"):
        if kind in before.system_area.split() and kind not in after.system_area.split():
            lost.append(f"the {kind} of the hybrid system area")
    if sorted(before.mbr_partition_types) != sorted(after.mbr_partition_types) and "MBR" in after.system_area.split():
        lost.append(f"MBR partition types {before.mbr_partition_types} became {after.mbr_partition_types}")
    if before.gpt_partition_count > after.gpt_partition_count:
        lost.append(f"GPT partitions ({before.gpt_partition_count} became {after.gpt_partition_count})")
    return lost


def check_replayable(iso: str | IsoReader) -> BootRecords:
    """Refuse layouts that xorriso's boot replay cannot keep: a boot image outside the ISO tree."""
    with opened(iso) as reader:
        records = reader.boot_records()
    for entry in records.el_torito:
        if entry.path is None:
            raise NodePluginError(
                f"El Torito entry {entry.index} ({entry.platform}) boots an image that is not a file of the ISO "
                "tree (an EFI image only in an appended GPT partition); rewriting would lose it", path=reader.path,
                hint="use an ISO whose EFI boot image is a file such as isolinux/efiboot.img or images/efiboot.img")
    return records


@contextlib.contextmanager
def opened(iso: str | IsoReader) -> Iterator[IsoReader]:
    """The reader itself when given one (left open), else the ISO at that path opened for the block."""
    if isinstance(iso, IsoReader):
        yield iso
    else:
        with IsoReader(iso) as reader:
            yield reader


def _check_local(local: str, iso_path: str) -> None:
    if not os.path.exists(local):
        raise NodePluginError(f"the local file for {iso_path} does not exist", path=local, hint="check the path")


def rewrite_iso(base: str | IsoReader, dest: str, *, replace_files: Mapping[str, str] | None = None,
                add_files: Mapping[str, str] | None = None, remove: Sequence[str] = (),
                make_dirs: Sequence[str] = (), volume_id: str | None = None, implant: bool = False) -> IsoWriteResult:
    """Write ``dest`` = ``base`` with files replaced, added and removed, keeping every boot record.

    ``replace_files``/``add_files`` map ISO paths to local files (or folders, for add);
    ``make_dirs`` creates empty folders (parents included). The new ISO
    is written next to ``dest`` and renamed into place only when its El Torito entries and hybrid
    MBR/GPT match the base's; ``implant`` implants the isomd5sum md5 before the rename (otherwise
    call ``_isomd5.implant`` yourself as the last step). Honours SOURCE_DATE_EPOCH.
    """
    started = time.monotonic()
    replace_files = dict(replace_files or {})
    add_files = dict(add_files or {})
    with opened(base) as reader:
        base_path = reader.path
        before = check_replayable(reader)
        for iso_path in replace_files:
            if not reader.exists(iso_path):
                raise NodePluginError(f"cannot replace {iso_path}: it is not in the base ISO", path=base_path,
                                      hint="use add_files for new files")
        for iso_path in add_files:
            if reader.exists(iso_path):
                raise NodePluginError(f"cannot add {iso_path}: it is already in the base ISO", path=base_path,
                                      hint="use replace_files to replace it")
        for iso_path in remove:
            if not reader.exists(iso_path):
                raise NodePluginError(f"cannot remove {iso_path}: it is not in the base ISO", path=base_path)
        old_volume_id = reader.volume_id
    for iso_path, local in {**replace_files, **add_files}.items():
        _check_local(local, iso_path)
    if volume_id is not None:
        check_volume_id(volume_id)
    epoch = source_date_epoch()
    dest = os.path.abspath(dest)
    workdir = work_dir(dest, "iso")
    try:
        temp_iso = os.path.join(workdir, "new.iso")
        argv = ["xorriso", "-no_rc", "-return_with", "FAILURE", "32", "-indev", base_path, "-outdev", temp_iso,
                "-compliance", "no_emul_toc", "-boot_image", "any", "replay", "-joliet", "on",
                "-stdio_sync", "off"]
        for iso_path in remove:
            argv += ["-rm_r", _norm(iso_path), "--"]
        for iso_path in make_dirs:
            argv += ["-mkdir", _norm(iso_path), "--"]
            if epoch is not None:
                argv += ["-alter_date", "b-c", f"={epoch}", _norm(iso_path), "--"]
        for iso_path, local in sorted({**replace_files, **add_files}.items()):
            argv += ["-map", os.path.abspath(local), _norm(iso_path)]
            if epoch is not None:
                # Mapped files carry their local dates; pin them so equal inputs give equal bytes.
                argv += ["-alter_date_r", "b-c", f"={epoch}", _norm(iso_path), "--"]
        if volume_id is not None:
            argv += ["-volid", volume_id]
        argv += ["-commit", "-end"]
        _run_xorriso(argv, temp_iso, os.path.dirname(dest))
        after = boot_records(temp_iso)
        lost = lost_boot_records(before, after)
        if lost:
            raise NodePluginError("the rewritten ISO lost boot records: " + "; ".join(lost), path=base_path,
                                  hint="this ISO layout cannot be rewritten with boot replay; please report it",
                                  details=after.report)
        md5 = implant_md5(temp_iso, force=True) if implant else None
        os.replace(temp_iso, dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return IsoWriteResult(path=dest, volume_id=volume_id or old_volume_id, replaced=sorted(replace_files),
                          added=sorted(add_files), removed=sorted(remove), boot_records=after, md5=md5,
                          seconds=round(time.monotonic() - started, 3))


_XORRISO_FULL = re.compile(r"Image size (\d+)s exceeds free space on media (\d+)s")


def _run_xorriso(argv: list[str], target: str, folder: str) -> None:
    """Run xorriso writing ``target`` (beside the output, in ``folder``); a failure says what xorriso found
    wrong (its FAILURE lines), a full disk as such, naming the output's folder."""
    result = run(argv, check=False)
    if result.returncode == 0:
        return
    text = (result.stderr or b"").decode("utf-8", "replace") + (result.stdout or b"").decode("utf-8", "replace")
    full = _XORRISO_FULL.search(text)
    if full or "No space left" in text:
        needed = f": the ISO needs {int(full.group(1)) * 2 // 1024} MiB, {int(full.group(2)) * 2 // 1024} MiB are free" \
            if full else ""
        raise NodePluginError(f"the output's file system is full{needed}", path=folder,
                              hint="free space there, or write the output to another file system")
    reasons = [line.strip() for line in text.splitlines() if any(mark in line for mark in ("FAILURE", "MISHAP", "SORRY"))]
    raise NodePluginError(f"xorriso could not write the ISO (exit code {result.returncode})", path=target,
                          hint="the messages below are xorriso's", details="\n".join(reasons[-10:]) or text[-2000:])


# Boot configs of the ISO: where they are, what they boot, and edits for rewrite_iso.

def _is_config(path: str) -> bool:
    base = os.path.basename(path).lower()
    parent = os.path.dirname(path).lower()
    return base in _CONFIG_NAMES or parent.endswith("efi/boot") and base.endswith(".conf")


def efi_image_paths(reader: IsoReader) -> list[str]:
    """ISO paths of the EFI boot images (efiboot.img, macboot.img) in the tree."""
    return sorted({entry.path for entry in reader.files() if os.path.basename(entry.path).lower() in _EFI_IMAGE_NAMES
                   and entry.symlink_target is None})


def find_boot_configs(reader: IsoReader) -> list[tuple[str, str | None, str]]:
    """(config path, efiboot image path or None, text) of every boot config, EFI images included."""
    found: list[tuple[str, str | None, str]] = []
    for entry in reader.files():
        if _is_config(entry.path) and entry.symlink_target is None:
            found.append((entry.path, None, reader.read_text(entry.path)))
    for image_path in efi_image_paths(reader):
        local = reader.efi_image(image_path)
        for config in efiboot_configs(local):
            found.append((config, image_path, read_efiboot_file(local, config)))
    return found


def boot_configs(iso: str | IsoReader) -> list[BootConfig]:
    """Every boot config of the ISO (tree and inside efiboot.img) with its boot entries."""
    with opened(iso) as reader:
        return reader.boot_configs()


def edit_boot_configs(iso: str | IsoReader, workdir: str, edits: KernelArgEdits = KernelArgEdits(), *,
                      volume_id: str | None = None) -> BootConfigEdits:
    """Apply kernel-argument edits and the volume label to every boot config.

    Configs in the tree and inside each efiboot.img are edited alike (UEFI boots from a USB stick
    read the copy inside the image). Edited files are written under ``workdir``; pass
    ``replace_files`` to rewrite_iso (with ``volume_id``) to produce the ISO.
    """
    if volume_id is not None:
        check_volume_id(volume_id)
    os.makedirs(workdir, exist_ok=True)
    replace_files: dict[str, str] = {}
    changes: dict[str, list[str]] = {}
    configs: list[BootConfig] = []
    with opened(iso) as reader:
        old_label = reader.volume_id
        for config in reader.boot_configs():
            edit = edit_kernel_args(config.text, config.fmt, edits)
            lines = list(edit.changes)
            if volume_id is not None and volume_id != old_label:
                relabel: ConfigEdit = replace_volume_label(edit.text, config.fmt, old_label, volume_id)
                edit = ConfigEdit(text=relabel.text, changes=lines + relabel.changes)
            if not edit.changed:
                configs.append(config)
                continue
            configs.append(dataclasses.replace(config, entries=list_entries(edit.text, config.fmt), text=edit.text))
            if config.efiboot is None:
                local = os.path.join(workdir, "tree", config.path.strip("/"))
                os.makedirs(os.path.dirname(local), exist_ok=True)
                with open(local, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
                    handle.write(edit.text)
                replace_files[config.path] = local
                changes[config.path] = edit.changes
            else:
                image = replace_files.get(config.efiboot)
                if image is None:
                    image = os.path.join(workdir, config.efiboot.strip("/").replace("/", "_"))
                    shutil.copyfile(reader.efi_image(config.efiboot), image)
                    os.chmod(image, 0o644)
                write_efiboot_file(image, config.path, edit.text)
                replace_files[config.efiboot] = image
                changes[config.where] = edit.changes
    return BootConfigEdits(replace_files=replace_files, changes=changes, configs=configs)


__all__ = ["BootConfig", "BootConfigEdits", "BootRecords", "ElToritoEntry", "GRUB", "GRUB_LEGACY", "HybridInfo",
           "ISOLINUX", "IsoFile", "IsoReader", "IsoWriteResult", "boot_configs", "boot_records", "check_complete",
           "boot_info_table_problem", "check_replayable", "edit_boot_configs", "efi_image_paths", "find_boot_configs", "lost_boot_records",
           "opened", "read_hybrid", "rewrite_iso"]
