# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks end to end against two local folders standing for PXE servers.

package_plugin.yml makes the plugins (v1.0, v1.1); site.yml (build -> verify -> deploy) twice: the second run changes nothing; a new plugin version
makes a new release and a switch (the deployed release boots over PXE with the new plugin);
rollback.yml switches back; a server whose copy fails its checksums is not switched; check mode
writes nothing; a missing input is refused. The tests run in file order and share one lab.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import boot_pxe
from tests.fixtures._cache import REPO_ROOT
from tests.playbook_run import changed_tasks

PLAYBOOKS = os.path.join(REPO_ROOT, "playbooks")
SERVERS = ("pxe-a", "pxe-b")
_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclasses.dataclass
class Lab:
    root: str
    inventory: str
    plugins: dict[str, dict[str, str]]
    base_iso: str
    releases: dict[str, str] = dataclasses.field(default_factory=dict)

    def server(self, host: str) -> str:
        return os.path.join(self.root, host, "tftp")

    def link(self, host: str, name: str) -> str | None:
        path = os.path.join(self.server(host), "ovirt-node", name)
        return os.readlink(path) if os.path.islink(path) else None


@dataclasses.dataclass
class PlayRun:
    rc: int
    recap: dict[str, dict[str, int]]
    output: str
    seconds: float


def play(lab: Lab, playbook: str, extra_vars: dict, *args: str) -> PlayRun:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO_ROOT, ".venv", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_RETRY_FILES_ENABLED="0")
    vars_file = os.path.join(lab.root, "extra-vars.yml")
    with open(vars_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump(extra_vars, handle)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory,
               os.path.join(PLAYBOOKS, playbook), "-e", f"@{vars_file}", *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900,
                          stdin=subprocess.DEVNULL)
    seconds = round(time.monotonic() - started, 1)
    print(f"{playbook} {' '.join(args)}: exit {done.returncode} in {seconds} s")
    recap = {match.group(1): {"ok": int(match.group(2)), "changed": int(match.group(3)),
                              "unreachable": int(match.group(4)), "failed": int(match.group(5))}
             for match in _RECAP.finditer(done.stdout.split("PLAY RECAP")[-1])}
    return PlayRun(rc=done.returncode, recap=recap, output=done.stdout + done.stderr, seconds=seconds)


def site_vars(lab: Lab, plugin: str) -> dict:
    return {"node_iso_build_base_iso": lab.base_iso,
            "node_iso_build_plugins": [{"src": lab.plugins[plugin]["path"],
                                        "checksum": "sha256:" + lab.plugins[plugin]["sha256"]}],
            "node_iso_build_output_dir": os.path.join(lab.root, "out", plugin)}


@pytest.fixture(scope="module")
def lab(node_iso, example_rpms, tmp_path_factory) -> Lab:
    root = str(tmp_path_factory.mktemp("lab"))
    hosts = {host: {"node_pxe_deploy_tftp_root": os.path.join(root, host, "tftp")} for host in SERVERS}
    hosts["pxe-a"]["node_pxe_deploy_keep_releases"] = 2
    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {
            "builders": {"hosts": {"localhost": {}}},
            "pxe_servers": {"vars": {"node_pxe_deploy_stage_dir": os.path.join(root, "stage")}, "hosts": hosts},
        }}}
    path = os.path.join(root, "inventory.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle)
    return Lab(root=root, inventory=path, plugins={}, base_iso=node_iso.iso)


def test_package_plugin_makes_the_tarballs_and_their_checksums(lab, example_rpms):
    for version, key in (("1.0", "vendor-agent"), ("1.1", "vendor-agent-1.1")):
        package_vars = {"node_plugin_package_name": "vendor-agent", "node_plugin_package_version": version,
                        "node_plugin_package_rpms": [example_rpms.by_name[key]],
                        "node_plugin_package_repos": [example_rpms.dir],
                        "node_plugin_package_target_iso": lab.base_iso,
                        "node_plugin_package_node_versions": ">= 2.5.0, < 2.6",
                        "node_plugin_package_output_dir": os.path.join(lab.root, "plugins")}
        run = play(lab, "package_plugin.yml", package_vars)
        assert run.rc == 0 and run.recap["localhost"]["changed"] > 0, run.output[-6000:]
        tarball = os.path.join(lab.root, "plugins", f"vendor-agent-{version}.plugin.tar.gz")
        with open(tarball, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        with open(tarball + ".sha256", encoding="utf-8") as handle:
            assert handle.read() == f"{digest}  vendor-agent-{version}.plugin.tar.gz\n"
        lab.plugins[version] = {"path": tarball, "sha256": digest}
    again = play(lab, "package_plugin.yml", package_vars)
    assert again.rc == 0 and again.recap["localhost"]["changed"] == 0, again.output[-6000:]


def _release_of(lab: Lab, plugin: str) -> str:
    """The release id the deploy role gives the ISO built with ``plugin``: <version>-<12 hex of its sha256>."""
    with open(os.path.join(lab.root, "out", plugin, "SHA256SUMS"), encoding="utf-8") as handle:
        digest = handle.readline().split()[0]
    return f"2.5.0-1.0.fc17-{digest[:12]}"


def test_site_twice_then_nothing_changes(lab):
    first = play(lab, "site.yml", site_vars(lab, "1.0"))
    assert first.rc == 0, first.output[-6000:]
    assert set(first.recap) == {"localhost", *SERVERS}
    assert all(first.recap[host]["changed"] > 0 for host in first.recap), first.recap
    release = lab.releases["1.0"] = _release_of(lab, "1.0")
    for host in SERVERS:
        assert lab.link(host, "current") == f"releases/{release}"
        assert lab.link(host, "previous") is None
        release_dir = os.path.join(lab.server(host), "ovirt-node", "releases", release)
        subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"], cwd=release_dir, check=True)
        with open(os.path.join(lab.server(host), "pxelinux.cfg", "default"), encoding="utf-8") as handle:
            assert "INCLUDE ovirt-node/current/menus/pxelinux.cfg" in handle.read()
        with open(os.path.join(lab.server(host), "grub.cfg"), encoding="utf-8") as handle:
            assert "source /ovirt-node/current/menus/grub.cfg" in handle.read()
    report = os.path.join(lab.root, "out", "1.0", "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso.report.json")
    assert os.path.isfile(report), "verify.yml wrote no report"
    mtimes = {host: os.stat(os.path.join(lab.server(host), "ovirt-node", "releases", release, "initrd0.img")).st_mtime_ns
              for host in SERVERS}
    second = play(lab, "site.yml", site_vars(lab, "1.0"))
    assert second.rc == 0, second.output[-6000:]
    assert {host: counts["changed"] for host, counts in second.recap.items()} == {
        "localhost": 0, "pxe-a": 0, "pxe-b": 0}, changed_tasks(second.output)
    for host in SERVERS:  # nothing was copied again
        path = os.path.join(lab.server(host), "ovirt-node", "releases", release, "initrd0.img")
        assert os.stat(path).st_mtime_ns == mtimes[host]


def test_new_plugin_version_makes_a_new_release_that_boots(lab):
    old = lab.releases["1.0"]
    # An older release that pxe-a (keep 2) must prune: neither current nor previous.
    stale = os.path.join(lab.server("pxe-a"), "ovirt-node", "releases", "2.4.0-000000000000")
    os.makedirs(stale)
    os.utime(stale, (1, 1))
    run = play(lab, "site.yml", site_vars(lab, "1.1"))
    assert run.rc == 0, run.output[-6000:]
    new = lab.releases["1.1"] = _release_of(lab, "1.1")
    assert new != old
    for host in SERVERS:
        assert lab.link(host, "current") == f"releases/{new}"
        assert lab.link(host, "previous") == f"releases/{old}"
    assert not os.path.exists(stale)
    assert sorted(os.listdir(os.path.join(lab.server("pxe-a"), "ovirt-node", "releases"))) == sorted([old, new])
    # The server's copy, through its 'current' link, network-boots with the new plugin version.
    booted = boot_pxe(lab.server("pxe-a"), "ovirt-node/current/pxelinux.0", timeout=300)
    assert booted.ok, f"{booted.reason}\n{booted.log[-4000:]}"
    assert booted.marker["plugins"] == [{"name": "vendor-agent", "version": "1.1-1.noarch"}], booted.marker["plugins"]
    print(f"PXE boot of the deployed release: {booted.seconds} s")


def test_rollback_switches_back(lab):
    run = play(lab, "rollback.yml", {})
    assert run.rc == 0, run.output[-6000:]
    for host in SERVERS:
        assert lab.link(host, "current") == f"releases/{lab.releases['1.0']}"
        assert lab.link(host, "previous") == f"releases/{lab.releases['1.1']}"


def test_a_server_whose_copy_fails_its_checksums_is_not_switched(lab):
    new = lab.releases["1.1"]
    kernel = os.path.join(lab.server("pxe-b"), "ovirt-node", "releases", new, "vmlinuz0")
    with open(kernel, "r+b") as handle:  # one flipped byte, same size
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    iso = os.path.join(lab.root, "out", "1.1", "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso")
    run = play(lab, "deploy.yml", {"node_pxe_deploy_iso": iso})
    assert run.rc != 0
    assert run.recap["pxe-b"]["failed"] == 1 and run.recap["pxe-a"]["failed"] == 0, run.recap
    assert "fails its checksums, so 'current' was not switched" in run.output
    assert lab.link("pxe-a", "current") == f"releases/{new}"
    assert lab.link("pxe-b", "current") == f"releases/{lab.releases['1.0']}"


def test_check_mode_writes_nothing_and_missing_input_is_refused(lab):
    iso = os.path.join(lab.root, "out", "1.0", "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso")
    fresh = os.path.join(lab.root, "fresh")
    os.makedirs(fresh)
    checked = play(lab, "deploy.yml", {"node_pxe_deploy_iso": iso, "node_pxe_deploy_tftp_root": fresh}, "--check")
    assert checked.rc == 0, checked.output[-6000:]
    assert all(checked.recap[host]["changed"] > 0 for host in SERVERS)
    assert os.listdir(fresh) == []
    refused = play(lab, "deploy.yml", {}, "--limit", "pxe-a")
    assert refused.rc != 0 and "node_pxe_deploy needs node_pxe_deploy_iso" in refused.output
