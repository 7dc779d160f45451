# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certification on real ISOs: the end user's command certifies a good rebuild, and each kind of
tampering is caught by the check that owns it, with a message a person can act on."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pycdlib
import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import ApplyRequest, apply_plugins
from ansible_collections.ovirt.node_plugins.plugins.module_utils._bootcfg import (
    detect_format, read_efiboot_file, replace_volume_label, write_efiboot_file)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import IsoReader, rewrite_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._isomd5 import read_field
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import SQUASHFS_PATH
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rootfs import RootImageSession
from ansible_collections.ovirt.node_plugins.plugins.module_utils._verify import VerifyRequest, verify_iso
from tests.ansible_run import run_module

CLI = os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build")


def _pack(rpms, fixture, folder, recipe=None, version="1.0"):
    recipe_path = None
    if recipe:
        recipe_path = os.path.join(folder, f"recipe-{version}.ks")
        with open(recipe_path, "w", encoding="utf-8") as handle:
            handle.write(recipe)
    return build_plugin(PluginBuildRequest(
        name="vendor-agent", version=version, rpms=[rpms.by_name["vendor-agent"]], output=folder, repos=[rpms.dir],
        target_iso=fixture.iso, node_versions=">= 2.5.0, < 2.6", recipe=recipe_path)).path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def plugin(node_iso, example_rpms, work):
    return _pack(example_rpms, node_iso, str(work))


@pytest.fixture(scope="module")
def built(node_iso, plugin, work):
    """`ovirt-plugin-build build`, the end user's one command: apply, then verify."""
    out = work / "out"
    out.mkdir()
    completed = subprocess.run([CLI, "build", "--iso", node_iso.iso, "--plugin", plugin, "-o", str(out), "--json"],
                               capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    return json.loads(completed.stdout)


def _verify(iso, node_iso, plugin=None, deep=False):
    return verify_iso(VerifyRequest(src=iso, base=node_iso.iso, plugins=[plugin] if plugin else [], deep=deep))


def _failed(result):
    return {check.name: check.violations for check in result.checks if not check.passed}


def _tampered_copy(built, work, name):
    copy = str(work / name)
    shutil.copyfile(built["apply"]["path"], copy)
    return copy


def test_the_end_users_command_builds_and_certifies(built, node_iso):
    assert built["certified"] is True
    verify = built["verify"]
    assert [check["name"] for check in verify["checks"]] == ["media", "boot_records", "iso_tree", "plugins", "core",
                                                             "compatibility"]
    assert all(check["passed"] for check in verify["checks"])
    with open(verify["report"], encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["certified"] is True and report["sha256"] == built["apply"]["sha256"]
    assert report["tool"].startswith("ovirt.node_plugins")


def test_module_rerun_keeps_the_report_and_says_unchanged(built, node_iso, plugin):
    result = run_module("node_iso_verify", {"src": built["apply"]["path"], "base": node_iso.iso, "plugins": [plugin],
                                            "report": built["verify"]["report"]})
    assert result["status"] == "SUCCESS"
    assert result["certified"] is True and result["changed"] is False


def test_a_byte_changed_in_the_squashfs_is_caught_by_the_media_check(built, node_iso, work):
    copy = _tampered_copy(built, work, "squashfs-byte.iso")
    iso = pycdlib.PyCdlib()
    iso.open(copy)
    record = iso.get_record(rr_path="/LiveOS/squashfs.img")
    offset = record.extent_location() * 2048 + record.get_data_length() // 2
    iso.close()
    with open(copy, "r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([value[0] ^ 0xFF]))
    result = _verify(copy, node_iso)
    assert not result.certified
    assert any("does not match the content" in violation for violation in _failed(result)["media"])


def test_a_broken_md5_field_is_caught(built, node_iso, work):
    copy = _tampered_copy(built, work, "md5-field.iso")
    field = read_field(copy)
    position = field.raw.index(b"ISO MD5SUM = ") + len(b"ISO MD5SUM = ")
    digit = field.raw[position:position + 1]
    with open(copy, "r+b") as handle:
        handle.seek(field.field_offset + position)
        handle.write(b"0" if digit != b"0" else b"1")
    result = _verify(copy, node_iso)
    assert list(_failed(result)) == ["media"]
    assert "damaged or modified" in _failed(result)["media"][0]


def test_a_wrong_cdlabel_in_the_uefi_image_config_is_caught(built, node_iso, work):
    copy = str(work / "efiboot-label.iso")
    image = str(work / "efiboot.img")
    with IsoReader(built["apply"]["path"]) as reader:
        reader.extract("isolinux/efiboot.img", image)
        volume_id = reader.volume_id
    text = read_efiboot_file(image, "/EFI/BOOT/grub.cfg")
    edited = replace_volume_label(text, detect_format("grub.cfg", text), volume_id, "WRONG-LABEL")
    write_efiboot_file(image, "/EFI/BOOT/grub.cfg", edited.text)
    rewrite_iso(built["apply"]["path"], copy, replace_files={"isolinux/efiboot.img": image}, implant=True)
    result = _verify(copy, node_iso)
    violations = _failed(result)
    assert list(violations) == ["boot_records", "iso_tree"]
    assert any("root=live:CDLABEL=WRONG-LABEL" in v and "volume id" in v for v in violations["boot_records"])
    assert violations["iso_tree"] == ["the boot config /EFI/BOOT/grub.cfg inside /isolinux/efiboot.img differs from "
                                      "the base's beyond the recorded edits"]
    assert any("differs from the ISO tree's" in v for v in violations["boot_records"])


def test_a_removed_plugin_record_is_caught(built, node_iso, work):
    copy = str(work / "no-record.iso")
    tree = work / "no-record"
    squashfs = str(work / "no-record-squashfs.img")
    with IsoReader(built["apply"]["path"]) as reader:
        reader.extract(SQUASHFS_PATH, squashfs)
    subprocess.run(["unsquashfs", "-q", "-no-progress", "-d", str(tree), squashfs], check=True)
    with RootImageSession(str(tree / "LiveOS" / "ext3fs.img")) as session:
        session.g.rm("/etc/ovirt-plugins.d/vendor-agent")
    new_squashfs = str(work / "no-record-new.img")
    subprocess.run(["mksquashfs", str(tree), new_squashfs, "-comp", "xz", "-noappend", "-no-progress", "-quiet"], check=True)
    rewrite_iso(built["apply"]["path"], copy, replace_files={"LiveOS/squashfs.img": new_squashfs}, implant=True)
    result = _verify(copy, node_iso)
    violations = _failed(result)
    assert list(violations) == ["plugins"]
    assert any("/etc/ovirt-plugins.d/vendor-agent is missing" in v for v in violations["plugins"])


def test_core_files_changed_by_a_plugin_are_caught_from_blocks_and_deep(node_iso, example_rpms, work):
    """One plugin's %post changes two base files: one grows (appended), one keeps its size (one byte changed in
    place, which only the blocks' content shows). Both certification paths name both files."""
    folder = work / "core-tamper"
    folder.mkdir()
    script = ("echo 'patched by a plugin' >> /usr/lib64/libvendorbase.so.1.0\n"
              "printf X | dd of=/usr/bin/python2.7 bs=1 seek=3 conv=notrunc")
    recipe = f"repo --name=vendor --baseurl=file://rpms\n%packages\nvendor-agent\n%end\n%post\n{script}\n%end\n"
    tampering = _pack(example_rpms, node_iso, str(folder), recipe=recipe, version="6.6")
    applied = apply_plugins(ApplyRequest(src=node_iso.iso, plugins=[tampering], dest=str(folder)))
    for deep in (False, True):
        result = _verify(applied.path, node_iso, tampering, deep=deep)
        violations = _failed(result)
        assert list(violations) == ["core"], (deep, violations)
        for package, path in (("libvendorbase", "/usr/lib64/libvendorbase.so.1.0"), ("python", "/usr/bin/python2.7")):
            assert any(v.startswith(f"base package {package}: rpm -V: {path}") for v in violations["core"]), \
                (deep, path, violations)


def test_block_level_and_deep_certification_agree_on_the_example(built, node_iso, plugin):
    for deep in (False, True):
        result = _verify(built["apply"]["path"], node_iso, plugin, deep=deep)
        assert result.certified, (deep, _failed(result))
        core = next(check for check in result.checks if check.name == "core")
        wanted = "every file of both images compared" if deep else "compared from blocks"
        assert any(wanted in line for line in core.evidence), core.evidence


def test_a_plugin_that_is_not_in_the_iso_is_reported(built, node_iso, example_rpms, work):
    folder = work / "other-plugin"
    folder.mkdir()
    other = _pack(example_rpms, node_iso, str(folder), version="7.7")
    result = verify_iso(VerifyRequest(src=built["apply"]["path"], plugins=[other]))
    assert any("is not the one the ISO was built with" in v for v in _failed(result)["plugins"])
    core = next(check for check in result.checks if check.name == "core")
    assert core.passed and "isolinux/manifest-rpm.txt" in core.evidence[0]
