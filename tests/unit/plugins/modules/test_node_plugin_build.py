# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_plugin_build run through ansible for real: changed, then unchanged; check mode; failures."""
from __future__ import annotations

import os

import pytest

from tests.ansible_run import run_module
from tests.unit import rpmhelpers
from tests.unit.plugins.modules.faults import one_line_without_traceback, read_only_folder
from tests.unit.plugins.modules.module_docs import assert_returns_documented


@pytest.fixture(scope="module")
def rpms():
    return rpmhelpers.standard_rpms()


def _ansible(args: dict, *extra: str) -> dict:
    return run_module("node_plugin_build", args, *extra, timeout=300)


@pytest.fixture
def args(tmp_path, rpms):
    return {"name": "agent", "version": "1.0", "vendor": "Example", "rpms": [rpms.by_name["agent"]],
            "repos": [rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms)],
            "target_packages": rpmhelpers.image_packages_file(str(tmp_path)), "node_versions": ">=2.5.0, <2.6",
            "persist": ["/etc/agent/agent.conf"], "output": str(tmp_path / "dist") + "/"}


def test_changed_then_unchanged(args, tmp_path):
    (tmp_path / "dist").mkdir()
    first = _ansible(args)
    assert first["changed"] is True and first["status"] == "CHANGED", first
    path = str(tmp_path / "dist" / "agent-1.0.plugin.tar.gz")
    assert first["path"] == path and os.path.getsize(path) == first["size"]
    assert [(p["name"], p["nevra"], p["role"]) for p in first["packages"]] == [
        ("agent", "agent-1.0-1.noarch", "plugin"), ("agent-lib", "agent-lib-1.0-1.noarch", "dependency")]
    assert first["manifest"]["persist"] == ["/etc/agent/agent.conf"]
    assert_returns_documented("node_plugin_build", first)
    mtime = os.stat(path).st_mtime_ns
    second = _ansible(args)
    assert second["changed"] is False and second["status"] == "SUCCESS" and second["sha256"] == first["sha256"]
    assert os.stat(path).st_mtime_ns == mtime  # not rewritten


def test_check_mode_writes_nothing(args, tmp_path):
    (tmp_path / "dist").mkdir()
    planned = _ansible(args, "--check")
    assert planned["changed"] is True and planned["sha256"]
    assert os.listdir(tmp_path / "dist") == []


def test_failure_is_a_message(args, rpms, tmp_path):
    (tmp_path / "dist").mkdir()
    failed = _ansible({**args, "rpms": [rpms.by_name["bad-paths"]]})
    assert failed["status"] == "FAILED!"
    assert "exception" not in failed["stderr_of_ansible"].lower()  # a message, not a traceback
    assert "would be installed outside the paths a plugin may use" in failed["msg"]
    assert "/var/lib/bad/state" in failed["msg"] and "Traceback" not in failed["msg"]
    both = _ansible({**args, "target_iso": "/nonexistent.iso"})
    assert both["status"] == "FAILED!" and "mutually exclusive" in both["msg"]


def test_a_read_only_output_folder_is_named_with_a_hint(args, tmp_path):
    with read_only_folder(str(tmp_path / "ro")) as out:
        failed = _ansible({**args, "output": out + "/"})
    assert failed["status"] == "FAILED!" and "exception" not in failed
    message = one_line_without_traceback(failed["msg"])
    assert message.startswith(f"{out}/.agent-1.0.plugin.tar.gz"), message
    assert f": read-only file system ({tmp_path}/ro is mounted read-only: mount it read-write or choose another " \
           "output)" in message


def test_an_output_in_proc_is_named_with_a_hint(args):
    failed = _ansible({**args, "output": "/proc/"})
    message = one_line_without_traceback(failed["msg"])
    assert message.startswith("/proc/.agent-1.0.plugin.tar.gz") and "no such file or directory" in message
    assert "/proc is the kernel's proc file system, which holds no files: choose another output" in message


def test_a_missing_tmpdir_is_named(args, tmp_path, monkeypatch):
    (tmp_path / "dist").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    failed = _ansible(args)
    assert one_line_without_traceback(failed["msg"]) == \
        f"{tmp_path}/gone: TMPDIR names no existing folder (create it, or set TMPDIR to another folder or unset it)"
    assert os.listdir(tmp_path / "dist") == []


def test_a_missing_library_is_named_by_missing_required_lib(args, tmp_path):
    """The system Python has rpm and solv but not jsonschema (pip-installed in the venv only)."""
    (tmp_path / "dist").mkdir()
    failed = _ansible(args, "-e", "ansible_python_interpreter=/usr/bin/python3")
    assert failed["status"] == "FAILED!"
    assert failed["msg"].startswith("Failed to import the required Python library (jsonschema) on ")
    assert "This is required to check plugin manifests (install: pip install jsonschema)." in failed["msg"]
