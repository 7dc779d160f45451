# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rebuild engine on the real fixture ISO: boots, records, upgrades, reruns, refusals."""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _records as records
from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import ApplyRequest, apply_plugins
from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import BOOT_PATHS, boot_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import IsoReader
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import extract_root_image, read_root_file
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import (
    MANIFEST, RECIPE, Member, canonical_json, parse_manifest, write_tarball)

HOST_CANARY = "/tmp/ovirt-node-plugins-apply-canary"
RECIPE_V1 = f"""part / --size 96
bootloader --append "vendor.debug=1 !quiet"
repo --name=vendor --baseurl=file://rpms
%packages
vendor-agent
%end
%post
mkdir -p /tmp && echo "escape attempt" > {HOST_CANARY}
echo "recipe post ran" >> /etc/node-marker.d/recipe
%end
%post --nochroot
echo "nochroot saw $(cat "$INSTALL_ROOT/etc/system-release")" > "$LIVE_ROOT/isolinux/vendor-note.txt"
%end
"""


def _pack(rpms, fixture, out_dir, *, version="1.0", rpm_key="vendor-agent", recipe=None, node_versions=">= 2.5.0, < 2.6",
          target_packages=None):
    recipe_path = None
    if recipe is not None:
        recipe_path = os.path.join(out_dir, f"recipe-{version}.ks")
        with open(recipe_path, "w", encoding="utf-8") as handle:
            handle.write(recipe)
    request = PluginBuildRequest(name="vendor-agent", version=version, vendor="Example Vendor", summary="agent",
                                 rpms=[rpms.by_name[rpm_key]], output=out_dir, repos=[rpms.dir],
                                 target_iso=None if target_packages else fixture.iso, target_packages=target_packages,
                                 node_versions=node_versions, recipe=recipe_path)
    return build_plugin(request).path


def _debris(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("apply")


@pytest.fixture(scope="module")
def plugin_v1(node_iso, example_rpms, work):
    return _pack(example_rpms, node_iso, str(work), recipe=RECIPE_V1)


@pytest.fixture(scope="module")
def applied(node_iso, plugin_v1, work):
    if os.path.exists(HOST_CANARY):
        os.unlink(HOST_CANARY)
    out = work / "out"
    out.mkdir()
    result = apply_plugins(ApplyRequest(src=node_iso.iso, plugins=[plugin_v1], dest=str(out)))
    return result


@pytest.fixture(scope="module")
def boots(applied):
    """Every ISO boot path once, two at a time (they do not slow each other on two cores)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {path: pool.submit(boot_iso, applied.path, path, timeout=300) for path in BOOT_PATHS}
        return {path: future.result() for path, future in futures.items()}


def test_output_is_named_like_edit_node_and_reported(applied, node_iso):
    assert os.path.basename(applied.path) == "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso"
    assert applied.changed and applied.reason == "built"
    assert applied.update == 1
    assert applied.packages == {"vendor-agent": ["vendor-agent-1.0-1.noarch"]}
    assert "vendor-agent-lib-1.0-1.noarch" in applied.packages_after
    assert "vendor-agent-lib-1.0-1.noarch" not in applied.packages_before
    with open(applied.path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == applied.sha256
    assert set(applied.durations) >= {"prepare", "plan", "extract", "image", "squashfs", "iso"}
    assert _debris(os.path.dirname(applied.path)) == []


@pytest.mark.parametrize("path", BOOT_PATHS)
def test_rebuilt_iso_boots_with_the_plugin_and_kernel_args(boots, path, node_iso):
    result = boots[path]
    assert result.ok, f"{path}: {result.reason}\n{result.log[-3000:]}"
    marker = result.marker
    assert {"name": "vendor-agent", "version": "1.0-1.noarch"} in marker["plugins"]
    assert "recipe post ran" in marker["extras"]
    assert any(line.startswith("vendor-agent post ran") for line in marker["extras"])  # the RPM's %post
    cmdline = marker["cmdline"].split()
    assert "vendor.debug=1" in cmdline
    assert "quiet" not in cmdline
    assert f"root=live:CDLABEL={node_iso.volume_id}" in cmdline
    assert marker["system_release"].endswith("(Edited, Unsigned)")


def test_base_iso_had_quiet(node_iso):
    assert "quiet" in node_iso.default_kernel_args.split()


def test_a_post_script_cannot_write_on_the_build_host(applied):
    assert not os.path.exists(HOST_CANARY)


def test_md5_is_implanted_and_valid(applied):
    assert subprocess.run(["checkisomd5", applied.path], capture_output=True, check=False).returncode == 0


def test_records_and_manifests_as_node_users_expect(applied, work):
    with IsoReader(applied.path) as reader:
        delta = reader.read_text("isolinux/update1/delta-manifest-rpm.txt").splitlines()
        installed = reader.read_text("isolinux/update1/installed_plugins")
        record = records.BuildRecord.from_json(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
        note = reader.read_text("isolinux/vendor-note.txt")
        links = {entry.path: entry.symlink_target for entry in reader.files() if entry.symlink_target}
    assert sorted(delta) == ["+ vendor-agent-1.0-1.noarch (none)", "+ vendor-agent-lib-1.0-1.noarch (none)"]
    assert "vendor-agent 1.0 vendor-agent-1.0-1.noarch" in installed
    assert links["/isolinux/current-manifest-rpm.txt"] == "update1/manifest-rpm.txt"
    assert note.startswith("nochroot saw oVirt Node Hypervisor release 2.5.0")
    assert record.update == 1 and record.plugins[0].name == "vendor-agent"
    assert record.inputs_digest == records.inputs_digest(record.base_sha256, [record.plugins[0].sha256],
                                                         record.options)
    root = extract_root_image(applied.path, str(work / "root"))
    assert os.path.getsize(root) == 96 * 1024 * 1024  # part / --size 96 grew the 64 MiB image
    plugin_record = read_root_file(root, "/etc/ovirt-plugins.d/vendor-agent").decode()
    assert plugin_record.startswith("Name:vendor-agent\nVersion:1.0-1.noarch\nInstall Date:")
    assert read_root_file(root, "/etc/ovirt-plugins-manifests.d/update1/delta-manifest-rpm.txt")


def test_rerun_with_the_same_inputs_is_a_quick_no_op(applied, node_iso, plugin_v1):
    before = os.stat(applied.path)
    started = time.monotonic()
    again = apply_plugins(ApplyRequest(src=node_iso.iso, plugins=[plugin_v1], dest=os.path.dirname(applied.path)))
    assert not again.changed and again.reason.startswith("up to date")
    assert time.monotonic() - started < 20
    assert os.stat(applied.path).st_mtime_ns == before.st_mtime_ns
    assert again.sha256 == applied.sha256


def test_a_copied_output_is_trusted_by_its_md5_and_a_damaged_one_is_rebuilt(applied, node_iso, plugin_v1, work):
    folder = work / "copied-output"
    folder.mkdir()
    copy = folder / os.path.basename(applied.path)
    shutil.copyfile(applied.path, copy)
    request = ApplyRequest(src=node_iso.iso, plugins=[plugin_v1], dest=str(folder))
    assert not apply_plugins(request).changed  # a new file identity, but its md5 holds
    with open(copy, "r+b") as handle:
        handle.seek(os.path.getsize(copy) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    rebuilt = apply_plugins(request)
    assert rebuilt.changed and rebuilt.reason == "built"
    assert subprocess.run(["checkisomd5", str(copy)], capture_output=True, check=False).returncode == 0


def test_check_mode_reports_and_writes_nothing(node_iso, plugin_v1, work):
    target = work / "check-mode"
    target.mkdir()
    planned = apply_plugins(ApplyRequest(src=node_iso.iso, plugins=[plugin_v1], dest=str(target), check_mode=True,
                                         extra_kernel_args=["extra.arg=2"]))
    assert planned.changed and planned.reason == "would build"
    assert os.listdir(target) == []
    args = planned.kernel_args["/isolinux/isolinux.cfg#linux"]
    assert "extra.arg=2" in args and "vendor.debug=1" in args and "quiet" not in args
    assert "quiet" in planned.kernel_args_before["/isolinux/isolinux.cfg#linux"]


def test_applying_a_newer_plugin_to_an_edited_iso_upgrades(applied, example_rpms, node_iso, work):
    plugin_v11 = _pack(example_rpms, node_iso, str(work), version="1.1", rpm_key="vendor-agent-1.1", recipe=RECIPE_V1)
    upgraded = apply_plugins(ApplyRequest(src=applied.path, plugins=[plugin_v11], dest=str(work / "upgraded.iso")))
    assert upgraded.update == 2
    assert upgraded.packages == {"vendor-agent": ["vendor-agent-1.1-1.noarch"]}
    assert "vendor-agent-1.0-1.noarch" in upgraded.packages_before
    assert "vendor-agent-1.0-1.noarch" not in upgraded.packages_after
    with IsoReader(upgraded.path) as reader:
        delta = reader.read_text("isolinux/update2/delta-manifest-rpm.txt").splitlines()
        assert reader.exists("isolinux/update1/manifest-rpm.txt")
        record = records.BuildRecord.from_json(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
        links = {entry.path: entry.symlink_target for entry in reader.files() if entry.symlink_target}
    assert delta == ["- vendor-agent-1.0-1.noarch (none)", "+ vendor-agent-1.1-1.noarch (none)"]
    assert links["/isolinux/current-manifest-rpm.txt"] == "update2/manifest-rpm.txt"
    assert [entry["update"] for entry in record.history] == [1]
    args = upgraded.kernel_args["/isolinux/isolinux.cfg#linux"]
    assert args.count("vendor.debug=1") == 1  # the same append again does not duplicate


def _assert_refused_cleanly(request, match):
    folder = request.dest if os.path.isdir(request.dest) else os.path.dirname(request.dest)
    before = sorted(os.listdir(folder))
    with pytest.raises(NodePluginError, match=match) as caught:
        apply_plugins(request)
    assert sorted(os.listdir(folder)) == before, "a failed run must leave no output and no work directory"
    return str(caught.value)


def test_plugin_for_another_node_version_is_refused_before_any_work(example_rpms, node_iso, work):
    folder = work / "other-version"
    folder.mkdir()
    plugin = _pack(example_rpms, node_iso, str(folder), version="9.0", node_versions=">= 3.0")
    message = _assert_refused_cleanly(ApplyRequest(src=node_iso.iso, plugins=[plugin], dest=str(folder)),
                                      "incompatible plugins")
    assert ">=3.0" in message and "2.5.0-1.0.fc17" in message


def test_failing_post_fails_with_its_output_and_leaves_nothing(example_rpms, node_iso, work):
    folder = work / "failing-post"
    folder.mkdir()
    recipe = ("repo --name=vendor --baseurl=file://rpms\n%packages\nvendor-agent\n%end\n"
              "%post\necho 'vendor configuration step broke'\nexit 3\n%end\n")
    plugin = _pack(example_rpms, node_iso, str(folder), version="2.0", recipe=recipe)
    message = _assert_refused_cleanly(ApplyRequest(src=node_iso.iso, plugins=[plugin], dest=str(folder)),
                                      "failed with exit status 3")
    assert "vendor configuration step broke" in message


def test_unsatisfiable_dependency_fails_with_rpms_message(example_rpms, node_iso, work):
    """A plugin packed for an image that had vendor-agent-lib: this image lacks it."""
    folder = work / "unsatisfiable"
    folder.mkdir()
    package_list = folder / "other-image-packages.txt"
    other_image = list(node_iso.packages) + ["vendor-agent-lib-1.0-1.noarch"]
    package_list.write_text("".join(f"{nevra} (none)\n" for nevra in other_image), encoding="utf-8")
    plugin = _pack(example_rpms, node_iso, str(folder), version="3.0", target_packages=str(package_list))
    message = _assert_refused_cleanly(ApplyRequest(src=node_iso.iso, plugins=[plugin], dest=str(folder)),
                                      "rpm install failed")
    assert "vendor-agent-lib" in message


def test_unsupported_recipe_directive_is_refused(plugin_v1, node_iso, work):
    folder = work / "bad-recipe"
    folder.mkdir()
    with tarfile.open(plugin_v1, "r:gz") as archive:
        members = {info.name: archive.extractfile(info).read() for info in archive.getmembers() if info.isfile()}
    bad_recipe = members[RECIPE] + b"firewall --enabled --port=22:tcp\n"
    manifest = parse_manifest(members[MANIFEST]).to_dict()
    manifest["recipe"]["sha256"] = hashlib.sha256(bad_recipe).hexdigest()
    members[RECIPE], members[MANIFEST] = bad_recipe, canonical_json(manifest)
    bad = str(folder / "vendor-agent-6.6.plugin.tar.gz")
    write_tarball(bad, [Member(name, data=data) for name, data in members.items()], 0)
    message = _assert_refused_cleanly(ApplyRequest(src=node_iso.iso, plugins=[bad], dest=str(folder / "out.iso")),
                                      "firewall")
    assert "line" in message
