# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_outputs: outputs never onto inputs, one writer per output, the debris of killed runs removed."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._outputs import (OutputLock, check_distinct,
                                                                                  clean_stale, work_dir)


def test_an_output_that_is_an_input_is_refused_by_path_link_or_inode(tmp_path):
    base = tmp_path / "base.iso"
    base.write_bytes(b"iso")
    with pytest.raises(NodePluginError, match="report would overwrite the ISO to certify"):
        check_distinct({"report": str(base)}, {"ISO to certify": str(base)})
    link = tmp_path / "link.iso"
    link.symlink_to(base)
    with pytest.raises(NodePluginError, match="would overwrite the base ISO"):
        check_distinct({"output ISO": str(link)}, {"base ISO": str(base)})
    hard = tmp_path / "hard.json"
    os.link(base, hard)
    with pytest.raises(NodePluginError, match="would overwrite the base ISO"):
        check_distinct({"report": str(hard)}, {"base ISO": str(base)})
    with pytest.raises(NodePluginError, match="signature would overwrite the report"):
        check_distinct({"report": str(tmp_path / "r"), "signature": str(tmp_path / "r")}, {})
    check_distinct({"output ISO": str(tmp_path / "new.iso"), "report": None}, {"base ISO": str(base), "keyring": None})


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    dest = str(tmp_path / "out.iso")
    with OutputLock(dest):
        holder = subprocess.run([sys.executable, "-c", f"""
import sys
from ansible_collections.ovirt.node_plugins.plugins.module_utils._outputs import OutputLock
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
try:
    with OutputLock({dest!r}):
        sys.exit(0)
except NodePluginError as exc:
    print(exc.render()); sys.exit(3)
"""], capture_output=True, text=True, check=False)
        assert holder.returncode == 3
        assert f"another run is writing this output (PID {os.getpid()}" in holder.stdout
    assert os.listdir(tmp_path) == []  # the lock file goes with the lock
    with OutputLock(dest):  # and can be taken again
        pass


def test_stale_work_folders_of_dead_runs_are_removed_and_nothing_else(tmp_path):
    dest = str(tmp_path / "out.iso")
    mine = work_dir(dest)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".out.iso.work-{dead}-abc123_x"
    stale.mkdir()
    (stale / "big").write_bytes(b"x" * 100)
    stale_file = tmp_path / f".out.iso.report-{dead}-k2j3h4"
    stale_file.write_text("half a report")
    other = tmp_path / f".other.iso.work-{dead}-abc123_x"
    other.mkdir()
    user = tmp_path / ".out.iso.notes"
    user.write_text("mine")
    assert sorted(clean_stale(dest)) == sorted([str(stale), str(stale_file)])
    assert os.path.isdir(mine) and other.is_dir() and user.is_file()


def test_a_missing_tmpdir_is_named_as_such(tmp_path, monkeypatch):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._outputs import check_tmpdir
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    with pytest.raises(NodePluginError, match="TMPDIR=.*gone.* is not an existing folder"):
        check_tmpdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    check_tmpdir()


def test_stamps_and_reports_that_are_not_ours_read_as_none(tmp_path):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._outputs import read_small_json
    cases = {"deep": b"[" * 200_000, "big": b'{"a": "' + b"x" * (2 << 20) + b'"}', "list": b"[1, 2]",
             "binary": b"\xff\xfe", "fine": b'{"format": 1}'}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    assert {name: read_small_json(str(tmp_path / name)) for name in cases} == {
        "deep": None, "big": None, "list": None, "binary": None, "fine": {"format": 1}}
    assert read_small_json(str(tmp_path / "missing")) is None


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._outputs import check_writable_folder
    with pytest.raises(NodePluginError, match="report's folder does not exist"):
        check_writable_folder(str(tmp_path / "missing" / "r.json"), "report")
    with pytest.raises(NodePluginError, match="report cannot be written"):
        check_writable_folder("/proc/r.json", "report")
    check_writable_folder(str(tmp_path / "r.json"), "report")
    assert os.listdir(tmp_path) == []


def test_the_run_folders_of_killed_runs_are_removed(monkeypatch):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils import _outputs
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="t-", dir="/tmp"))  # short: sockets are made in run folders
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(_outputs.tempfile, "tempdir", None)
    monkeypatch.setattr(_outputs, "_run_dir", None)
    mine = _outputs.run_dir()
    assert os.path.dirname(mine) == str(tmp_path) and os.path.basename(mine).startswith(
        f"ovirt-node-plugins-{os.getpid()}-")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"ovirt-node-plugins-{dead}-abc123"
    (stale / "libguestfsXYZ").mkdir(parents=True)
    other = tmp_path / "libguestfsABC"
    other.mkdir()
    assert str(stale) in _outputs.clean_stale_runs()
    assert not stale.exists() and os.path.isdir(mine) and other.is_dir()
    shutil.rmtree(tmp_path)


def test_libguestfs_socket_folders_noted_by_a_killed_run_go_with_it(tmp_path, monkeypatch):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils import _outputs
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(_outputs.tempfile, "tempdir", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"ovirt-node-plugins-{dead}-abc123"
    stale.mkdir()
    socket_folder = tempfile.mkdtemp(prefix="libguestfs", dir="/tmp")
    assert len(os.path.basename(socket_folder)) == len("libguestfs") + 8  # mkdtemp's names are 8 long
    mimic = "/tmp/libguestfsZz9Yx8"
    os.makedirs(mimic, exist_ok=True)
    (stale / "libguestfs-socket-folders").write_text(
        json.dumps({"started": 0, "before": []}) + "\n" + json.dumps({"made": [mimic, "/etc", socket_folder]}) + "\n")
    _outputs.clean_stale_runs()
    assert not os.path.exists(mimic) and os.path.isdir("/etc")
    assert os.path.isdir(socket_folder)  # not a name libguestfs makes: left alone
    os.rmdir(socket_folder)


def test_a_run_killed_during_a_launch_leaves_its_socket_folder_to_the_next_run(tmp_path, monkeypatch):
    """The launch never finished: the folder that appeared after it started, with no bound socket, goes."""
    from ansible_collections.ovirt.node_plugins.plugins.module_utils import _outputs
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(_outputs.tempfile, "tempdir", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"ovirt-node-plugins-{dead}-abc123"
    stale.mkdir()
    older = "/tmp/libguestfsOld123"
    os.makedirs(older, exist_ok=True)
    (stale / "libguestfs-socket-folders").write_text(json.dumps({"started": time.time(), "before": [older]}) + "\n")
    made = "/tmp/libguestfsNew456"
    os.makedirs(made, exist_ok=True)
    live = "/tmp/libguestfsLiv789"
    os.makedirs(live, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(live, "guestfsd.sock"))
    try:
        _outputs.clean_stale_runs()
        assert not os.path.exists(made)
        assert os.path.isdir(older) and os.path.isdir(live)  # there before, or held by a live process
    finally:
        listener.close()
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(older, ignore_errors=True)
