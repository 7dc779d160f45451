# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_iso_verify run through ansible: a verdict on the fixture ISO, and a missing library.

Certification of rebuilt and tampered ISOs is tested in tests/integration/test_verify.py; here the
module's part: the verdict as a failure with every documented key, and failures as messages.
"""
from __future__ import annotations

import json
import os

from tests.ansible_run import run_module
from tests.unit.plugins.modules.module_docs import assert_returns_documented


def test_an_iso_not_built_by_apply_is_not_certified_with_every_key(node_iso, tmp_path):
    report = str(tmp_path / "report.json")
    result = run_module("node_iso_verify", {"src": node_iso.iso, "report": report}, timeout=900)
    assert result["status"] == "FAILED!" and "exception" not in result
    assert result["msg"].startswith("the ISO is not certified: plugins: no build record")
    assert result["certified"] is False and result["report"] == report and result["changed"] is True
    assert [check["name"] for check in result["checks"] if not check["passed"]] == ["plugins"]
    with open(report, encoding="utf-8") as handle:
        assert json.load(handle)["certified"] is False
    assert_returns_documented("node_iso_verify", result)


def test_a_missing_library_is_named_by_missing_required_lib(node_iso, tmp_path):
    """The system Python has rpm and guestfs but not pycdlib (pip-installed in the venv only)."""
    result = run_module("node_iso_verify", {"src": node_iso.iso, "report": str(tmp_path / "report.json")},
                        "-e", "ansible_python_interpreter=/usr/bin/python3")
    assert result["status"] == "FAILED!"
    assert result["msg"].startswith("Failed to import the required Python library (pycdlib) on ")
    assert "This is required to read ISO 9660 images (install: pip install pycdlib)." in result["msg"]
    assert os.listdir(tmp_path) == []
