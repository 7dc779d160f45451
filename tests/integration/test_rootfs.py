# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libguestfs session on a real ext4 root image: commands stay in the appliance."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._blockio import FileRegion
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rootfs import (
    INSTALL_ROOT, LIVE_ROOT, RootImageSession, make_scratch_disk)

HOST_CANARY = "/tmp/ovirt-node-plugins-host-canary"


def _make_root_image(path, size_mib=32):
    """A minimal root: busybox-static with relative applet links, /etc, /var/tmp."""
    staging = f"{path}.d"
    for folder in ("bin", "etc", "var/tmp", "tmp", "dev", "proc", "sys"):
        os.makedirs(os.path.join(staging, folder), exist_ok=True)
    shutil.copyfile("/bin/busybox", os.path.join(staging, "bin", "busybox"))
    os.chmod(os.path.join(staging, "bin", "busybox"), 0o755)
    for applet in ("sh", "cat", "echo", "mkdir", "touch", "ls", "rm"):
        os.symlink("busybox", os.path.join(staging, "bin", applet))
    with open(os.path.join(staging, "etc", "system-release"), "w", encoding="utf-8") as handle:
        handle.write("oVirt Node Hypervisor release 2.5.0 (1.0.fc17)\n")
    with open(path, "wb") as image:
        image.truncate(size_mib * 1024 * 1024)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", staging, path], check=True)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    work = tmp_path_factory.mktemp("rootfs")
    image = str(work / "ext3fs.img")
    _make_root_image(image)
    live_tree = work / "live"
    (live_tree / "isolinux").mkdir(parents=True)
    (live_tree / "isolinux" / "isolinux.cfg").write_text("default linux\n", encoding="utf-8")
    scratch = str(work / "scratch.img")
    make_scratch_disk(scratch, str(live_tree))
    with RootImageSession(image, scratch_disk=scratch, grow_to_mib=48) as opened:
        yield opened


def test_commands_run_inside_the_image_with_exit_status_and_output(session):
    result = session.run(["sh", "-c", "cat /etc/system-release; echo oops >&2; exit 7"])
    assert result.exit_status == 7
    assert "oVirt Node Hypervisor release 2.5.0" in result.output
    assert "oops" in result.output


def test_a_script_cannot_touch_the_build_host(session):
    if os.path.exists(HOST_CANARY):
        os.unlink(HOST_CANARY)
    result = session.run_script(f"echo pwned > {HOST_CANARY}\necho done\n")
    assert result.ok and "done" in result.output
    assert not os.path.exists(HOST_CANARY)
    assert session.read(HOST_CANARY) == b"pwned\n"  # it landed in the image, where it belongs


def test_nochroot_view_sees_the_image_and_the_iso_tree(session):
    result = session.run_script(
        'cat "$INSTALL_ROOT/etc/system-release"; cat "$LIVE_ROOT/isolinux/isolinux.cfg";'
        'echo "added by nochroot" > "$LIVE_ROOT/isolinux/extra.txt"',
        view="nochroot", env={"INSTALL_ROOT": INSTALL_ROOT, "LIVE_ROOT": LIVE_ROOT})
    assert result.ok, result.output
    assert "release 2.5.0" in result.output and "default linux" in result.output


def test_live_tree_changes_come_back_to_the_host(session, tmp_path):
    session.use_view("nochroot")
    session.download_tree(LIVE_ROOT, str(tmp_path / "live"))
    assert (tmp_path / "live" / "isolinux" / "extra.txt").read_text(encoding="utf-8") == "added by nochroot\n"
    session.use_view("chroot")


def test_remove_deletes_in_the_image_whatever_view_the_last_script_left(session):
    """Records of departing plugins are deleted right after the plugins' scripts; a %post --nochroot leaves the
    session in the nochroot view, whose / is the scratch disk: the image's file must go all the same."""
    session.write("/etc/ovirt-plugins.d/departing", b"Name:departing\n")
    session.use_view("nochroot")
    session.remove(["/etc/ovirt-plugins.d/departing", "/etc/ovirt-plugins.d/never-there"])
    assert session.view == "chroot"
    assert not session.exists("/etc/ovirt-plugins.d/departing")


def test_image_was_grown(session):
    result = session.run(["sh", "-c", "df -k / | tail -1"])
    assert result.ok
    blocks = int(result.output.split()[1])
    assert blocks > 36 * 1024  # was made as 32 MiB, so about 27 MiB usable


def test_selinux_state_of_an_image_without_policy(session):
    assert session.relabel().startswith("not needed")


def test_shrinking_is_refused(tmp_path):
    image = str(tmp_path / "small.img")
    _make_root_image(image, size_mib=16)
    with pytest.raises(NodePluginError, match="shrinking"):
        RootImageSession(image, grow_to_mib=8).launch()


def test_a_session_over_a_source_grows_the_overlay_and_leaves_the_image_alone(tmp_path):
    image = str(tmp_path / "root.img")
    _make_root_image(image)
    with open(image, "rb") as handle:
        before = handle.read()
    overlay = str(tmp_path / "root.qcow2")
    with FileRegion(image) as source:
        with RootImageSession(source, overlay=overlay, grow_to_mib=48, block_size=65536) as opened:
            result = opened.run(["sh", "-c", "echo through-nbd > /etc/added; df -k / | tail -1"])
    assert result.ok, result.output
    assert int(result.output.split()[1]) > 36 * 1024  # resize2fs saw the grown virtual size
    changes = opened.changes
    assert (changes.base_size, changes.size, changes.block_size) == (32 * 2**20, 48 * 2**20, 65536)
    assert changes.blocks and len(changes.blocks) < changes.block_count
    with open(image, "rb") as handle:
        assert handle.read() == before  # every write went to the overlay


def test_a_source_is_never_shrunk_nor_written_without_an_overlay(tmp_path):
    image = str(tmp_path / "small.img")
    _make_root_image(image, size_mib=16)
    with FileRegion(image) as source:
        with pytest.raises(NodePluginError, match="shrinking"):
            RootImageSession(source, overlay=str(tmp_path / "o.qcow2"), grow_to_mib=8).launch()
        with pytest.raises(ValueError, match="needs an overlay"):
            RootImageSession(source)
    with pytest.raises(ValueError, match="only over a ByteSource"):
        RootImageSession(image, overlay=str(tmp_path / "o.qcow2"))
