# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollouts that meet faults, on the molecule scenario's servers (run in this order after test_boots.py).

Releases: L, the converged one (the fixture ISO with the plugin and a livenet initramfs); B, the base fixture ISO;
C, the base fixture ISO under another release version (another release id and menus, the same files otherwise).
Each test says the state it starts from and leaves; the fetches that prove a claim are what a PXE client does.
Every deploy here costs minutes on a loaded 2-core CI machine, so each touches as few servers as its claim needs, and
copies a release only where the claim needs a copy (a server that already holds a release only switches).
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import threading

import pytest

from tests.fleet.lab import PREFIX, Lab, boot_chain, judge_chain, wait_until
from tests.playbook_run import changed_tasks

RELEASE_VERSION_C = "2.5.0-1.0.fc17.1"


def _deploy_vars(iso: str, **extra) -> dict:
    return {"node_pxe_deploy_iso": iso, **extra}


def _links(lab: Lab, name: str = "current") -> dict[str, str]:
    return {server.name: server.link(name) for server in lab.servers.values()}


def _serves_completely(lab: Lab, server_name: str, release: str, scratch: str) -> None:
    """Over TFTP and HTTP, a client of the server gets complete files of ``release`` (by the staged SHA256SUMS)."""
    server = lab.servers[server_name]
    releases = server.release_sums()
    for protocol in ("tftp", "http"):
        got, problems = judge_chain(boot_chain(server.address, protocol, scratch), releases)
        assert (got, problems) == (release, []), f"{server_name} over {protocol}"
    done = subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"],
                          cwd=os.path.join(server.tftp_root, PREFIX, "current"), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def releases(lab: Lab) -> dict[str, str]:
    """The release ids: L is what converge left current everywhere."""
    current = set(_links(lab).values())
    assert len(current) == 1 and "" not in current, _links(lab)
    return {"L": current.pop()}


def test_a_switch_while_clients_fetch_gives_them_one_release_or_the_other(lab, releases, tmp_path):
    """pxe1 from L to B, while a client loop fetches from pxe1 over TFTP and HTTP what a BIOS client loads (server
    menu, included menu, kernel, initrd): every round is complete files of L or of B, never a mix or a partial file."""
    server = lab.servers["pxe1"]
    chains, stop = [], threading.Event()

    def fetch_loop() -> None:
        scratch = str(tmp_path)
        for _round in range(2000):  # bounded: about 1 s per round
            for protocol in ("tftp", "http"):
                chains.append(boot_chain(server.address, protocol, scratch))
            if stop.is_set():
                return

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        loop = pool.submit(fetch_loop)
        wait_until("two rounds before the switch", lambda: len(chains) >= 4 or loop.done(), 120)
        run = lab.play("deploy.yml", _deploy_vars(lab.isos["base"], node_pxe_hosts="pxe1"))
        settled = len(chains)
        wait_until("two rounds after the switch", lambda: len(chains) >= settled + 4 or loop.done(), 120)
        stop.set()
        loop.result()
    assert run.rc == 0, run.output[-6000:]
    known = server.release_sums()
    judged = [judge_chain(chain, known) for chain in chains]
    problems = [problem for _release, found in judged for problem in found]
    assert problems == [], problems[:10]
    seen = [release for release, _found in judged]
    releases["B"] = server.link("current")
    assert seen[0] == releases["L"] and seen[-1] == releases["B"] != releases["L"], seen
    # Once a client saw B, none saw L again: the switch is one rename.
    assert releases["L"] not in seen[seen.index(releases["B"]):], seen
    print(f"{len(chains)} fetch rounds during the switch: {seen.count(releases['L'])} of L, "
          f"{seen.count(releases['B'])} of B")
    assert _links(lab) == {"pxe1": releases["B"], "pxe2": releases["L"], "pxe3": releases["L"]}


def test_a_failed_batch_stops_the_batches_after_it(lab, releases):
    """C to every server in batches of one with max_fail_percentage 0, pxe1's tftpd stopped: pxe1 switches, fails its
    health check and is rolled back to B (previous L, as before); pxe2 and pxe3 are never reached. With tftpd back, a
    run for pxe1 switches it to C (the release it kept) and passes the check."""
    pxe1, pxe3 = lab.servers["pxe1"], lab.servers["pxe3"]
    before = {name: (server.link("current"), server.link("previous")) for name, server in lab.servers.items()}
    extra = _deploy_vars(lab.isos["base"], node_pxe_deploy_release_version=RELEASE_VERSION_C,
                         node_pxe_serial=1, node_pxe_max_fail_percentage=0)
    with pxe1.stopped("tftpd"):
        run = lab.play("deploy.yml", extra)
    assert run.rc != 0 and run.recap["pxe1"]["failed"] == 1, run.output[-6000:]
    failed_release = re.search(r"pxe1 failed its health check after the switch to (\S+):", run.output)
    assert failed_release, run.output[-6000:]
    releases["C"] = failed_release.group(1)
    assert releases["C"] not in (releases["L"], releases["B"]), releases
    assert re.search(r"tftp://\S+/ovirt-node/current/SHA256SUMS: no answer", run.output), run.output[-6000:]
    assert f"It was rolled back: 'current' is {releases['B']} again and 'previous' {releases['L']}" in run.output
    assert "pxe2" not in run.recap and "pxe3" not in run.recap, run.recap
    assert {name: (server.link("current"), server.link("previous")) for name, server in lab.servers.items()} == before
    assert releases["C"] not in pxe3.releases()  # its batch never started: nothing was copied there
    assert releases["C"] in pxe1.releases()  # the release that failed stays for inspection

    again = lab.play("deploy.yml", {**extra, "node_pxe_hosts": "pxe1"})
    assert again.rc == 0, again.output[-6000:]
    assert (pxe1.link("current"), pxe1.link("previous")) == (releases["C"], releases["B"])


def test_a_deploy_killed_while_copying_a_release(lab, releases, tmp_path):
    """pxe2 from L to C, SIGKILLed (the whole ansible-playbook session) while it copies C: pxe2 still serves L,
    complete; the next run copies C anew, checks it and switches."""
    pxe2 = lab.servers["pxe2"]
    extra = _deploy_vars(lab.isos["base"], node_pxe_hosts="pxe2", node_pxe_deploy_release_version=RELEASE_VERSION_C)
    process, log = lab.start_play("deploy.yml", extra)
    try:
        partial = wait_until(
            "a copy of C in progress on pxe2",
            lambda: next((name for name in pxe2.releases() if name.endswith(".partial")
                          and os.listdir(os.path.join(pxe2.tftp_root, PREFIX, "releases", name))), None)
            or process.poll() is not None, 900, poll=0.02)
        if process.poll() is not None:
            with open(log, encoding="utf-8") as handle:
                raise AssertionError("the deploy ended before it copied anything:\n" + handle.read()[-4000:])
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    copied = os.listdir(os.path.join(pxe2.tftp_root, PREFIX, "releases", partial))
    assert partial == f".{releases['C']}.partial", partial
    assert releases["C"] not in pxe2.releases(), "the copy was already renamed into place when the deploy was killed"
    print(f"killed with {len(copied)} files in {partial}")
    assert pxe2.link("current") == releases["L"]
    _serves_completely(lab, "pxe2", releases["L"], str(tmp_path))

    rerun = lab.play("deploy.yml", extra)
    assert rerun.rc == 0, rerun.output[-6000:]
    assert pxe2.link("current") == releases["C"] and pxe2.link("previous") == releases["L"]
    assert not [name for name in pxe2.releases() if name.startswith(".")], pxe2.releases()
    _serves_completely(lab, "pxe2", releases["C"], str(tmp_path))


def test_a_server_whose_sshd_stops_during_a_rollout_then_a_fleet_wide_rollback(lab, releases, tmp_path):
    """B to every server in batches of two (pxe1 and pxe2, then pxe3), pxe2's sshd stopped: the play reports pxe2
    unreachable, pxe1 (holding B: a switch only) and pxe3 (a copy of B) switch; with sshd back the same command
    converges: pxe2 copies B and switches, pxe1 and pxe3 report no change. Then rollback.yml for the whole fleet:
    each server is back on the release it served before its last switch, and serves it completely."""
    pxe2 = lab.servers["pxe2"]
    start = {"pxe1": releases["C"], "pxe2": releases["C"], "pxe3": releases["L"]}
    assert _links(lab) == start
    extra = _deploy_vars(lab.isos["base"], node_pxe_serial=2)
    with pxe2.stopped("sshd"):  # sshd binds its address before it detaches: back when start returns
        run = lab.play("deploy.yml", extra)
    assert run.rc != 0 and run.recap["pxe2"]["unreachable"] == 1, run.output[-6000:]
    assert run.recap["pxe1"]["failed"] == 0 and run.recap["pxe3"]["failed"] == 0, run.recap
    assert re.search(r"fatal: \[pxe2\]: UNREACHABLE!", run.output), run.output[-6000:]
    assert _links(lab) == {"pxe1": releases["B"], "pxe2": releases["C"], "pxe3": releases["B"]}
    assert releases["B"] not in pxe2.releases()  # the server that could not be reached got nothing
    _serves_completely(lab, "pxe2", releases["C"], str(tmp_path))

    again = lab.play("deploy.yml", extra)
    assert again.rc == 0, again.output[-6000:]
    changed = changed_tasks(again.output)
    assert again.recap["pxe1"]["changed"] == 0 and again.recap["pxe3"]["changed"] == 0, changed
    assert again.recap["pxe2"]["changed"] > 0, again.recap
    assert _links(lab) == {"pxe1": releases["B"], "pxe2": releases["B"], "pxe3": releases["B"]}
    assert _links(lab, "previous") == start

    back = lab.play("rollback.yml", {})
    assert back.rc == 0, back.output[-6000:]
    assert _links(lab) == start and _links(lab, "previous") == {name: releases["B"] for name in start}
    for name, release in start.items():
        _serves_completely(lab, name, release, str(tmp_path))
