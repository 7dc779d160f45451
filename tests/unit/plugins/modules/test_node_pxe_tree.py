# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_pxe_tree run through ansible on the fixture ISO: changed, then unchanged; check mode; failures."""
from __future__ import annotations

import os
import subprocess

from tests.ansible_run import run_module
from tests.unit.plugins.modules.faults import one_line_without_traceback, read_only_folder
from tests.unit.plugins.modules.module_docs import assert_returns_documented


def _ansible(args: dict, *extra: str) -> dict:
    return run_module("node_pxe_tree", args, *extra, timeout=300)


def test_changed_then_unchanged_and_check_mode(node_iso, tmp_path):
    dest = str(tmp_path / "tree")
    args = {"src": node_iso.iso, "dest": dest, "iso_name": "node.iso", "ipappend": True}
    planned = _ansible(args, "--check")
    assert planned["changed"] is True and planned["reason"] == "would build" and not os.path.exists(dest)
    first = _ansible(args)
    assert first["status"] == "CHANGED", first
    assert_returns_documented("node_pxe_tree", planned)
    assert_returns_documented("node_pxe_tree", first)
    assert first["release_id"] == f"2.5.0-1.0.fc17-{first['iso_sha256'][:12]}"
    assert first["release_id"] == planned["release_id"]
    assert {"vmlinuz0", "initrd0.img", "pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "grub.cfg",
            "BOOTX64.EFI", "menus/pxelinux.cfg", "menus/grub.cfg", ".node-pxe-tree.json"} <= set(first["files"])
    menu = (tmp_path / "tree" / "pxelinux.cfg" / "default").read_text(encoding="utf-8")
    assert "APPEND initrd=initrd0.img rootflags=loop root=live:/node.iso " in menu and "IPAPPEND 2" in menu
    assert "pxelinux.cfg/default: pxelinux structure checked" in first["menu_checks"]
    assert "grub.cfg: grub-script-check passed" in first["menu_checks"]
    # The real tool agrees with the SHA256SUMS the module wrote.
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest, check=True)
    mtime = os.stat(os.path.join(dest, "initrd0.img")).st_mtime_ns
    second = _ansible(args)
    assert second["status"] == "SUCCESS" and second["changed"] is False, second
    assert second["tree_sha256"] == first["tree_sha256"]
    assert os.stat(os.path.join(dest, "initrd0.img")).st_mtime_ns == mtime
    # A new option makes a new tree.
    third = _ansible({**args, "ipappend": False})
    assert third["changed"] is True and third["tree_sha256"] != first["tree_sha256"]
    assert "IPAPPEND" not in (tmp_path / "tree" / "pxelinux.cfg" / "default").read_text(encoding="utf-8")


def test_a_damaged_tree_is_rebuilt(node_iso, tmp_path):
    dest = tmp_path / "tree"
    args = {"src": node_iso.iso, "dest": str(dest), "efi_bootloader": False}
    assert _ansible(args)["changed"] is True
    assert not (dest / "BOOTX64.EFI").exists()
    (dest / "vmlinuz0").write_bytes(b"truncated")
    again = _ansible(args)
    assert again["changed"] is True
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest, check=True)


def test_failures_are_messages(tmp_path):
    not_iso = tmp_path / "x.iso"
    not_iso.write_bytes(b"\0" * 40000)
    result = _ansible({"src": str(not_iso), "dest": str(tmp_path / "t")})
    assert result["status"] == "FAILED!" and "Traceback" not in result["msg"]
    bad = _ansible({"src": str(not_iso), "dest": str(tmp_path / "t"), "http_url": "ftp://x"})
    assert "is not an http(s) URL" in bad["msg"]


def test_a_read_only_destination_is_named_with_a_hint(node_iso, tmp_path):
    with read_only_folder(str(tmp_path / "ro")) as out:
        result = _ansible({"src": node_iso.iso, "dest": os.path.join(out, "tree"), "efi_bootloader": False})
        assert os.listdir(out) == []
    assert result["status"] == "FAILED!" and "exception" not in result
    message = one_line_without_traceback(result["msg"])
    assert message.startswith(out + "/") and ": read-only file system (" in message
    assert message.endswith("/ro is mounted read-only: mount it read-write or choose another dest)")
