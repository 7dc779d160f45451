# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A build on a second host: site.yml builds and certifies on the 'builders' host, publishes by URL, and the PXE
servers' deploy takes the ISO from there. Then the AWX workflow's way: build.yml, verify.yml and deploy.yml as
separate jobs, each taking what the one before published with set_stats (shown as custom stats).

The build host is a network namespace running sshd and a web server (as extensions/molecule/pxe_deploy makes its
PXE servers): Ansible reaches it over SSH only, and the controller fetches what it published over HTTP only. The
base ISO and the plugin are given the way an AWX survey gives them (one line each, with 'sha256:'). Three PXE
servers, two of which want the same tree, get two staged trees. A wrong checksum is refused before anything is
switched. Needs root (ip netns), sshd and the sftp server (bindep.txt, test profile).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.playbook_run import play

VENV_PYTHON = sys.executable
SERVERS = ("pxe-a", "pxe-b", "pxe-c")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _free_index() -> int:
    for offset in range(100):
        index = 100 + (os.getpid() + offset) % 150
        if not os.path.exists(f"/run/netns/onpb-{index}"):
            return index
    raise RuntimeError("no free network namespace name onpb-<n>")


def _wait_for_port(address: str, port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"], capture_output=True,
                          check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {address}:{port}")


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    """A build host in its own network namespace: sshd (root, key only) and a web server serving its publish folder."""
    root = str(tmp_path_factory.mktemp("builder-host"))
    index = _free_index()
    namespace, host_link, ns_link = f"onpb-{index}", f"onpb-h{index}", f"onpb-n{index}"
    address, gateway = f"10.79.{index}.2", f"10.79.{index}.1"
    for name in ("id_ed25519", "ssh_host_ed25519_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(root, name)], check=True)
    shutil.copyfile(os.path.join(root, "id_ed25519.pub"), os.path.join(root, "authorized_keys"))
    www = os.path.join(root, "www")
    os.makedirs(www)
    with open(os.path.join(root, "sshd_config"), "w", encoding="utf-8") as handle:
        handle.write(f"ListenAddress {address}\nPort 22\nHostKey {root}/ssh_host_ed25519_key\n"
                     f"PidFile {root}/sshd.pid\nAuthorizedKeysFile {root}/authorized_keys\n"
                     "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n"
                     "LogLevel VERBOSE\nSubsystem sftp /usr/lib/openssh/sftp-server\n")
    os.makedirs("/run/sshd", exist_ok=True)
    setup = (f"set -e; ip netns add {namespace}; ip link add {host_link} type veth peer name {ns_link};"
             f"ip link set {ns_link} netns {namespace}; ip addr add {gateway}/24 dev {host_link}; ip link set {host_link} up;"
             f"ip netns exec {namespace} ip link set lo up;"
             f"ip netns exec {namespace} ip addr add {address}/24 dev {ns_link};"
             f"ip netns exec {namespace} ip link set {ns_link} up")
    subprocess.run(["bash", "-c", setup], check=True)
    web = None
    try:
        subprocess.run(["ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-f", os.path.join(root, "sshd_config"),
                        "-E", os.path.join(root, "sshd.log")], check=True)
        web = subprocess.Popen(["ip", "netns", "exec", namespace, VENV_PYTHON, "-m", "http.server", "8080", "--bind",
                                address, "--directory", www], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(address, 22)
        _wait_for_port(address, 8080)
        yield {"root": root, "address": address, "www": www, "url": f"http://{address}:8080",
               "key": os.path.join(root, "id_ed25519"), "sshd_log": os.path.join(root, "sshd.log")}
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        if os.path.exists(os.path.join(root, "sshd.pid")):
            with open(os.path.join(root, "sshd.pid"), encoding="ascii") as handle:
                os.kill(int(handle.read().strip()), signal.SIGTERM)
        subprocess.run(["bash", "-c", f"ip link del {host_link} 2>/dev/null; ip netns del {namespace}"], check=False)


@pytest.fixture(scope="module")
def lab(builder, node_iso, example_rpms, tmp_path_factory):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import (  # pylint: disable=import-outside-toplevel
        PluginBuildRequest, build_plugin)
    root = str(tmp_path_factory.mktemp("builders-lab"))
    plugin = build_plugin(PluginBuildRequest(
        name="vendor-agent", version="1.0", vendor="Example Vendor", summary="agent",
        rpms=[example_rpms.by_name["vendor-agent"]], output=root + "/", repos=[example_rpms.dir],
        target_iso=node_iso.iso, node_versions=">= 2.5.0, < 2.6")).path
    servers = {host: {"ansible_connection": "local", "ansible_python_interpreter": VENV_PYTHON,
                      "node_pxe_deploy_tftp_root": os.path.join(root, host, "tftp")} for host in SERVERS}
    servers["pxe-c"]["node_pxe_deploy_label"] = "node-c"  # another tree option: a tree of its own
    inventory = {"all": {"children": {
        "builders": {"hosts": {"builder1": {
            "ansible_host": builder["address"], "ansible_user": "root",
            "ansible_ssh_private_key_file": builder["key"],
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
            "ansible_python_interpreter": VENV_PYTHON,
            "node_iso_build_output_dir": os.path.join(builder["root"], "build"),
            "node_iso_build_publish_dir": builder["www"],
            "node_iso_build_publish_url": builder["url"],
            "node_iso_build_accelerator": "tcg"}}},
        "pxe_servers": {"vars": {"node_pxe_deploy_stage_dir": os.path.join(root, "stage")}, "hosts": servers},
    }}}
    path = os.path.join(root, "inventory.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle)
    return {"root": root, "inventory": path, "plugin": plugin, "base": node_iso.iso}


@pytest.fixture(scope="module")
def released(lab, builder):
    """site.yml with survey-style inputs: the base ISO and the plugin each one line with its sha256."""
    extra = {"node_iso_build_base_iso": f"{lab['base']} sha256:{_sha256(lab['base'])}",
             "node_iso_build_plugins": f"# survey text area: one plugin per line\n{lab['plugin']} "
                                       f"sha256:{_sha256(lab['plugin'])}\n"}
    run = play(lab["root"], lab["inventory"], "site.yml", extra)
    assert run.rc == 0, run.output[-8000:]
    return run


def test_the_build_ran_on_the_builder_over_ssh(released, builder):
    assert released.recap["builder1"]["changed"] > 0 and released.recap["builder1"]["failed"] == 0
    with open(builder["sshd_log"], encoding="utf-8", errors="replace") as handle:
        assert "Accepted publickey for root" in handle.read()
    built = os.listdir(os.path.join(builder["root"], "build"))
    assert "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso" in built and "SHA256SUMS" in built


def test_the_certified_iso_is_published_under_its_sha256(released, builder):
    folders = os.listdir(builder["www"])
    assert len(folders) == 1
    sha = folders[0]
    published = os.path.join(builder["www"], sha)
    assert sorted(os.listdir(published)) == ["SHA256SUMS", "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso",
                                             "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso.report.json"]
    assert _sha256(os.path.join(published, "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso")) == sha
    subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"], cwd=published, check=True)


def test_the_deploy_fetched_the_iso_by_url_and_staged_one_tree_per_distinct_input(released, lab, builder):
    sha = os.listdir(builder["www"])[0]
    stage = os.path.join(lab["root"], "stage")
    fetched = os.path.join(stage, "iso", "ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso")
    assert _sha256(fetched) == sha  # downloaded from the builder's web server and checked there
    trees = sorted(os.listdir(os.path.join(stage, "trees")))
    assert len(trees) == 2, trees
    links = {host: os.readlink(os.path.join(stage, host)) for host in SERVERS}
    assert links["pxe-a"] == links["pxe-b"] != links["pxe-c"]
    assert sorted({os.path.basename(link) for link in links.values()}) == trees
    release = f"2.5.0-1.0.fc17-{sha[:12]}"
    for host in SERVERS:
        current = os.path.join(lab["root"], host, "tftp", "ovirt-node", "current")
        assert os.readlink(current) == f"releases/{release}"
        subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"], cwd=current, check=True)
    with open(os.path.join(lab["root"], "pxe-c", "tftp", "ovirt-node", "current", "menus", "pxelinux.cfg"),
              encoding="utf-8") as handle:
        assert "LABEL node-c" in handle.read()


def test_a_url_with_a_wrong_checksum_is_refused_before_anything_switches(released, lab, builder):
    sha = os.listdir(builder["www"])[0]
    url = f"{builder['url']}/{sha}/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso"
    before = {host: os.readlink(os.path.join(lab["root"], host, "tftp", "ovirt-node", "current")) for host in SERVERS}
    run = play(lab["root"], lab["inventory"], "deploy.yml",
               {"node_pxe_deploy_iso": f"{url} sha256:{'0' * 64}", "node_pxe_deploy_fetch_attempts": 2,
                "node_pxe_deploy_stage_dir": os.path.join(lab["root"], "stage-wrong")})
    assert run.rc != 0
    assert f"node_pxe_deploy_iso: {url} does not have the expected sha256 {'0' * 64}" in run.output, run.output[-4000:]
    assert "attempt 2: its sha256 is " + sha in run.output
    assert {host: os.readlink(os.path.join(lab["root"], host, "tftp", "ovirt-node", "current"))
            for host in SERVERS} == before
    assert os.listdir(os.path.join(lab["root"], "stage-wrong", "iso")) == []


def _custom_stats(output: str) -> dict:
    """What set_stats published, as ansible-playbook prints it with ANSIBLE_SHOW_CUSTOM_STATS (AWX hands it on)."""
    found = re.search(r"CUSTOM STATS: \*+\n\s*RUN: (\{.*?\})\s*$", output, re.S | re.M)
    assert found, output[-3000:]
    return json.loads(found.group(1))


def test_build_verify_and_deploy_as_separate_jobs_chained_by_url(released, lab, builder, monkeypatch):
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "1")
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    build = play(lab["root"], lab["inventory"], "build.yml", {
        "node_iso_build_base_iso": lab["base"],
        "node_iso_build_plugins": [{"src": lab["plugin"], "checksum": f"sha256:{_sha256(lab['plugin'])}"}],
        "node_iso_build_output_dir": os.path.join(builder["root"], "workflow"),
        "node_iso_build_output_name": "node-workflow.iso"})
    assert build.rc == 0, build.output[-6000:]
    stats = _custom_stats(build.output)
    url, checksum = stats["node_pxe_deploy_iso"], stats["node_pxe_deploy_iso_checksum"]
    assert stats["node_iso_build_result"]["url"] == url and url.startswith(builder["url"] + "/")
    assert stats["node_iso_verify_iso"] == url and stats["node_iso_verify_iso_checksum"] == checksum
    sha = checksum.split(":", 1)[1]
    assert _sha256(os.path.join(builder["www"], sha, "node-workflow.iso")) == sha
    assert os.path.isfile(os.path.join(builder["www"], sha, "node-workflow.iso.report.json"))

    verify = play(lab["root"], lab["inventory"], "verify.yml", {
        "node_iso_verify_iso": stats["node_iso_verify_iso"], "node_iso_verify_iso_checksum": checksum,
        "node_iso_verify_inputs_dir": os.path.join(builder["root"], "verify-inputs"),
        "node_iso_verify_publish_dir": builder["www"], "node_iso_verify_publish_url": builder["url"]})
    assert verify.rc == 0, verify.output[-6000:]
    verified = _custom_stats(verify.output)
    assert verified["node_iso_verify_result"]["certified"] is True
    assert (verified["node_pxe_deploy_iso"], verified["node_pxe_deploy_iso_checksum"]) == (url, checksum)
    # The verify job fetched the ISO by URL on the builder, checked it, and published its own report.
    assert _sha256(os.path.join(builder["root"], "verify-inputs", "node-workflow.iso")) == sha

    deploy = play(lab["root"], lab["inventory"], "deploy.yml", {
        "node_pxe_deploy_iso": verified["node_pxe_deploy_iso"],
        "node_pxe_deploy_iso_checksum": verified["node_pxe_deploy_iso_checksum"]})
    assert deploy.rc == 0, deploy.output[-6000:]
    for host in SERVERS:
        current = os.readlink(os.path.join(lab["root"], host, "tftp", "ovirt-node", "current"))
        assert current == f"releases/2.5.0-1.0.fc17-{sha[:12]}"
