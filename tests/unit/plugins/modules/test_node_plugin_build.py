# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_plugin_build run through ansible for real: changed, then unchanged; check mode; failures."""
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.modules import node_plugin_build
from tests.ansible_run import run_module
from tests.unit import rpmhelpers


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


def test_documentation_matches_the_argument_spec():
    import yaml  # pylint: disable=import-outside-toplevel
    options = yaml.safe_load(node_plugin_build.DOCUMENTATION)["options"]
    assert set(options) == set(node_plugin_build.ARGUMENT_SPEC)
    for name, spec in node_plugin_build.ARGUMENT_SPEC.items():
        assert options[name]["type"] == spec["type"], name
        assert options[name].get("required", False) == spec.get("required", False), name
        assert options[name].get("default") == spec.get("default"), name
        assert options[name].get("elements") == spec.get("elements"), name
        assert options[name].get("choices") == spec.get("choices"), name
