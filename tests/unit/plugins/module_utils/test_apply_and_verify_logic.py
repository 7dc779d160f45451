# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the rebuild engine and of certification (the heavy paths are integration tests)."""
from __future__ import annotations

import dataclasses

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _apply, _verify
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._recipe import parse_recipe


@dataclasses.dataclass
class _Manifest:
    name: str


@dataclasses.dataclass
class _Archive:
    manifest: _Manifest
    recipe: object


def _archive(name, recipe_text):
    return _Archive(_Manifest(name), parse_recipe(recipe_text))


def test_kernel_words_keep_plugin_order_then_the_request():
    archives = [_archive("a", 'bootloader --append "a=1 !quiet"\n'), _archive("b", 'bootloader --append "b=2"\n')]
    request = _apply.ApplyRequest(src="x", plugins=["p"], dest="d", extra_kernel_args=["c=3"],
                                  remove_kernel_args=["rhgb", "!splash"])
    assert _apply._kernel_words(request, archives) == ["a=1", "!quiet", "b=2", "c=3", "!rhgb", "!splash"]


def test_output_in_a_folder_gets_edit_nodes_name(tmp_path):
    archives = [_archive("vendor-agent", ""), _archive("hello-plugin", "")]
    dest = _apply._output_path(str(tmp_path), "/srv/iso/ovirt-node-iso-2.5.0-1.0.fc17.iso", archives)
    assert dest == str(tmp_path / "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent_hello-plugin.iso")


def test_output_must_not_overwrite_the_base_or_go_to_a_missing_folder(tmp_path):
    base = str(tmp_path / "base.iso")
    with pytest.raises(NodePluginError, match="overwrite the base"):
        _apply._output_path(base, base, [])
    with pytest.raises(NodePluginError, match="folder does not exist"):
        _apply._output_path(str(tmp_path / "missing" / "out.iso"), base, [])


def test_bad_options_are_refused_before_any_work():
    with pytest.raises(NodePluginError, match="no plugins"):
        _apply._prepare(_apply.ApplyRequest(src="x", plugins=[], dest="d"))
    with pytest.raises(NodePluginError, match="selinux_relabel"):
        _apply._prepare(_apply.ApplyRequest(src="x", plugins=["p"], dest="d", selinux_relabel="sometimes"))
    with pytest.raises(NodePluginError, match="compression"):
        _apply._prepare(_apply.ApplyRequest(src="x", plugins=["p"], dest="d", compression="brotli"))


def test_options_digest_ignores_paths_and_debug_switches():
    one = _apply.ApplyRequest(src="/a.iso", plugins=["/p"], dest="/out", keep_workdir=True)
    two = _apply.ApplyRequest(src="/b.iso", plugins=["/q"], dest="/elsewhere", force=True)
    assert one.options_for_digest() == two.options_for_digest()
    assert one.options_for_digest() != _apply.ApplyRequest(src="/a.iso", plugins=["/p"], dest="/out",
                                                           extra_kernel_args=["x"]).options_for_digest()


def test_rpm_verify_output_is_attributed_to_owners_with_config_marks():
    output = ("S.5....T.  c /etc/vendor-agent/agent.conf\n"
              "..5....T.    /usr/lib64/libvendorbase.so.1.0\n"
              "missing   c /etc/hello.conf\n"
              "Unsatisfied dependencies for foo: bar\n")
    owns = ["/etc/vendor-agent/agent.conf vendor-agent", "/usr/lib64/libvendorbase.so.1.0 libvendorbase",
            "/etc/hello.conf hello-plugin"]
    found = _verify._parse_rpm_verify(output, owns)
    assert found["vendor-agent"] == [("S.5....T.", "c", "/etc/vendor-agent/agent.conf")]
    assert found["libvendorbase"] == [("..5....T.", "", "/usr/lib64/libvendorbase.so.1.0")]
    assert found["hello-plugin"] == [("missing", "c", "/etc/hello.conf")]


def test_edit_and_plugin_paths_match_exactly():
    assert _verify._matches("/etc/ovirt-plugins.d/vendor-agent", _verify._EDIT_PATHS)
    assert _verify._matches("/etc/system-release", _verify._EDIT_PATHS)
    assert not _verify._matches("/etc/system-release.bak", _verify._EDIT_PATHS)
    assert _verify._matches("/opt/vendor/bin/agent", _verify._PLUGIN_PATHS)
    assert not _verify._matches("/usr/bin/agent", _verify._PLUGIN_PATHS)


def test_a_check_passes_only_without_violations():
    check = _verify.Check("media", evidence=["fine"])
    assert check.passed and check.to_dict()["passed"] is True
    check.violations.append("broken")
    assert not check.passed
