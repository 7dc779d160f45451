# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LiveOS layout of a Node ISO: LiveOS/squashfs.img holding LiveOS/ext3fs.img (or rootfs.img).

The squashfs superblock is read straight from the ISO; the root image comes out of the squashfs
with ``unsquashfs`` (only that one file) when a caller wants it on disk; files of a root image are
read with the ext reader (_extfs), without root and without mounting anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

from ._blockio import FileRegion
from ._errors import NodePluginError
from ._extfs import ExtFilesystem
from ._iso import IsoReader, opened
from ._run import run
from ._squashfs import SUPERBLOCK_SIZE, SquashfsImage, SquashfsSuperblock, parse_superblock

SQUASHFS_PATH = "/LiveOS/squashfs.img"
OSMIN_PATH = "/LiveOS/osmin.img"
ROOT_IMAGE_NAMES = ("ext3fs.img", "rootfs.img")


@dataclasses.dataclass(frozen=True)
class LiveOsFacts:
    """What the LiveOS folder of an ISO holds."""

    squashfs_path: str
    squashfs_size: int
    superblock: SquashfsSuperblock
    root_image_name: str
    root_image_size: int
    osmin: bool


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


@contextlib.contextmanager
def open_root_image(root_image: str) -> Iterator[ExtFilesystem]:
    """An ext root image file (ext3fs.img, rootfs.img on disk) opened with the ext reader for the block."""
    with FileRegion(root_image) as source:
        yield ExtFilesystem(source, name=root_image)


def read_root_file(root_image: str, path: str, *, limit: int = 64 << 20) -> bytes:
    """The content of one file of an ext root image file (symlinks inside the image followed)."""
    with open_root_image(root_image) as root:
        return root.read_file(path, limit=limit)
