# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _accel
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError


def test_explicit_tcg_forces_tcg_in_libguestfs(monkeypatch):
    monkeypatch.setenv(_accel.SETTING, "tcg")
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "")
    assert _accel.qemu_accel_args() == ["-machine", "accel=tcg"]
    assert _accel.libguestfs_env()["LIBGUESTFS_BACKEND_SETTINGS"] == "force_tcg"


def test_explicit_kvm_leaves_libguestfs_settings_alone(monkeypatch):
    monkeypatch.setenv(_accel.SETTING, "kvm")
    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    assert "LIBGUESTFS_BACKEND_SETTINGS" not in _accel.libguestfs_env()
    assert _accel.qemu_accel_args()[:2] == ["-machine", "accel=kvm"]


def test_existing_backend_settings_are_kept(monkeypatch):
    monkeypatch.setenv(_accel.SETTING, "tcg")
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "network_bridge=br0")
    assert _accel.libguestfs_env()["LIBGUESTFS_BACKEND_SETTINGS"] == "network_bridge=br0:force_tcg"


def test_invalid_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(_accel.SETTING, "hvf")
    with pytest.raises(NodePluginError, match="not a valid accelerator"):
        _accel.accelerator()


def test_auto_probe_is_cached_per_machine(monkeypatch, tmp_path):
    monkeypatch.setenv(_accel.SETTING, "auto")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_accel, "_decided", None)
    first = _accel.accelerator()
    assert first in ("tcg", "kvm")
    if _accel._qemu_binary() and _accel._probe_kernel() and os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert list((tmp_path / "ovirt-node-plugins").glob("accel-*"))
