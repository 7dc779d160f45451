# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import hashlib
import os

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _digests


def test_digest_is_cached_and_follows_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "a.iso"
    target.write_bytes(b"first")
    assert _digests.cached_sha256(str(target)) == hashlib.sha256(b"first").hexdigest()
    assert (tmp_path / "cache" / "ovirt-node-plugins" / "digests.json").is_file()
    target.write_bytes(b"second!")
    os.utime(target, ns=(1, 1))
    assert _digests.cached_sha256(str(target)) == hashlib.sha256(b"second!").hexdigest()


def test_unwritable_cache_still_gives_the_digest(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    target = tmp_path / "b"
    target.write_bytes(b"data")
    assert _digests.cached_sha256(str(target)) == hashlib.sha256(b"data").hexdigest()


def test_a_cached_digest_is_read_not_computed_again(tmp_path, monkeypatch):
    """The second call must come from the cache: with the file unreadable, only the cache can answer."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "c.iso"
    target.write_bytes(b"content")
    first = _digests.cached_sha256(str(target))
    assert _digests.is_cached(str(target))

    def no_reading(_path):
        raise AssertionError("the file was read again instead of the cache")

    monkeypatch.setattr(_digests, "file_sha256", no_reading)
    assert _digests.cached_sha256(str(target)) == first


def test_remember_registers_a_moved_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "moved.iso"
    target.write_bytes(b"moved")
    _digests.remember(str(target), hashlib.sha256(b"moved").hexdigest())
    assert _digests.is_cached(str(target))
    monkeypatch.setattr(_digests, "file_sha256", lambda _path: "not from the cache")
    assert _digests.cached_sha256(str(target)) == hashlib.sha256(b"moved").hexdigest()
