# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the rebuild engine and of certification (the heavy paths are integration tests)."""
from __future__ import annotations

import dataclasses

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _apply, _records, _verify
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import (NodeCompat, PackageEntry,
                                                                                 PluginManifest, RecipeEntry)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._recipe import parse_recipe
from ansible_collections.ovirt.node_plugins.plugins.module_utils._request import output_path
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmhdr import path_allowed


@dataclasses.dataclass
class _Manifest:
    name: str


@dataclasses.dataclass
class _Archive:
    manifest: _Manifest
    recipe: object


def _archive(name, recipe_text):
    return _Archive(_Manifest(name), parse_recipe(recipe_text))


def _manifest() -> PluginManifest:
    package = PackageEntry(file="rpms/k-1-1.noarch.rpm", name="k", nevra="k-1-1.noarch", size=1, sha256="0" * 64,
                           role="plugin")
    return PluginManifest(name="k", version="1", vendor="v", summary="s", node=NodeCompat(), packages=(package,),
                          recipe=RecipeEntry("recipe.ks", "0" * 64), created="2026-11-30T00:00:00Z")


def _record() -> _records.BuildRecord:
    return _records.BuildRecord(base_sha256="0" * 64, base_volume_id="v", plugins=[], options={},
                                inputs_digest="0" * 64, update=1, packages={}, kernel_args={},
                                created="2026-11-30T00:00:00Z")


def test_build_record_round_trips_with_typed_manifests():
    record = dataclasses.replace(_record(), plugins=[_records.RecordedPlugin("k", "1", "0" * 64, _manifest())])
    again = _records.BuildRecord.from_json(record.to_json())
    assert again == record and again.plugins[0].manifest.packages[0].nevra == "k-1-1.noarch"
    assert again.to_json() == record.to_json()


@pytest.mark.parametrize("content, message", [
    (b"[" * 100000, "not valid JSON"),
    (b'{"format": 1, "plugins": [{"name": "x"}]}', "lacks or misstates"),
    (b'{"format": 2}', "unsupported build record format"),
])
def test_a_damaged_build_record_is_refused_cleanly(content, message):
    with pytest.raises(NodePluginError, match=message):
        _records.BuildRecord.from_json(content)


def test_kernel_edits_keep_plugin_order_then_the_request():
    archives = [_archive("a", 'bootloader --append "a=1 !quiet"\n'), _archive("b", 'bootloader --append "b=2"\n')]
    request = _apply.ApplyRequest(src="x", plugins=["p"], dest="d", extra_kernel_args=["c=3"],
                                  remove_kernel_args=["rhgb", "!splash"])
    edits = _apply._kernel_edits(request, archives)
    assert edits.add == ("a=1", "b=2", "c=3") and edits.remove == ("quiet", "rhgb", "splash")


def test_output_in_a_folder_gets_edit_nodes_name(tmp_path):
    dest = output_path(str(tmp_path), "/srv/iso/ovirt-node-iso-2.5.0-1.0.fc17.iso", ["vendor-agent", "hello-plugin"])
    assert dest == str(tmp_path / "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent_hello-plugin.iso")


def test_output_must_not_go_to_a_missing_folder(tmp_path):
    with pytest.raises(NodePluginError, match="folder does not exist"):
        output_path(str(tmp_path / "missing" / "out.iso"), str(tmp_path / "base.iso"), [])


def test_bad_options_are_refused_before_any_work():
    with pytest.raises(NodePluginError, match="no plugins"):
        _apply.prepare(_apply.ApplyRequest(src="x", plugins=[], dest="d"))
    with pytest.raises(NodePluginError, match="selinux_relabel"):
        _apply.prepare(_apply.ApplyRequest(src="x", plugins=["p"], dest="d", selinux_relabel="sometimes"))
    with pytest.raises(NodePluginError, match="compression"):
        _apply.prepare(_apply.ApplyRequest(src="x", plugins=["p"], dest="d", compression="brotli"))
    with pytest.raises(NodePluginError, match="invalid kernel argument"):
        _apply.prepare(_apply.ApplyRequest(src="x", plugins=["p"], dest="d", extra_kernel_args=["a b"]))


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


def test_edit_paths_match_exactly():
    assert _verify._matches("/etc/ovirt-plugins.d/vendor-agent", _verify._EDIT_PATHS)
    assert _verify._matches("/etc/system-release", _verify._EDIT_PATHS)
    assert not _verify._matches("/etc/system-release.bak", _verify._EDIT_PATHS)


def test_verify_allows_new_files_where_the_packager_allowed_them():
    """The plugin's kind and its vendor's overrides widen what verify accepts, as they did for the packager."""
    standard = _verify._plugin_prefixes(None)
    assert path_allowed("/opt/vendor/bin/agent", standard) and not path_allowed("/usr/bin/agent", standard)
    assert not path_allowed("/lib/modules/6.1/extra/vendor.ko", standard)
    manifest = dataclasses.replace(_manifest(), kind="kmod", allowed_path_overrides=("/usr/libexec/vendor",))
    build = dataclasses.replace(_record(), plugins=[_records.RecordedPlugin("k", "1", "0" * 64, manifest)])
    widened = _verify._plugin_prefixes(build)
    assert path_allowed("/lib/modules/6.1/extra/vendor.ko", widened)
    assert path_allowed("/usr/libexec/vendor/helper", widened) and not path_allowed("/usr/bin/agent", widened)


def test_a_check_passes_only_without_violations():
    check = _verify.Check("media", evidence=["fine"])
    assert check.passed and check.to_dict()["passed"] is True
    check.violations.append("broken")
    assert not check.passed


def test_a_slower_boot_writes_the_same_boot_evidence(monkeypatch):
    """A certification repeated on a busier machine must write the same report (a second run reports
    no change): how long a boot took goes to the stage timings, never into the evidence."""
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import BootResult
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._run import StageTimer

    request = dataclasses.make_dataclass("Request", ["src", "boot_test", "boot_timeout", "marker_regex"])(
        "node.iso", "all", 600, None)
    evidence, timings = [], []
    for seconds in (12.4, 97.0):
        def booted(src, path, *, timeout, marker_regex, seconds=seconds):
            return BootResult(path=path, ok=True, marker={"plugins": []}, seconds=seconds, log="", reason="")
        monkeypatch.setattr(_verify, "boot_iso", booted)
        timer = StageTimer()
        check = _verify._check_boot(request, None, timer)
        assert check.passed
        evidence.append(check.evidence)
        timings.append(timer.durations)
    assert evidence[0] == evidence[1]
    assert not any("97" in line for line in evidence[1])
    assert {value for name, value in timings[1].items() if name.startswith("boot ")} == {97.0}
