# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Node ISO opened once, carrying its facts through every stage (extract, apply, verify, PXE).

``NodeIso`` is an ``IsoReader`` (one pycdlib open) that also knows, computed on first use and kept:
the squashfs superblock and extent, the Node's version (isolinux/version, else the volume id), the
build record of an earlier edit, the numbers of earlier ``isolinux/updateN`` folders, and the ISO's
sha256. No stage goes back to the path to ask again.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re

from . import _records as records
from ._digests import cached_sha256
from ._errors import NodePluginError
from ._iso import IsoReader
from ._blockio import FileRegion
from ._extfs import ExtFilesystem
from ._liveos import SQUASHFS_PATH, SquashfsSuperblock, find_root_image_path, squashfs_extent, squashfs_superblock
from ._nodeinfo import NodeInfo, node_info
from ._squashfs import SquashfsImage

_UPDATE_DIR = re.compile(r"^/isolinux/update(\d+)$")
_MAX_BUILD_RECORD = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class SquashfsFacts:
    """LiveOS/squashfs.img: its superblock and where its bytes lie in the ISO file."""

    superblock: SquashfsSuperblock
    offset: int
    size: int


@dataclasses.dataclass(frozen=True)
class RecordState:
    """The build record of an ISO: the record, or why there is none (``problem``)."""

    record: records.BuildRecord | None
    problem: str | None


class NodeIso(IsoReader):
    """A Node ISO opened read-only, once; use as a context manager (see the module docstring)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._squashfs: SquashfsFacts | None = None
        self._node: NodeInfo | None = None
        self._record_state: RecordState | None = None
        self._sha256: str | None = None
        self._region: FileRegion | None = None
        self._squashfs_image: SquashfsImage | None = None
        self._root_fs: ExtFilesystem | None = None

    def __enter__(self) -> NodeIso:
        return self

    def close(self) -> None:
        super().close()
        if self._region is not None:
            self._region.close()
            self._region = None

    def squashfs_image(self) -> SquashfsImage:
        """LiveOS/squashfs.img read in place (nothing copied; blocks decompressed when read)."""
        if self._squashfs_image is None:
            facts = self.squashfs
            self._region = FileRegion(self.path, facts.offset, facts.size)
            self._squashfs_image = SquashfsImage(self._region, name=f"{self.path}:{SQUASHFS_PATH}")
        return self._squashfs_image

    def root_filesystem(self) -> ExtFilesystem:
        """The root file system (ext3fs.img or rootfs.img), read lazily out of the squashfs.

        Reading a few files of it (the rpm database, a version file) costs the blocks they use, not
        an unpacking of the whole image.
        """
        if self._root_fs is None:
            squashfs = self.squashfs_image()
            root_path = find_root_image_path(squashfs, source=f"{self.path}:{SQUASHFS_PATH}")
            self._root_fs = ExtFilesystem(squashfs.open_file(root_path), name=f"{self.path}:{root_path.lstrip('/')}")
        return self._root_fs

    @property
    def squashfs(self) -> SquashfsFacts:
        """LiveOS/squashfs.img's superblock and extent (a clear error when the ISO has none)."""
        if self._squashfs is None:
            superblock = squashfs_superblock(self)
            offset, size = squashfs_extent(self)
            self._squashfs = SquashfsFacts(superblock=superblock, offset=offset, size=size)
        return self._squashfs

    @property
    def node(self) -> NodeInfo:
        """Product, version and release from isolinux/version, else from the volume id."""
        if self._node is None:
            self._node = node_info(self)
        return self._node

    @property
    def sha256(self) -> str:
        """sha256 of the ISO file (cached by file identity across runs)."""
        if self._sha256 is None:
            self._sha256 = cached_sha256(self.path)
        return self._sha256

    @property
    def build_record(self) -> RecordState:
        """The build record an earlier node_plugin_apply left in the ISO, or why there is none."""
        if self._record_state is None:
            self._record_state = self._read_build_record()
        return self._record_state

    def _read_build_record(self) -> RecordState:
        if not self.exists(records.BUILD_RECORD_ISO_PATH):
            return RecordState(None, f"no build record ({records.BUILD_RECORD_ISO_PATH}): the ISO was not built "
                                     "by node_plugin_apply")
        if self.size(records.BUILD_RECORD_ISO_PATH) > _MAX_BUILD_RECORD:
            return RecordState(None, f"the build record {records.BUILD_RECORD_ISO_PATH} is larger than "
                                     f"{_MAX_BUILD_RECORD} bytes")
        try:
            content = self.read_bytes(records.BUILD_RECORD_ISO_PATH)
            return RecordState(records.BuildRecord.from_json(content, f"{self.path}:{records.BUILD_RECORD_ISO_PATH}"),
                               None)
        except NodePluginError as exc:
            return RecordState(None, exc.message)

    def update_numbers(self) -> list[int]:
        """N of every isolinux/updateN folder (earlier edits), ascending."""
        return sorted(int(match.group(1)) for entry in self.walk()
                      if entry.is_dir and (match := _UPDATE_DIR.match(entry.path)))

    def next_update_number(self) -> int:
        """N for the isolinux/updateN folder of a new edit: one more than the highest existing."""
        return max(self.update_numbers(), default=0) + 1

    def updates(self) -> list[dict]:
        """Earlier edits in order, with the files each updateN folder holds."""
        found: dict[int, list[str]] = {number: [] for number in self.update_numbers()}
        for entry in self.walk():
            parent = entry.path.rsplit("/", 1)[0]
            match = _UPDATE_DIR.match(parent)
            if match and not entry.is_dir and int(match.group(1)) in found:
                found[int(match.group(1))].append(entry.path.rsplit("/", 1)[1])
        return [{"number": number, "path": f"/isolinux/update{number}", "files": sorted(files)}
                for number, files in sorted(found.items())]

    def has_squashfs(self) -> bool:
        return self.exists(SQUASHFS_PATH)

    def boot_files(self) -> list[str]:
        """Every file the boot chain reads: El Torito images, loaders and their modules, configs,
        the kernels and initrds the boot entries name, EFI images, the boot catalog, the version file."""
        found = {entry.path for entry in self.boot_records().el_torito if entry.path}
        for config in self.boot_configs():
            if config.efiboot:
                found.add(config.efiboot)
                continue
            found.add(config.path)
            for entry in config.entries:
                for name in (entry.kernel, *(entry.initrd or "").split(",")):
                    if name and not name.startswith(("(", "$")):
                        found.add(iso_path_of(config.path, name))
        for iso_file in self.files():
            lower = iso_file.path.lower()
            if lower.startswith("/efi/boot/") or lower.endswith((".c32", "/isolinux.bin", "/boot.cat",
                                                                "/efiboot.img", "/macboot.img")):
                found.add(iso_file.path)
        found.add("/isolinux/version")
        return sorted(path for path in found if self.exists(path))


def iso_path_of(config_path: str, name: str) -> str:
    """The ISO path a boot config names: absolute, or relative to the config's folder (isolinux)."""
    path = name if name.startswith("/") else posixpath.join(posixpath.dirname(config_path), name)
    return posixpath.normpath(path)
