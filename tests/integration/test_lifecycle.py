# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life of plugins on real fixture ISOs, with the real appliance: a clean upgrade, a removal certified
against the original Node, a rebase onto the next Node release that boots with the plugin, and a kernel
module that the rebuilt initramfs loads at boot."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _records as records
from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import boot_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._build import BuildRequest, build_and_certify
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import apply_plugins
from ansible_collections.ovirt.node_plugins.plugins.module_utils._nodeiso import NodeIso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._request import ApplyRequest
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmdb import rpm_database_of
from ansible_collections.ovirt.node_plugins.plugins.module_utils._verify import VerifyRequest, verify_iso
from tests.ansible_run import run_module
from tests.fixtures._cache import kernel_version
from tests.fixtures.nodeiso import FixtureSpec, kmod_rpms

CLI = os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build")
NEWER = FixtureSpec(version="2.6.0", base_lib_version="3.3")  # the next Node release: a newer base package too
WITH_DRACUT = FixtureSpec(initramfs_tools=True, compressor="gzip")
AGENT_RECIPE = """repo --name=vendor --baseurl=file://rpms
bootloader --append "vendor.debug=1 !quiet"
%packages
vendor-agent
vendor-agent-lib
%end
"""
KMOD_RECIPE = """repo --name=kmod --baseurl=file://rpms
bootloader --append "rd.driver.pre=dummy"
%packages
vendor-kmod
%end
"""


def _pack(folder, name: str, version: str, rpms: list[str], target: str, *, node_versions: str,
          recipe: str | None = None, kind: str = "standard", repos: list[str] = ()) -> str:
    recipe_path = None
    if recipe is not None:
        recipe_path = os.path.join(folder, f"{name}-{version}.ks")
        with open(recipe_path, "w", encoding="utf-8") as handle:
            handle.write(recipe)
    return build_plugin(PluginBuildRequest(name=name, version=version, rpms=rpms, output=str(folder),
                                           repos=list(repos), target_iso=target, node_versions=node_versions,
                                           recipe=recipe_path, kind=kind)).path


def _certified(request: BuildRequest):
    built = build_and_certify(request)
    assert built.certified, built.verified.violations if built.verified else built
    return built


def _packages(iso_path: str, work) -> set[str]:
    with NodeIso(iso_path) as iso:
        return {package.nevra for package in rpm_database_of(iso.root_filesystem(), str(work)).packages}


def _image_file(iso_path: str, path: str) -> bytes | None:
    with NodeIso(iso_path) as iso:
        root = iso.root_filesystem()
        return root.read_file(path) if root.exists(path) else None


def _record(iso_path: str) -> records.BuildRecord:
    with NodeIso(iso_path) as iso:
        assert iso.build_record.record is not None, iso.build_record.problem
        return iso.build_record.record


def _kernel_args(iso_path: str) -> dict[str, list[str]]:
    with NodeIso(iso_path) as iso:
        return {f"{config.where}#{entry.label}": list(entry.kernel_args)
                for config in iso.boot_configs() for entry in config.entries}


def _marker_modules(console: str) -> list[str]:
    """Module names of /proc/modules as the fixture's init printed them on its NODE-MARKER line."""
    found = re.findall(r"NODE-MARKER v=1 .*? modules=([A-Za-z0-9+/=]*) ", console)
    assert found, console[-2000:]
    return [line.split()[0] for line in base64.b64decode(found[-1]).decode().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("lifecycle")


@pytest.fixture(scope="module")
def plugins(node_iso, example_rpms, work):
    """vendor-agent 1.0 (vendor-agent-lib a plugin package of its own: it has a record), 2.0 without the
    library, and hello-plugin made for Nodes before 2.6."""
    folder = work / "plugins"
    folder.mkdir()
    agent = [example_rpms.by_name["vendor-agent"], example_rpms.by_name["vendor-agent-lib"]]
    return {
        "agent-1.0": _pack(folder, "vendor-agent", "1.0", agent, node_iso.iso, node_versions=">=2.5.0, <2.7",
                           recipe=AGENT_RECIPE, repos=[example_rpms.dir]),
        "agent-2.0": _pack(folder, "vendor-agent", "2.0", [example_rpms.by_name["vendor-agent-2.0"]], node_iso.iso,
                           node_versions=">=2.5.0, <2.7", repos=[example_rpms.dir]),
        "hello": _pack(folder, "hello-plugin", "0.1", [example_rpms.by_name["hello-plugin"]], node_iso.iso,
                       node_versions=">=2.5.0, <2.6"),
    }


@pytest.fixture(scope="module")
def custom(node_iso, plugins, work):
    """The fixture Node 2.5.0 with vendor-agent 1.0 and hello-plugin, certified."""
    return _certified(BuildRequest(apply=ApplyRequest(src=node_iso.iso, plugins=[plugins["agent-1.0"], plugins["hello"]],
                                                      dest=str(work / "custom.iso")))).applied.path


@pytest.fixture(scope="module")
def upgraded(custom, plugins, work):
    return _certified(BuildRequest(apply=ApplyRequest(src=custom, plugins=[plugins["agent-2.0"]],
                                                      dest=str(work / "upgraded.iso"))))


def test_an_upgrade_drops_the_dependency_and_the_record_the_new_version_does_not_ship(custom, upgraded, work):
    applied = upgraded.applied
    assert applied.upgraded == [{"name": "vendor-agent", "from": "1.0", "to": "2.0"}]
    assert applied.erased == ["vendor-agent-lib"] and applied.kept == {}
    before, after = _packages(custom, work), _packages(applied.path, work)
    assert "vendor-agent-lib-1.0-1.noarch" in before and not [nevra for nevra in after if "vendor-agent-lib" in nevra]
    assert "vendor-agent-2.0-1.noarch" in after and "hello-plugin-0.1-1.noarch" in after
    assert _image_file(custom, "/etc/ovirt-plugins.d/vendor-agent-lib") is not None
    assert _image_file(applied.path, "/etc/ovirt-plugins.d/vendor-agent-lib") is None
    assert b"Version:2.0-1.noarch" in _image_file(applied.path, "/etc/ovirt-plugins.d/vendor-agent")
    # The library's %postun ran in the image when rpm erased it (it forgets its marker).
    assert _image_file(custom, "/etc/node-marker.d/vendor-agent-lib") is not None
    assert _image_file(applied.path, "/etc/node-marker.d/vendor-agent-lib") is None
    with NodeIso(applied.path) as iso:
        delta = records.decode_manifest("rpm", iso.read_bytes(f"/isolinux/update{applied.update}/delta-manifest-rpm.txt"))
        assert "- vendor-agent-lib-1.0-1.noarch (none)" in delta and "- vendor-agent-1.0-1.noarch (none)" in delta
        assert "+ vendor-agent-2.0-1.noarch (none)" in delta
        assert iso.exists("/ovirt-plugins/vendor-agent-2.0.plugin.tar.gz")
        assert not iso.exists("/ovirt-plugins/vendor-agent-1.0.plugin.tar.gz")
        assert iso.exists("/ovirt-plugins/hello-plugin-0.1.plugin.tar.gz")
    record = _record(applied.path)
    assert [(plugin.name, plugin.version) for plugin in record.plugins] == [
        ("hello-plugin", "0.1"), ("vendor-agent", "2.0")]
    # 1.0's kernel arguments are taken back: vendor.debug=1 goes, quiet (every entry of the Node had it) comes back.
    args = _kernel_args(applied.path)["/isolinux/isolinux.cfg#linux"]
    assert "vendor.debug=1" not in args and "quiet" in args


def test_removal_erases_what_the_plugins_brought_and_certifies_against_the_original_node(node_iso, upgraded, work):
    out = work / "removed"
    out.mkdir()
    args = {"src": upgraded.applied.path, "plugins": ["vendor-agent", "hello-plugin"], "state": "absent",
            "dest": str(out)}
    planned = run_module("node_plugin_apply", args, "--check", timeout=600)
    assert planned["status"] == "CHANGED" and planned["reason"] == "would build", planned
    assert sorted(item["name"] for item in planned["removed"]) == ["hello-plugin", "vendor-agent"]
    assert os.listdir(out) == []
    removed = run_module("node_plugin_apply", args, timeout=1800)
    assert removed["status"] == "CHANGED", removed
    gone = removed["path"]
    assert gone == str(out / "upgraded-without-vendor-agent_hello-plugin.iso")
    assert sorted(removed["erased"]) == ["hello-plugin", "vendor-agent"]
    # All plugins removed: the Node's own package set, records and kernel arguments again.
    assert _packages(gone, work) == _packages(node_iso.iso, work)
    assert _image_file(gone, "/etc/ovirt-plugins.d/vendor-agent") is None
    assert _image_file(gone, "/etc/ovirt-plugins.d/hello-plugin") is None
    # (quiet, taken away by 1.0 and given back by the upgrade, now stands last)
    assert {entry: sorted(args) for entry, args in _kernel_args(gone).items()} == \
        {entry: sorted(args) for entry, args in _kernel_args(node_iso.iso).items()}
    with NodeIso(gone) as iso:
        assert not [entry.path for entry in iso.files() if entry.path.startswith("/ovirt-plugins/")]
        assert iso.read_bytes("/isolinux/update3/removed_plugins") == b"hello-plugin 0.1\nvendor-agent 2.0\n"
    # verify --base with the original Node, whose tree the record carries as the origin of the history.
    verified = verify_iso(VerifyRequest(src=gone, base=node_iso.iso))
    assert verified.certified, verified.violations
    tree = next(check for check in verified.checks if check.name == "iso_tree")
    assert "compared with the base ISO, the origin of the ISO's history" in tree.evidence
    again = run_module("node_plugin_apply", args, timeout=600)
    assert again["status"] == "SUCCESS" and again["reason"].startswith("up to date"), again


def test_rebase_onto_the_next_node_release_boots_with_the_plugin(node_iso_factory, custom, work):
    newer = node_iso_factory(NEWER)
    out = work / "rebased"
    out.mkdir()
    argv = [CLI, "rebase", "--iso", newer.iso, "--from", custom, "-o", str(out / "node-2.6.0.iso"), "--json"]
    refused = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "hello-plugin 0.1" in refused.stderr and "--skip-incompatible" in \
        refused.stderr, refused.stderr
    assert os.listdir(out) == []
    done = subprocess.run([*argv, "--skip-incompatible"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout)
    assert result["certified"] and [item["name"] for item in result["apply"]["skipped_plugins"]] == ["hello-plugin"]
    rebased = result["apply"]["path"]
    record = _record(rebased)
    carried = _record(custom).plugins
    assert [(plugin.name, plugin.sha256) for plugin in record.plugins] == \
        [(plugin.name, plugin.sha256) for plugin in carried if plugin.name == "vendor-agent"]
    assert record.rebased_from["version"] == "2.5.0" and record.origin["version"] == "2.6.0"
    packages = _packages(rebased, work)
    assert "libvendorbase-3.3-1.x86_64" in packages and "ovirt-node-2.6.0-1.0.fc17.noarch" in packages
    assert "vendor-agent-1.0-1.noarch" in packages and "vendor-agent-lib-1.0-1.noarch" in packages
    booted = boot_iso(rebased, "cd-bios", timeout=900)
    assert booted.ok, booted.reason + booted.log[-3000:]
    assert booted.marker["version"] == "2.6.0"
    assert {"name": "vendor-agent", "version": "1.0-1.noarch"} in booted.marker["plugins"]
    assert any(line.startswith("vendor-agent post ran 1.0-1") for line in booted.marker["extras"])
    again = subprocess.run([*argv, "--skip-incompatible"], capture_output=True, text=True, check=False)
    assert again.returncode == 0 and not json.loads(again.stdout)["apply"]["changed"], again.stderr


@pytest.fixture(scope="module")
def kmod_plugin(node_iso_factory, work):
    rpm = kmod_rpms().by_name["vendor-kmod"]
    folder = work / "kmod"
    folder.mkdir()
    return _pack(folder, "vendor-kmod", "1.0", [rpm], node_iso_factory(WITH_DRACUT).iso, node_versions="*",
                 recipe=KMOD_RECIPE, kind="kmod")


def test_a_kmod_plugin_is_refused_where_the_image_has_no_dracut(node_iso, kmod_plugin, work):
    with pytest.raises(NodePluginError, match=r"vendor-kmod declares early-boot modules \(rd.driver.pre=dummy\), "
                                              "but the image has no dracut"):
        apply_plugins(ApplyRequest(src=node_iso.iso, plugins=[kmod_plugin], dest=str(work / "no.iso"),
                                   check_mode=True))


def test_the_kmod_plugins_module_is_in_the_rebuilt_initramfs_and_loaded_at_boot(node_iso_factory, kmod_plugin, work):
    base = node_iso_factory(WITH_DRACUT)
    built = _certified(BuildRequest(apply=ApplyRequest(src=base.iso, plugins=[kmod_plugin],
                                                       dest=str(work / "kmod.iso"))))
    initramfs = built.applied.initramfs
    assert initramfs["rebuild"] and initramfs["kernel_version"] == kernel_version()
    assert initramfs["drivers"] == ["dummy"] and initramfs["files"] == ["/isolinux/initrd0.img"]
    listings = {}
    for name, iso_path in (("base", base.iso), ("built", built.applied.path)):
        local = str(work / f"{name}-initrd0.img")
        with NodeIso(iso_path) as iso:
            iso.extract("/isolinux/initrd0.img", local)
        listings[name] = subprocess.run(["lsinitrd", local], capture_output=True, text=True, check=True).stdout
    assert "extra/vendor-kmod/dummy.ko" in listings["built"] and "dummy.ko" not in listings["base"]
    assert _record(built.applied.path).initramfs["sha256"] == initramfs["sha256"]
    booted = boot_iso(built.applied.path, "cd-bios", timeout=900)
    assert booted.ok, booted.reason + booted.log[-3000:]
    assert "rd.driver.pre=dummy" in booted.marker["cmdline"]
    assert "dummy" in _marker_modules(booted.log)
