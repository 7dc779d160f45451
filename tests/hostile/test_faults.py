# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults during `ovirt-plugin-build build`: kill -9 at a stage, two builds of one output, read-only and full
output file systems. What must hold: the previous output intact, no debris (once a rerun has cleaned what a
killed run left), and a rerun that converges to a certified ISO."""
from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time

import pytest

from tests.hostile.conftest import EXIT_ERROR, EXIT_OK, TRACEBACK, Outcome
from tests.unit.plugins.modules.faults import read_only_folder

BOOTS = {"memory_mib": None, "timeout": 1500}  # QEMU and libguestfs: no address-space cap, a long timeout


def _wait_for_line(process: subprocess.Popen, wanted: str, timeout: float = 900) -> str:
    """Read the process's stderr until a line holds ``wanted``; return what was read."""
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _w, _x = select.select([process.stderr], [], [], 1)
        if ready:
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
            if wanted.encode() in seen:
                return seen.decode("utf-8", "replace")
    pytest.fail(f"the build never reached {wanted!r}:\n{seen.decode('utf-8', 'replace')[-3000:]}")


@contextlib.contextmanager
def _small_tmpfs(mount_point: str, size: str) -> str:
    os.makedirs(mount_point)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mount_point], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", mount_point], check=False)


@pytest.mark.parametrize("stage, delay", [("[apply: image]", 20), ("[verify: image]", 10)])
def test_a_build_killed_at_a_stage_keeps_the_previous_output_and_a_rerun_converges(case, build_inputs, stage,
                                                                                   delay):
    build_inputs.keep_previous(case)
    args = build_inputs.args(case.out, build_inputs.good_plugin)
    before = case.snapshot()
    process = case.spawn(*args, memory_mib=None)
    _wait_for_line(process, stage)
    time.sleep(delay)  # well inside the stage: the appliance is up
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    case.check_previous_intact()
    case.check_no_leak()
    # The rerun removes what the killed run left (its work folders beside the output, its run folder in
    # TMPDIR, libguestfs's sockets and overlays there) and puts a certified ISO in the previous one's place.
    case.previous.clear()
    case.cli(*args, exit=EXIT_OK, new=["node.iso", "node.iso.certification.json"], before=before, **BOOTS)


def test_two_builds_of_one_output_do_not_mix(case, build_inputs):
    args = build_inputs.args(case.out, build_inputs.good_plugin)
    before = case.snapshot()
    first = case.spawn(*args, memory_mib=None)
    _wait_for_line(first, "[apply: extract]")  # the first holds the output's lock now
    second = case.spawn(*args, memory_mib=None)
    out, err = second.communicate(timeout=300)
    # Judged apart: the first build's work in progress is in out/ now, and is not the second's debris.
    assert second.returncode == EXIT_ERROR and TRACEBACK not in err.decode(), err.decode()
    assert f"{os.path.join(case.out, 'node.iso')}: another run is writing this output (PID " in err.decode()
    case.check_no_leak(out.decode() + err.decode())
    out, err = first.communicate(timeout=1500)
    done = Outcome(["build"], first.returncode, out.decode(), err.decode())
    case.judge(done, before, exit=EXIT_OK, new=["node.iso", "node.iso.certification.json"])


def test_a_read_only_output_folder_is_refused_before_any_work(case, build_inputs):
    with read_only_folder(os.path.join(case.dir, "ro")) as folder:
        before = case.snapshot()
        process = case.spawn("build", "--iso", build_inputs.base_iso, "--plugin", build_inputs.good_plugin,
                             "-o", os.path.join(folder, "node.iso"), memory_mib=None)
        out, err = process.communicate(timeout=300)
        outcome = Outcome(["build"], process.returncode, out.decode(), err.decode())
        case.judge(outcome, before, exit=EXIT_ERROR, says=["read-only"], names=[os.path.join(folder, "node.iso")])
        assert "[apply: image]" not in outcome.stderr


def test_a_full_output_file_system_fails_cleanly_and_keeps_the_previous_output(case, build_inputs):
    with _small_tmpfs(os.path.join(case.dir, "full"), "24m") as folder:
        previous = case.keep(os.path.join(folder, "node.iso"), b"previous certified ISO\n" * 1000)
        before = case.snapshot()
        listing = sorted(os.listdir(folder))
        process = case.spawn("build", "--iso", build_inputs.base_iso, "--plugin", build_inputs.good_plugin,
                             "-o", previous, memory_mib=None)
        out, err = process.communicate(timeout=1500)
        outcome = Outcome(["build"], process.returncode, out.decode(), err.decode())
        case.judge(outcome, before, exit=EXIT_ERROR, says=[("No space left", "file system is full", "is full")],
                   names=[folder])
        assert sorted(os.listdir(folder)) == listing  # no debris on the full file system either
