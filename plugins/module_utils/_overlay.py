# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A qcow2 overlay over an NBD export, and what an appliance changed in it, block by block.

The appliance writes into a qcow2 file whose backing is the NBD export of the base root image and
whose cluster size is the squashfs block size: every cluster the overlay holds is a block of the
root image that changed, and the clusters it lacks are the base's blocks, untouched. ``qemu-img map``
of the overlay alone (its backing cut off) lists those clusters; their bytes are read straight from
the qcow2 file, where ``map`` says they are. No comparison of old and new images is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ._blockio import ByteSource
from ._errors import NodePluginError
from ._run import run

DEFAULT_BLOCK_SIZE = 131072  # mksquashfs's default block size
_MIN_CLUSTER = 512
_MAX_CLUSTER = 2 * 1024 * 1024  # qcow2's limits


def create_overlay(path: str, backing_uri: str, *, size: int, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
    """Create a qcow2 file at ``path`` of ``size`` bytes over the raw ``backing_uri``, one cluster per block.

    ``size`` may exceed the backing's size (a grown root image): the part beyond reads as zeros.
    The backing must be reachable now (qemu-img checks it) and whenever the overlay is opened with it.
    """
    if block_size < _MIN_CLUSTER or block_size > _MAX_CLUSTER or block_size & (block_size - 1):
        raise NodePluginError(f"a block size of {block_size} bytes cannot be a qcow2 cluster size",
                              hint=f"qcow2 clusters are powers of two from {_MIN_CLUSTER} to {_MAX_CLUSTER} bytes")
    if size <= 0 or size % 512:
        raise NodePluginError(f"an image of {size} bytes cannot be overlaid: its size is not a multiple of 512",
                              hint="a root file system image always is; the image is damaged")
    try:
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={block_size}",
             "-b", backing_uri, "-F", "raw", path, str(size)])
    except NodePluginError:
        if os.path.exists(path):
            os.unlink(path)
        raise


@dataclasses.dataclass(frozen=True)
class ChangedBlock:
    """One block of the image that the overlay holds: new content, or zeros.

    ``overlay_offset`` is where its bytes lie in the qcow2 file (None for a block of zeros);
    ``length`` is the block size, less for the image's last block.
    """

    index: int
    length: int
    zero: bool
    overlay_offset: int | None


@dataclasses.dataclass(frozen=True)
class ImageChanges:
    """What a session changed in a root image: the blocks the overlay holds and the new size.

    A block not listed here has the base's content (zeros past ``base_size``, the part a resize added).
    """

    overlay: str
    block_size: int
    base_size: int
    size: int
    blocks: tuple[ChangedBlock, ...]
    _by_index: dict[int, ChangedBlock] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_index", {block.index: block for block in self.blocks})

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(block.index for block in self.blocks)

    @property
    def block_count(self) -> int:
        """Blocks of the new image, the last one possibly short."""
        return -(-self.size // self.block_size)

    @property
    def data_bytes(self) -> int:
        """Bytes of new content (zero blocks not counted)."""
        return sum(block.length for block in self.blocks if not block.zero)

    def block(self, index: int) -> ChangedBlock | None:
        """The changed block with this index, or None when the block is the base's."""
        return self._by_index.get(index)

    def read_block(self, block: ChangedBlock) -> bytes:
        """The new content of a changed block, read from the overlay file (``block.length`` bytes)."""
        if block.zero or block.overlay_offset is None:
            return bytes(block.length)
        try:
            fd = os.open(self.overlay, os.O_RDONLY)
        except OSError as exc:
            raise NodePluginError(f"cannot open the overlay: {exc.strerror}", path=self.overlay) from exc
        try:
            data = os.pread(fd, block.length, block.overlay_offset)
        finally:
            os.close(fd)
        if len(data) != block.length:
            raise NodePluginError(f"the overlay ends inside block {block.index}", path=self.overlay,
                                  hint="the overlay was changed or truncated after the session")
        return data

    def new_image(self, base: ByteSource) -> PatchedImage:
        """The image after the session as a ByteSource: ``base`` with these changes on top."""
        return PatchedImage(base, self)


class PatchedImage:
    """A base image with the changed blocks of an overlay on top, read without copying either."""

    def __init__(self, base: ByteSource, changes: ImageChanges) -> None:
        if base.size != changes.base_size:
            raise NodePluginError(f"the base image has {base.size} bytes, the overlay was made over "
                                  f"{changes.base_size}", path=changes.overlay)
        self.base = base
        self.changes = changes

    @property
    def size(self) -> int:
        return self.changes.size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"negative read {offset}+{length}")
        end = min(offset + length, self.size)
        block_size = self.changes.block_size
        parts: list[bytes] = []
        position = offset
        while position < end:
            index = position // block_size
            block_start = index * block_size
            changed = self.changes.block(index)
            if changed is not None:
                stop = min(end, block_start + changed.length)
                content = self.changes.read_block(changed)
                parts.append(content[position - block_start:stop - block_start])
                position = stop
                continue
            # A run of unchanged blocks: one read of the base, zeros past its end.
            stop = block_start + block_size
            while stop < end and self.changes.block(stop // block_size) is None:
                stop += block_size
            stop = min(stop, end)
            from_base = max(0, min(stop, self.base.size) - position)
            if from_base:
                parts.append(self.base.read(position, from_base))
            parts.append(bytes(stop - position - from_base))
            position = stop
        return b"".join(parts)


def overlay_changes(overlay: str, *, base_size: int) -> ImageChanges:
    """The blocks an overlay holds (its clusters), read with ``qemu-img map`` of the overlay alone.

    ``base_size`` is the size of the image the overlay was made over. The backing is cut off, so the
    NBD export need not be running any more.
    """
    alone = "json:" + json.dumps({"driver": "qcow2", "backing": None,
                                  "file": {"driver": "file", "filename": os.path.abspath(overlay)}})
    info = _qemu_img_json(["info", "--output=json", alone], overlay)
    block_size = info.get("cluster-size")
    size = info.get("virtual-size")
    if info.get("format") != "qcow2" or not isinstance(block_size, int) or not isinstance(size, int):
        raise NodePluginError("the overlay is not a qcow2 image", path=overlay)
    extents = _qemu_img_json(["map", "--output=json", alone], overlay)
    blocks: list[ChangedBlock] = []
    for extent in extents:
        if "present" not in extent:
            raise NodePluginError("qemu-img map does not say which clusters the overlay holds",
                                  path=overlay, hint="install QEMU 6.2 or later (qemu-utils)")
        if not extent["present"]:
            continue
        start, length = extent["start"], extent["length"]
        if start % block_size or (length % block_size and start + length != size):
            raise NodePluginError(f"the overlay holds a range ({start}+{length}) that is not whole clusters",
                                  path=overlay, details=json.dumps(extent))
        zero = bool(extent.get("zero"))
        host = extent.get("offset")
        if not zero and (not extent.get("data") or not isinstance(host, int)):
            raise NodePluginError("the overlay holds clusters that cannot be read in place (compressed?)",
                                  path=overlay, details=json.dumps(extent))
        for first in range(start, start + length, block_size):
            blocks.append(ChangedBlock(index=first // block_size, length=min(block_size, size - first), zero=zero,
                                       overlay_offset=None if zero else host + first - start))
    return ImageChanges(overlay=overlay, block_size=block_size, base_size=base_size, size=size,
                        blocks=tuple(blocks))


def _qemu_img_json(args: list[str], overlay: str):
    output = run(["qemu-img", *args]).stdout
    try:
        return json.loads(output)
    except ValueError as exc:
        raise NodePluginError("qemu-img printed no JSON for the overlay", path=overlay,
                              details=output[:2000].decode("utf-8", "replace")) from exc
