# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Implant and check the md5 that isomd5sum keeps in the ISO's primary volume descriptor.

Byte-compatible with ``implantisomd5``/``checkisomd5`` (and with ``rd.live.check`` at boot): the
MD5 covers the volume minus its last 15 sectors, with the 512-byte Application Use field read as
spaces, hashed in 32 KiB reads; after each read that starts a new twenty-first of the covered size,
the running digest is finalized on a copy and one hex character per byte of its first three bytes
is recorded as that fragment's sum. The file is streamed, never loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

from ._errors import NodePluginError

SECTOR_SIZE = 2048
SKIP_SECTORS = 15
FRAGMENT_COUNT = 20
FRAGMENT_SUM_SIZE = 60
CHUNK_SIZE = 32768
APPDATA_OFFSET = 883  # in the primary volume descriptor
APPDATA_SIZE = 512
_VOLUME_SIZE_OFFSET = 80
_FIRST_DESCRIPTOR_SECTOR = 16
# Below this covered size some fragments start inside one 32 KiB read and the C tools write (and
# then reject) a short FRAGMENT SUMS value.
MIN_COVERED_SIZE = CHUNK_SIZE * (FRAGMENT_COUNT + 1)

_FIELD_RE = {
    "md5": re.compile(rb"ISO MD5SUM = ([0-9a-fA-F]{32})"),
    "skip": re.compile(rb"SKIPSECTORS = (\d+)"),
    "fragment_sums": re.compile(rb"FRAGMENT SUMS = ([0-9a-f]+)"),
    "fragment_count": re.compile(rb"FRAGMENT COUNT = (\d+)"),
}


@dataclasses.dataclass(frozen=True)
class Md5Field:
    """Where the isomd5sum field sits in an ISO and what it holds."""

    pvd_offset: int
    volume_size: int
    raw: bytes

    @property
    def field_offset(self) -> int:
        return self.pvd_offset + APPDATA_OFFSET

    @property
    def blank(self) -> bool:
        return self.raw == b" " * APPDATA_SIZE


@dataclasses.dataclass(frozen=True)
class Md5Check:
    """Result of checking an ISO: implanted is False when the field holds no isomd5sum data."""

    implanted: bool
    valid: bool | None
    md5: str | None = None
    computed_md5: str | None = None
    fragment_sums: str | None = None
    computed_fragment_sums: str | None = None
    first_bad_fragment: int | None = None


def read_field(iso: str) -> Md5Field:
    """Locate the primary volume descriptor of ``iso`` and read its size and Application Use field."""
    try:
        with open(iso, "rb") as handle:
            offset = _FIRST_DESCRIPTOR_SECTOR * SECTOR_SIZE
            while True:
                handle.seek(offset)
                descriptor = handle.read(SECTOR_SIZE)
                if len(descriptor) < SECTOR_SIZE or descriptor[1:6] != b"CD001":
                    raise NodePluginError("not an ISO 9660 image (no volume descriptor at sector 16)",
                                          path=iso, hint="pass the path of an .iso file")
                if descriptor[0] == 1:
                    break
                if descriptor[0] == 255:
                    raise NodePluginError("the ISO has no primary volume descriptor", path=iso,
                                          hint="the image is damaged; use the original ISO")
                offset += SECTOR_SIZE
    except OSError as exc:
        raise NodePluginError(f"cannot read the ISO: {exc.strerror}", path=iso) from exc
    volume_size = SECTOR_SIZE * int.from_bytes(descriptor[_VOLUME_SIZE_OFFSET:_VOLUME_SIZE_OFFSET + 4], "little")
    raw = descriptor[APPDATA_OFFSET:APPDATA_OFFSET + APPDATA_SIZE]
    return Md5Field(pvd_offset=offset, volume_size=volume_size, raw=raw)


def _covered_size(iso: str, field: Md5Field) -> int:
    covered = field.volume_size - SKIP_SECTORS * SECTOR_SIZE
    actual = os.path.getsize(iso)
    if actual < field.volume_size:
        raise NodePluginError(f"the ISO is truncated: its volume descriptor says {field.volume_size} bytes "
                              f"but the file has {actual}", path=iso,
                              hint="copy or download the ISO again")
    if covered < MIN_COVERED_SIZE:
        raise NodePluginError(f"the ISO is too small for isomd5sum ({field.volume_size} bytes): under "
                              f"{MIN_COVERED_SIZE + SKIP_SECTORS * SECTOR_SIZE} bytes the fragment sums "
                              "come out short and checkisomd5 rejects them", path=iso,
                              hint="do not implant an md5 into images this small")
    return covered


def _digest_volume(iso: str, field: Md5Field) -> tuple[str, str]:
    """The MD5 (hex) and the fragment sums of ``iso``, computed the way isomd5sum does."""
    covered = _covered_size(iso, field)
    fragment_size = covered // (FRAGMENT_COUNT + 1)
    per_fragment = FRAGMENT_SUM_SIZE // FRAGMENT_COUNT
    sums = [""] * FRAGMENT_COUNT
    field_start, field_end = field.field_offset, field.field_offset + APPDATA_SIZE
    md5 = hashlib.md5()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    previous_fragment = 0
    offset = 0
    with open(iso, "rb", buffering=0) as handle:
        while offset < covered:
            wanted = min(covered - offset, CHUNK_SIZE)
            got = handle.readinto(view[:wanted])
            if not got:
                break
            if offset < field_end and offset + got > field_start:
                start = max(field_start, offset) - offset
                end = min(field_end, offset + got) - offset
                view[start:end] = b" " * (end - start)
            md5.update(view[:got])
            fragment = offset // fragment_size
            if fragment != previous_fragment:
                if fragment > FRAGMENT_COUNT:
                    raise NodePluginError("the ISO's size puts a read beyond the last fragment, which "
                                          "isomd5sum cannot represent", path=iso,
                                          hint="pad the ISO by one sector and try again")
                snapshot = md5.copy().digest()
                sums[fragment - 1] = "".join(format(byte, "x")[0] for byte in snapshot[:per_fragment])
                previous_fragment = fragment
            offset += got
    if offset < covered:
        raise NodePluginError("the ISO ended before its volume size", path=iso,
                              hint="copy or download the ISO again")
    return md5.hexdigest(), "".join(sums)


def _field_text(md5_hex: str, fragment_sums: str) -> bytes:
    text = (f"ISO MD5SUM = {md5_hex};SKIPSECTORS = {SKIP_SECTORS};RHLISOSTATUS=0;"
            f"FRAGMENT SUMS = {fragment_sums};FRAGMENT COUNT = {FRAGMENT_COUNT};"
            "THIS IS NOT THE SAME AS RUNNING MD5SUM ON THIS ISO!!").encode("ascii")
    return text.ljust(APPDATA_SIZE, b" ")


def implant(iso: str, *, force: bool = False) -> str:
    """Implant the isomd5sum md5 into ``iso`` in place; return the MD5 hex digest written.

    Refuses a field that already holds data unless ``force`` (the C tool's ``-f``).
    """
    field = read_field(iso)
    if not field.blank and not force:
        raise NodePluginError("the ISO's Application Use field is already in use; not implanting an md5",
                              path=iso, hint="use force to overwrite it (an existing md5 will be replaced)")
    md5_hex, fragment_sums = _digest_volume(iso, field)
    try:
        with open(iso, "r+b") as handle:
            handle.seek(field.field_offset)
            handle.write(_field_text(md5_hex, fragment_sums))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise NodePluginError(f"cannot write the md5 into the ISO: {exc.strerror}", path=iso,
                              hint="check that the file is writable") from exc
    return md5_hex


def check(iso: str) -> Md5Check:
    """Verify the implanted md5 of ``iso`` like checkisomd5; ``implanted`` False when there is none."""
    field = read_field(iso)
    found = {key: pattern.search(field.raw) for key, pattern in _FIELD_RE.items()}
    if not found["md5"]:
        return Md5Check(implanted=False, valid=None)
    stored_md5 = found["md5"].group(1).decode("ascii").lower()
    skip = int(found["skip"].group(1)) if found["skip"] else 0
    if skip != SKIP_SECTORS:
        raise NodePluginError(f"the implanted md5 uses SKIPSECTORS = {skip}; only {SKIP_SECTORS} is supported",
                              path=iso, hint="re-implant the md5 with force")
    stored_sums = found["fragment_sums"].group(1).decode("ascii") if found["fragment_sums"] else None
    md5_hex, computed_sums = _digest_volume(iso, field)
    first_bad = None
    if stored_sums is not None:
        per_fragment = FRAGMENT_SUM_SIZE // FRAGMENT_COUNT
        for index in range(FRAGMENT_COUNT):
            part = slice(index * per_fragment, (index + 1) * per_fragment)
            if stored_sums[part] != computed_sums[part]:
                first_bad = index + 1
                break
    valid = md5_hex == stored_md5 and first_bad is None
    return Md5Check(implanted=True, valid=valid, md5=stored_md5, computed_md5=md5_hex,
                    fragment_sums=stored_sums, computed_fragment_sums=computed_sums,
                    first_bad_fragment=first_bad)
