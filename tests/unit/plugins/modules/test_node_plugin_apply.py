# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_plugin_apply run through ansible on the fixture ISO: check and diff mode, and failures as messages.

A full rebuild through the engine is tested in tests/integration/test_apply.py; here the module's own
part: options to the engine, results and diff back, every failure a one-line msg.
"""
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from tests.ansible_run import run_module
from tests.unit.plugins.modules.faults import deeply_nested_plugin, one_line_without_traceback, read_only_folder
from tests.unit.plugins.modules.module_docs import assert_returns_documented


def _ansible(args: dict, *extra: str) -> dict:
    return run_module("node_plugin_apply", args, *extra, timeout=600)


@pytest.fixture(scope="module")
def plugin(node_iso, example_rpms, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    return build_plugin(PluginBuildRequest(
        name="vendor-agent", version="1.0", rpms=[example_rpms.by_name["vendor-agent"]], output=str(folder),
        repos=[example_rpms.dir], target_iso=node_iso.iso, node_versions=">= 2.5.0, < 2.6")).path


def test_check_and_diff_mode_predict_and_write_nothing(node_iso, plugin, tmp_path):
    planned = _ansible({"src": node_iso.iso, "plugins": [plugin], "dest": str(tmp_path),
                        "extra_kernel_args": ["vendor.debug=1"], "remove_kernel_args": ["quiet"]}, "--check", "--diff")
    assert planned["status"] == "CHANGED" and planned["reason"] == "would build", planned
    assert planned["path"] == str(tmp_path / "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso")
    assert os.listdir(tmp_path) == []
    # The callback prints the diff apart from the result; the diff is made of these two.
    entry = "/isolinux/isolinux.cfg#linux"
    assert "quiet" in planned["kernel_args_before"][entry]
    assert "vendor.debug=1" in planned["kernel_args"][entry] and "quiet" not in planned["kernel_args"][entry]
    assert [plugin["name"] for plugin in planned["plugins"]] == ["vendor-agent"]
    assert_returns_documented("node_plugin_apply", planned)


def test_a_deeply_nested_manifest_is_refused_in_one_line(node_iso, tmp_path):
    deep = deeply_nested_plugin(str(tmp_path))
    failed = _ansible({"src": node_iso.iso, "plugins": [deep], "dest": str(tmp_path / "out.iso")}, "--check")
    assert failed["status"] == "FAILED!" and "exception" not in failed
    message = one_line_without_traceback(failed["msg"])
    assert message.startswith(deep + ": ") and "nest" in message and "bug" not in message


def test_a_read_only_destination_is_named_with_a_hint(node_iso, plugin, tmp_path):
    with read_only_folder(str(tmp_path / "ro")) as out:
        failed = _ansible({"src": node_iso.iso, "plugins": [plugin], "dest": out})
        assert os.listdir(out) == []
    assert failed["status"] == "FAILED!" and "exception" not in failed
    # The library may refuse it itself (when it locks the output) or meet EROFS: one line naming the path.
    message = one_line_without_traceback(failed["msg"])
    assert message.startswith(out + "/") and "read-only file system" in message.lower() and "bug" not in message
