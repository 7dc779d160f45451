# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module's DOCUMENTATION and RETURN promise, to compare with its argument spec and real results."""
from __future__ import annotations

import glob
import importlib
import os

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# Every module of the collection (a new one is covered without a line here) ...
MODULES = tuple(sorted(os.path.basename(path)[:-len(".py")]
                       for path in glob.glob(os.path.join(TOP, "plugins", "modules", "[!_]*.py"))))
# ... and those that run an engine of the library (node_plugin_hotadd's module file is the
# documentation of an action plugin).
ENGINE_MODULES = ("node_artifact_fetch", "node_artifact_publish", "node_iso_extract", "node_iso_verify",
                  "node_plugin_apply", "node_plugin_build", "node_pxe_tree")
# Keys ansible-core adds to every result, the ones tests.ansible_run adds, and those exit_json adds
# about the file when a result has a "path" or "dest" (AnsibleModule.add_path_info).
STANDARD_KEYS = {"changed", "failed", "msg", "invocation", "diff", "warnings", "deprecations", "exception",
                 "skipped", "status", "stderr_of_ansible"}
PATH_INFO_KEYS = {"uid", "gid", "owner", "group", "mode", "state", "secontext", "size"}
SPEC_FIELDS = ("type", "required", "default", "choices", "elements")
FIELD_DEFAULTS = {"required": False}


def load(name: str):
    """The module's Python file (DOCUMENTATION, RETURN, ARGUMENT_SPEC)."""
    return importlib.import_module(f"ansible_collections.ovirt.node_plugins.plugins.modules.{name}")


def documented_returns(name: str) -> dict[str, dict]:
    return yaml.safe_load(load(name).RETURN)


def assert_returns_documented(name: str, result: dict) -> None:
    """Every key of a real result is in RETURN, and every key RETURN says is returned always is there."""
    returns = documented_returns(name)
    returned = {key for key in result if not key.startswith("_ansible")} - STANDARD_KEYS
    added_by_ansible = PATH_INFO_KEYS if "path" in result or "dest" in result else set()
    undocumented = sorted(returned - set(returns) - added_by_ansible)
    assert not undocumented, f"{name} returns keys RETURN does not document: {undocumented}"
    always = {key for key, doc in returns.items() if doc.get("returned") == "always"}
    lacking = sorted(always - returned)
    assert not lacking, f"{name}: RETURN says {lacking} are returned always, the result lacks them"
