# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_iso_extract run through ansible for real: facts, extraction, check mode, idempotency, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests import ansible_run
from tests.unit.plugins.module_utils import isohelpers
from tests.unit.plugins.modules.faults import one_line_without_traceback, read_only_folder
from tests.unit.plugins.modules.module_docs import assert_returns_documented


def run_module(tmp_path, args: dict, *, check: bool = False) -> dict:
    """Run the module with the ansible CLI on localhost and return its JSON result (``failed`` set on failure)."""
    return ansible_run.run_module("node_iso_extract", args, *(["--check"] if check else []), cwd=str(tmp_path))


def test_facts_only(tmp_path):
    tiny = isohelpers.cached_iso(compressor="xz")
    result = run_module(tmp_path, {"src": tiny.iso})
    assert result["failed"] is False, result.get("msg")
    assert result["changed"] is False
    assert result["volume_id"] == tiny.volume_id
    assert (result["product"], result["version"], result["release"], result["version_source"]) == (
        isohelpers.PRODUCT, isohelpers.VERSION, isohelpers.RELEASE, "isolinux/version")
    assert [e["platform"] for e in result["el_torito"]] == ["BIOS", "UEFI"]
    assert result["hybrid"]["mbr"] and result["hybrid"]["gpt"]
    assert result["squashfs"]["compressor"] == "xz" and result["squashfs"]["block_size"] == 131072
    assert result["root_image"] == {"name": "ext3fs.img", "size": os.path.getsize(tiny.root_image)}
    assert result["md5"] == {"implanted": False, "valid": None, "md5": None}
    assert result["packages"] is None and result["updates"] == [] and result["osmin"] is False
    loaders = result["boot_entries"]
    assert [e["label"] for e in loaders["isolinux"]] == ["start", "check"]
    assert loaders["efiboot"][0]["efiboot_image"] == "/isolinux/efiboot.img"
    assert "rhgb" in loaders["grub"][0]["kernel_args"]
    assert_returns_documented("node_iso_extract", result)


def test_extract_check_mode_and_idempotency(tmp_path):
    tiny = isohelpers.cached_iso()
    iso = isohelpers.copy_of(tiny, str(tmp_path), "node.iso")
    subprocess.run(["implantisomd5", iso], check=True, stdout=subprocess.DEVNULL)
    args = {"src": iso, "dest": str(tmp_path / "tree"), "rootfs_dest": str(tmp_path / "rootfs"),
            "packages": True, "check_md5": True}
    predicted = run_module(tmp_path, args, check=True)
    assert predicted["changed"] is True
    assert not (tmp_path / "tree").exists() and not (tmp_path / "rootfs").exists()
    assert predicted["packages"] == ["ovirt-node-testpkg-1:1.2-3.noarch"]

    first = run_module(tmp_path, args)
    assert first["changed"] is True, first.get("msg")
    assert_returns_documented("node_iso_extract", first)
    assert first["md5"]["implanted"] and first["md5"]["valid"] is True
    assert first["plugins"] == [{"name": isohelpers.PACKAGE_NAME, "version": "1.2-3.noarch",
                                 "install_date": "2026-11-25"}]
    assert first["root_image_path"] == str(tmp_path / "rootfs" / "ext3fs.img")
    with open(tmp_path / "tree" / "isolinux" / "isolinux.cfg", encoding="utf-8") as handle:
        assert handle.read() == isohelpers.ISOLINUX_CFG
    with open(first["root_image_path"], "rb") as got, open(tiny.root_image, "rb") as want:
        assert got.read() == want.read()
    assert oct(os.stat(tmp_path / "tree").st_mode & 0o777) != oct(0o700)
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".")]
    assert leftovers == []

    second = run_module(tmp_path, args)
    assert second["changed"] is False
    again = run_module(tmp_path, args, check=True)
    assert again["changed"] is False

    # A damaged extraction is repaired on the next run.
    os.unlink(tmp_path / "tree" / "isolinux" / "version")
    repaired = run_module(tmp_path, args)
    assert repaired["changed"] is True and (tmp_path / "tree" / "isolinux" / "version").is_file()


def test_refuses_foreign_destination_and_symlink(tmp_path):
    tiny = isohelpers.cached_iso()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me\n")
    result = run_module(tmp_path, {"src": tiny.iso, "dest": str(foreign)})
    assert result["failed"] and "not made by node_iso_extract" in result["msg"]
    assert (foreign / "precious.txt").read_text() == "keep me\n"
    os.symlink(str(foreign), tmp_path / "link")
    result = run_module(tmp_path, {"src": tiny.iso, "dest": str(tmp_path / "link")})
    assert result["failed"] and "symlink" in result["msg"]


@pytest.mark.parametrize("kind", ["missing", "not-iso", "truncated", "not-liveos"])
def test_clear_errors(tmp_path, kind):
    tiny = isohelpers.cached_iso()
    path = str(tmp_path / "bad.iso")
    if kind == "not-iso":
        with open(path, "wb") as handle:
            handle.write(b"\0" * 200_000)
    elif kind == "truncated":
        shutil.copyfile(tiny.iso, path)
        os.truncate(path, 1_000_000)
    elif kind == "not-liveos":
        subprocess.run(["xorriso", "-no_rc", "-indev", tiny.iso, "-outdev", path, "-boot_image", "any", "replay",
                        "-rm_r", "/LiveOS", "--", "-commit"], check=True, stderr=subprocess.DEVNULL)
    expected = {"missing": "does not exist", "not-iso": "not an ISO 9660 image", "truncated": "the ISO is truncated",
                "not-liveos": "not a LiveOS ISO: LiveOS/squashfs.img is missing"}[kind]
    result = run_module(tmp_path, {"src": path})
    assert result["failed"] is True
    assert expected in result["msg"]
    assert "Traceback" not in json.dumps(result)


@pytest.mark.parametrize("where", ["read-only", "proc"])
def test_a_destination_that_cannot_be_written_is_named_with_a_hint(tmp_path, where):
    tiny = isohelpers.cached_iso()
    if where == "proc":
        result = run_module(tmp_path, {"src": tiny.iso, "dest": "/proc/node-tree"})
        message = one_line_without_traceback(result["msg"])
        assert message.startswith("/proc/") and "the kernel's proc file system, which holds no files: " \
            "choose another dest" in message
        return
    with read_only_folder(str(tmp_path / "ro")) as out:
        result = run_module(tmp_path, {"src": tiny.iso, "rootfs_dest": os.path.join(out, "rootfs")})
        assert os.listdir(out) == []
    assert result["failed"] is True and "exception" not in result
    message = one_line_without_traceback(result["msg"])
    assert message.startswith(out + "/") and ": read-only file system (" in message
    assert message.endswith("/ro is mounted read-only: mount it read-write or choose another rootfs_dest)")


def test_a_deeply_nested_stamp_in_the_destination_is_one_line(tmp_path):
    """A destination whose stamp is JSON nested 200,000 deep: refused in one line naming it, not a traceback."""
    tiny = isohelpers.cached_iso()
    dest = tmp_path / "tree"
    dest.mkdir()
    (dest / ".node_iso_extract.json").write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    result = run_module(tmp_path, {"src": tiny.iso, "dest": str(dest)})
    assert result["failed"] is True and "exception" not in result
    message = one_line_without_traceback(result["msg"])
    assert str(dest) in message and "bug" not in message
