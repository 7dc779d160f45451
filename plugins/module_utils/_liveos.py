# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LiveOS layout of a Node ISO: LiveOS/squashfs.img holding LiveOS/ext3fs.img (or rootfs.img).

The squashfs superblock is parsed here, streamed straight from the ISO; the root image comes out
of the squashfs with ``unsquashfs`` (only that one file); files of the ext root image are read
with ``debugfs`` (e2fsprogs), without root and without mounting anything.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shutil
import tempfile

from ._errors import NodePluginError
from ._iso import IsoReader, opened
from ._run import run
from ._squashfs import SUPERBLOCK_SIZE, SquashfsImage, SquashfsSuperblock, parse_superblock

SQUASHFS_PATH = "/LiveOS/squashfs.img"
OSMIN_PATH = "/LiveOS/osmin.img"
ROOT_IMAGE_NAMES = ("ext3fs.img", "rootfs.img")
_MAX_LINKS = 8


@dataclasses.dataclass(frozen=True)
class LiveOsFacts:
    """What the LiveOS folder of an ISO holds."""

    squashfs_path: str
    squashfs_size: int
    superblock: SquashfsSuperblock
    root_image_name: str
    root_image_size: int
    osmin: bool


@dataclasses.dataclass(frozen=True)
class RootDirEntry:
    """One entry of a folder of the ext root image, as debugfs lists it."""

    name: str
    mode: int
    size: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == 0o040000

    @property
    def is_file(self) -> bool:
        return self.mode & 0o170000 == 0o100000


def _require_squashfs(reader: IsoReader) -> int:
    if not reader.exists(SQUASHFS_PATH):
        present = sorted(entry.path for entry in reader.walk() if entry.path.count("/") == 1)
        raise NodePluginError("not a LiveOS ISO: LiveOS/squashfs.img is missing", path=reader.path,
                              hint=f"expected a Node (Fedora LiveCD layout) ISO; its top level holds {', '.join(present)}")
    return reader.size(SQUASHFS_PATH)


def squashfs_superblock(iso: str | IsoReader) -> SquashfsSuperblock:
    """The superblock of LiveOS/squashfs.img, read straight from the ISO (96 bytes)."""
    with opened(iso) as reader:
        size = _require_squashfs(reader)
        data = reader.read_bytes(SQUASHFS_PATH, SUPERBLOCK_SIZE)
    superblock = parse_superblock(data, source=f"{reader.path}:{SQUASHFS_PATH}")
    if superblock.bytes_used > size:
        raise NodePluginError(f"LiveOS/squashfs.img is cut short ({size} bytes, its superblock says "
                              f"{superblock.bytes_used})", path=reader.path, hint="copy or download the ISO again")
    return superblock


_LLS_LINE = re.compile(r"^(?P<mode>[-dlcbps][-rwxsStT]{9})\s+\S+\s+(?P<size>\d+|\d+,\s*\d+)\s+\S+\s+\S+\s+"
                       r"squashfs-root(?P<path>/.*)$")


def squashfs_extent(iso: str | IsoReader) -> tuple[int, int]:
    """(offset, size) of LiveOS/squashfs.img inside the ISO file: unsquashfs reads it in place."""
    with opened(iso) as reader:
        _require_squashfs(reader)
        return reader.extent(SQUASHFS_PATH)


def _offset_args(offset: int) -> list[str]:
    return ["-o", str(offset)] if offset else []


def list_squashfs(squashfs: str, *, offset: int = 0) -> dict[str, int]:
    """Path -> size of every regular file in a squashfs image (``unsquashfs -lls``), at ``offset`` in the file."""
    result = run(["unsquashfs", "-lls", "-no-progress", *_offset_args(offset), squashfs], check=False)
    if result.returncode != 0:
        raise NodePluginError("unsquashfs cannot read the squashfs image", path=squashfs,
                              hint="the image is damaged or uses a compressor this unsquashfs lacks",
                              details=(result.stderr or b"").decode("utf-8", "replace").strip()[-2000:])
    files = {}
    for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
        match = _LLS_LINE.match(line)
        if match and match.group("mode").startswith("-"):
            files[match.group("path")] = int(match.group("size"))
    return files


def find_root_image(files: dict[str, int], *, source: str) -> tuple[str, int]:
    """(name, size) of the root filesystem image inside the squashfs listing."""
    for name in ROOT_IMAGE_NAMES:
        if f"/LiveOS/{name}" in files:
            return name, files[f"/LiveOS/{name}"]
    raise NodePluginError("not a LiveOS squashfs: it holds neither LiveOS/ext3fs.img nor LiveOS/rootfs.img",
                          path=source, hint=f"its files are: {', '.join(sorted(files)[:10]) or 'none'}")


def find_root_image_path(squashfs: SquashfsImage, *, source: str) -> str:
    """The path of the root file system image inside a squashfs (/LiveOS/ext3fs.img or /LiveOS/rootfs.img)."""
    for name in ROOT_IMAGE_NAMES:
        path = f"/LiveOS/{name}"
        try:
            if squashfs.lookup(path).is_file:
                return path
        except NodePluginError:
            continue
    names = sorted(entry.path for entry in itertools.islice(squashfs.walk(), 20))
    raise NodePluginError("not a LiveOS squashfs: it holds neither LiveOS/ext3fs.img nor LiveOS/rootfs.img",
                          path=source, hint=f"its files are: {', '.join(names) or 'none'}")


def inspect_live_os(iso: str | IsoReader) -> LiveOsFacts:
    """Facts of the LiveOS folder: superblock, root image name and size (read in place), osmin.img."""
    with opened(iso) as reader:
        superblock = squashfs_superblock(reader)
        offset, size = reader.extent(SQUASHFS_PATH)
        osmin = reader.exists(OSMIN_PATH)
    name, root_size = find_root_image(list_squashfs(reader.path, offset=offset),
                                      source=f"{reader.path}:{SQUASHFS_PATH}")
    return LiveOsFacts(squashfs_path=SQUASHFS_PATH, squashfs_size=size, superblock=superblock,
                       root_image_name=name, root_image_size=root_size, osmin=osmin)


def extract_root_image(iso: str | IsoReader, dest_dir: str, *, squashfs: str | None = None) -> str:
    """Unpack LiveOS/<root image> from the ISO's squashfs into ``dest_dir``; returns its path.

    unsquashfs reads the squashfs in place inside the ISO (no copy); ``squashfs`` names a local
    squashfs file to read instead. The image is unpacked next to its final place and renamed, so a
    failure leaves nothing behind.
    """
    iso_path = iso.path if isinstance(iso, IsoReader) else iso
    if squashfs is None:
        source, offset = iso_path, squashfs_extent(iso)[0]
    else:
        source, offset = squashfs, 0
    name, _size = find_root_image(list_squashfs(source, offset=offset), source=f"{iso_path}:{SQUASHFS_PATH}")
    os.makedirs(dest_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".root-image-", dir=dest_dir)
    try:
        unpacked = os.path.join(staging, "root")
        result = run(["unsquashfs", "-no-progress", *_offset_args(offset), "-d", unpacked, source, f"/LiveOS/{name}"],
                     check=False)
        image = os.path.join(unpacked, "LiveOS", name)
        if result.returncode != 0 or not os.path.isfile(image):
            raise NodePluginError(f"cannot unpack LiveOS/{name} from the squashfs", path=iso_path,
                                  hint="check free space in the destination; the squashfs may be damaged",
                                  details=(result.stderr or b"").decode("utf-8", "replace").strip()[-2000:])
        target = os.path.join(dest_dir, name)
        os.replace(image, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _debugfs(root_image: str, command: str) -> tuple[str, str]:
    result = run(["debugfs", "-R", command, root_image], check=False)
    stderr = (result.stderr or b"").decode("utf-8", "replace")
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("debugfs ")]
    if result.returncode != 0 or any("while trying to open" in line or "Bad magic" in line for line in lines):
        raise NodePluginError("debugfs cannot open the root image (not an ext2/3/4 file system?)", path=root_image,
                              hint="extract the root image again", details="\n".join(lines))
    return result.stdout.decode("utf-8", "surrogateescape"), "\n".join(lines)


def _stat_type(root_image: str, path: str) -> tuple[str | None, str | None]:
    """(type, symlink target) of a path in the image; type None when it does not exist."""
    out, err = _debugfs(root_image, f'stat "{path}"')
    if "File not found" in err or not out:
        return None, None
    kind = re.search(r"Type: (\S+)", out)
    target = re.search(r'Fast link dest: "(.*)"', out)
    return (kind.group(1) if kind else None), (target.group(1) if target else None)


def _resolve(root_image: str, path: str) -> str:
    """Follow symlinks inside the image (never out of it): absolute targets are image paths."""
    for _hop in range(_MAX_LINKS):
        kind, target = _stat_type(root_image, path)
        if kind is None:
            raise NodePluginError(f"{path} does not exist in the root image", path=root_image)
        if kind != "symlink":
            return path
        if target is None:
            raise NodePluginError(f"{path} is a long symlink, which this reader does not follow", path=root_image)
        path = os.path.normpath(target if target.startswith("/") else os.path.join(os.path.dirname(path), target))
    raise NodePluginError(f"too many levels of symlinks at {path}", path=root_image)


def _check_image_path(path: str) -> None:
    if not path.startswith("/") or any(char in path for char in '"\n'):
        raise NodePluginError(f"invalid path in the root image: {path!r}", hint="give an absolute path")


def read_root_file(root_image: str, path: str) -> bytes:
    """The content of one file of the ext root image (symlinks inside the image followed)."""
    _check_image_path(path)
    real = _resolve(root_image, path)
    with tempfile.TemporaryDirectory(prefix="node-rootfile-") as tmp:
        out = os.path.join(tmp, "file")
        _stdout, err = _debugfs(root_image, f'dump "{real}" "{out}"')
        if not os.path.isfile(out):
            raise NodePluginError(f"cannot read {path} from the root image", path=root_image, details=err)
        with open(out, "rb") as handle:
            return handle.read()


def list_root_dir(root_image: str, path: str) -> list[RootDirEntry] | None:
    """Entries of a folder of the root image (without . and ..), or None when it does not exist."""
    _check_image_path(path)
    kind, _target = _stat_type(root_image, path)
    if kind is None:
        return None
    real = _resolve(root_image, path)
    out, _err = _debugfs(root_image, f'ls -p "{real}"')
    entries = []
    for line in out.splitlines():
        # /inode/mode/uid/gid/name/size/ -- a name may itself hold '/'-free text only.
        parts = line.strip().split("/")
        if len(parts) < 7 or parts[5] in (".", ".."):
            continue
        size = int(parts[6]) if parts[6].isdigit() else 0
        entries.append(RootDirEntry(name=parts[5], mode=int(parts[2], 8), size=size))
    return entries


def dump_root_tree(root_image: str, path: str, dest_dir: str) -> str:
    """Copy a folder of the root image to ``dest_dir``/<basename> (``debugfs rdump``); returns that path."""
    _check_image_path(path)
    real = _resolve(root_image, path)
    os.makedirs(dest_dir, exist_ok=True)
    _stdout, err = _debugfs(root_image, f'rdump "{real}" "{dest_dir}"')
    target = os.path.join(dest_dir, os.path.basename(real.rstrip("/")))
    if not os.path.isdir(target):
        raise NodePluginError(f"cannot copy {path} out of the root image", path=root_image, details=err)
    return target
