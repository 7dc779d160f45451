# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The accelerator and boot memory options of node_iso_verify and node_plugin_apply, through ansible: they are
settings of the run, refused in a message when they cannot work, and documented as declared."""
from __future__ import annotations

from tests.ansible_run import run_module


def test_too_little_boot_memory_is_refused_in_a_message(tmp_path):
    result = run_module("node_iso_verify", {"src": str(tmp_path / "missing.iso"), "boot_memory": 100,
                                            "accelerator": "tcg"})
    assert result["failed"] and "boot memory 100 MiB is too small for a Node to boot" in result["msg"]
    assert "exception" not in result


def test_an_unknown_accelerator_is_refused_by_the_argument_spec(tmp_path):
    for module, args in (("node_iso_verify", {"src": str(tmp_path / "x.iso")}),
                         ("node_plugin_apply", {"src": str(tmp_path / "x.iso"), "plugins": [], "dest": str(tmp_path)})):
        result = run_module(module, {**args, "accelerator": "xen"})
        assert result["failed"] and "value of accelerator must be one of: auto, tcg, kvm" in result["msg"], result


def test_the_accelerator_setting_reaches_the_engine(tmp_path):
    """With the accelerator given, a missing ISO is the error: the setting itself was accepted."""
    plugin = tmp_path / "p.plugin.tar.gz"
    plugin.write_bytes(b"")
    result = run_module("node_plugin_apply", {"src": str(tmp_path / "x.iso"), "plugins": [str(plugin)],
                                              "dest": str(tmp_path), "accelerator": "tcg"})
    assert result["failed"] and "x.iso" in result["msg"] and "exception" not in result, result["msg"]
