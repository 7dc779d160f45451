# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_module: every failure as a message for a person (real exceptions), and run_engine inside an AnsibleModule.

Modules and the command are run for real on real faults in tests/unit/plugins/modules and test_cli.py.
"""
from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils import basic
from ansible.module_utils._internal import _traceback
from ansible.module_utils.testing import patch_module_args

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import (
    OPTIONAL_LIBRARIES, explain_failure, failure_result, missing_libraries, quote, run_engine)


def _raised(action):
    try:
        action()
    except BaseException as error:  # pylint: disable=broad-exception-caught
        return error
    raise AssertionError("nothing raised")


def test_a_library_error_is_shown_as_rendered():
    error = NodePluginError("the ISO is truncated", path="/srv/x.iso", hint="copy it again")
    assert explain_failure(error).message == "/srv/x.iso: the ISO is truncated (copy it again)"
    assert not explain_failure(error).bug


def test_recursion_names_the_file_being_read(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")

    def read():
        with open(deep, encoding="utf-8") as handle:
            json.load(handle)
    failure = explain_failure(_raised(read))
    assert failure.message == (f"an input is nested too deeply to read while reading {deep} "
                               "(refused: it exceeds Python's recursion limit)")
    assert not failure.bug


def test_bad_text_names_the_file_and_quotes_nothing_of_it(tmp_path):
    binary = tmp_path / "recipe.ks"
    binary.write_bytes(b"\xff\xfe secret \x00")

    def read():
        with open(binary, encoding="utf-8") as handle:
            handle.read()
    message = explain_failure(_raised(read)).message
    assert message.startswith(f"an input is not valid text while reading {binary} ('utf-8' codec can't decode")
    assert "secret" not in message


def test_memory_exhaustion_is_one_line():
    failure = explain_failure(_raised(lambda: bytearray(1 << 62)))
    assert failure.message == "out of memory (an input is too large to process, or the machine needs more memory)"
    assert not failure.bug


@pytest.mark.parametrize("action, expected", [
    (lambda: os.mkdir("/proc/node-tree"),
     "/proc/node-tree: no such file or directory (/proc is the kernel's proc file system, which holds no files: "
     "choose another dest)"),
    (lambda: open("/nonexistent-folder/sub/x.iso", "wb"),  # pylint: disable=consider-using-with
     "/nonexistent-folder/sub/x.iso: no such file or directory (the folder /nonexistent-folder/sub does not exist: "
     "create it or correct the path)"),
    (lambda: os.rename("/nonexistent-a", "/nonexistent-b"),
     "/nonexistent-a -> /nonexistent-b: no such file or directory (check the path)"),
])
def test_os_errors_name_the_path_and_say_what_to_do(action, expected):
    assert explain_failure(_raised(action), {"dest": "/proc/node-tree"}).message == expected


def test_a_bug_is_flagged_and_its_text_bounded():
    failure = explain_failure(_raised(lambda: int("12\n" + "x" * 5000)))
    assert failure.bug and "\n" not in failure.message and len(failure.message) < 300
    assert failure.message.startswith("ValueError: invalid literal for int() with base 10: '12\\nxxx")
    assert quote("a\x1b[31mb") == "a\\x1b[31mb"


def test_every_optional_library_is_declared_and_importable_here():
    assert set(OPTIONAL_LIBRARIES) == {"pycdlib", "rpm", "solv", "guestfs", "jsonschema", "pykickstart"}
    assert missing_libraries(OPTIONAL_LIBRARIES) == []  # make setup installs them all


def _run_in_module(engine, capsys, monkeypatch, **args):
    """run_engine inside a real AnsibleModule; the JSON it ended with."""
    monkeypatch.setattr(_traceback, "_module_tracebacks_enabled_events", None)  # read again from these args
    with patch_module_args(args):
        module = basic.AnsibleModule(argument_spec={"dest": {"type": "path"}})
        with pytest.raises(SystemExit):
            run_engine(module, engine, None, outputs=("dest",))
    return json.loads(capsys.readouterr().out)


def _engine_with_a_bug(_request):
    return {}["certified"]


def test_run_engine_fails_a_bug_with_its_traceback(capsys, monkeypatch):
    result = _run_in_module(_engine_with_a_bug, capsys, monkeypatch, _ansible_tracebacks_for=["error"],
                            _ansible_module_name="node_plugin_apply")
    assert result["failed"] is True
    assert result["msg"] == ("node_plugin_apply: unexpected error, a bug of ovirt.node_plugins: KeyError: 'certified'. "
                             "Please report it with its traceback (ANSIBLE_DISPLAY_TRACEBACK=error shows it; "
                             "before ansible-core 2.19, -vvv)")
    assert "in _engine_with_a_bug" in result["exception"]


def test_run_engine_fails_an_os_error_with_msg_alone(capsys, monkeypatch):
    result = _run_in_module(lambda _request: os.mkdir("/proc/node-tree"), capsys, monkeypatch,
                            dest="/proc/node-tree")
    assert result["msg"].endswith("which holds no files: choose another dest)")
    assert "exception" not in result


def _failure_result_of(action, source, outputs=None):
    try:
        action()
    except Exception as error:  # pylint: disable=broad-exception-caught
        return failure_result(error, source, outputs)  # inside the except block, as action plugins call it
    raise AssertionError("nothing raised")


def test_failure_result_for_action_plugins():
    assert _failure_result_of(lambda: os.mkdir("/proc/node-tree"), "node_plugin_hotadd", {"dest": "/proc/x"}) == {
        "failed": True, "msg": "/proc/node-tree: no such file or directory (/proc is the kernel's proc file system, "
                               "which holds no files: choose another dest)"}
    result = _failure_result_of(lambda: _engine_with_a_bug(None), "node_plugin_hotadd")
    assert result["msg"].startswith("node_plugin_hotadd: unexpected error, a bug of ovirt.node_plugins: KeyError: ")
    assert "in _engine_with_a_bug" in result["exception"]
