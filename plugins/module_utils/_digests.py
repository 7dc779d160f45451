# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""sha256 of large files, cached by (path, size, mtime, inode) so reruns do not read ISOs again."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from ._accel import cache_dir

_CHUNK = 1 << 20
_CACHE_FILE = "digests.json"
_MAX_ENTRIES = 512


def file_sha256(path: str) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: str) -> str:
    info = os.stat(path)
    return f"{os.path.realpath(path)}|{info.st_size}|{info.st_mtime_ns}|{info.st_ino}|{info.st_ctime_ns}"


def _load(cache_path: str) -> dict[str, str]:
    try:
        with open(cache_path, encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def is_cached(path: str) -> bool:
    """True when the file still has the identity (size, mtime, inode) its cached digest was taken at."""
    try:
        return _identity(path) in _load(os.path.join(cache_dir(), _CACHE_FILE))
    except OSError:
        return False


def _store(cache_path: str, entries: dict[str, str]) -> None:
    if len(entries) > _MAX_ENTRIES:
        entries = dict(list(entries.items())[-_MAX_ENTRIES:])
    try:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(cache_path), delete=False, encoding="utf-8") as handle:
            json.dump(entries, handle)
        os.replace(handle.name, cache_path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def remember(path: str, sha256: str) -> None:
    """Record the digest of a file whose content is known (e.g. moved into place after hashing)."""
    cache_path = os.path.join(cache_dir(), _CACHE_FILE)
    entries = _load(cache_path)
    entries[_identity(path)] = sha256
    _store(cache_path, entries)


def cached_sha256(path: str) -> str:
    """sha256 of a file; reuse the stored value while the file's identity (size, mtime, inode) holds."""
    cache_path = os.path.join(cache_dir(), _CACHE_FILE)
    key = _identity(path)
    entries = _load(cache_path)
    if key in entries:
        return entries[key]
    value = file_sha256(path)
    if _identity(path) != key:  # changed while read: do not remember a digest of a moving target
        return value
    entries[key] = value
    _store(cache_path, entries)
    return value
