# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Random access to bytes that are not a whole local file: the interface the lazy readers share.

A ``ByteSource`` is anything with a ``size`` and ``read(offset, length)``: a region of a local file
(``LiveOS/squashfs.img`` inside an ISO, read in place), a file inside a squashfs (decompressed block
by block, on demand), or a file system image served to an appliance over NBD. Readers of formats
(squashfs, ext) take a ByteSource, so that no stage has to unpack an image to read a few blocks of it.
"""

from __future__ import annotations

import os
from typing import Protocol

from ._errors import NodePluginError


class ByteSource(Protocol):
    """Bytes addressed by offset. ``read`` returns exactly ``length`` bytes, fewer only at the end."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class FileRegion:
    """``size`` bytes of a local file from ``offset`` on (the whole file by default), read with pread.

    The file stays open until ``close()`` (or the end of a ``with`` block); reads are thread-safe.
    """

    def __init__(self, path: str, offset: int = 0, size: int | None = None) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise NodePluginError(f"cannot open: {exc.strerror}", path=path) from exc
        total = os.fstat(self._fd).st_size
        if size is None:
            size = total - offset
        if offset < 0 or size < 0 or offset + size > total:
            os.close(self._fd)
            raise NodePluginError(f"the region {offset}+{size} lies outside the file ({total} bytes)", path=path,
                                  hint="the file is truncated; copy or download it again")
        self.path = path
        self.offset = offset
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"negative read {offset}+{length}")
        length = max(0, min(length, self._size - offset))
        chunks = []
        position = self.offset + offset
        while length > 0:
            chunk = os.pread(self._fd, length, position)
            if not chunk:
                raise NodePluginError(f"the file ended early at byte {position}", path=self.path,
                                      hint="the file is truncated or was changed while it was read")
            chunks.append(chunk)
            position += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileRegion:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
