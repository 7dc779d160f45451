# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hot-add onto a booted fixture Node: Ansible over SSH (playbooks/hotadd.yml, no Python on the Node) and
``ovirt-plugin-build hotadd``.

One stateful Node (a config disk) boots for the module, under TCG; the tests run in file order on it:
the playbook adds vendor-agent 1.0 and the running Node shows it (rpm -q, its record, what its RPM
%post and its recipe %post did, its declared path persisted); a second run changes nothing; check
mode plans the upgrade to 1.1 and changes nothing; the CLI upgrades; a downgrade, a recipe for images
(part, bootloader, %pre, %post --nochroot) and a plugin for another Node version are refused before
anything changes; a failing %post leaves no record and no half-installed package.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from tests.fixtures._cache import REPO_ROOT
from tests.fixtures.node_vm import NodeVM, make_config_disk
from tests.unit.plugins.modules.module_docs import assert_returns_documented

RPM = "/usr/bin/rpm"  # the Node's rpm (busybox's ash would run its own 'rpm' applet for a bare 'rpm')
AGENT_CONF = "/etc/vendor-agent/agent.conf"
RECIPE_POST = "/etc/vendor-agent/recipe-post.txt"


@dataclasses.dataclass
class Lab:
    root: str
    node: NodeVM
    inventory: str
    plugins: dict[str, str]


@dataclasses.dataclass
class PlayRun:
    rc: int
    stats: dict
    results: list[dict]  # the node_plugin_hotadd results of the loop
    output: str  # the tail, for messages
    stdout: str


def _recipe(folder: str, name: str, body: str) -> str:
    path = os.path.join(folder, f"{name}.ks")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(body)
    return path


def _pack(folder: str, name: str, version: str, rpm: str, example_rpms, base_iso: str, *, recipe: str,
          versions: str = ">=2.5.0, <2.6", persist: tuple[str, ...] = ()) -> str:
    out = os.path.join(folder, f"{name}-{version}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}")
    os.makedirs(out)
    result = build_plugin(PluginBuildRequest(
        name=name, version=version, rpms=[rpm], repos=[example_rpms.dir], output=out + "/", target_iso=base_iso,
        node_product="ovirt-node-iso", node_versions=versions, persist=list(persist),
        recipe=_recipe(out, name, recipe)))
    return result.path


def _packages_recipe(name: str, package: str, post: str = "") -> str:
    return (f"repo --name={name} --baseurl=file://rpms\n%packages\n{package}\n%end\n"
            + (f"%post\n{post}%end\n" if post else ""))


@pytest.fixture(scope="module")
def lab(node_iso, example_rpms, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hotadd"))
    agent_post = f"echo recipe post ran for $(cat /etc/ovirt-plugins.d/vendor-agent.firewall | tail -1) > {RECIPE_POST}\n"
    plugins = {
        "agent-1.0": _pack(root, "vendor-agent", "1.0", example_rpms.by_name["vendor-agent"], example_rpms,
                           node_iso.iso, recipe=_packages_recipe("vendor-agent", "vendor-agent", agent_post),
                           persist=(AGENT_CONF,)),
        "agent-1.1": _pack(root, "vendor-agent", "1.1", example_rpms.by_name["vendor-agent-1.1"], example_rpms,
                           node_iso.iso, recipe=_packages_recipe("vendor-agent", "vendor-agent", agent_post),
                           persist=(AGENT_CONF,)),
        "failing-post": _pack(root, "hello-plugin", "0.1", example_rpms.by_name["hello-plugin"], example_rpms,
                              node_iso.iso, recipe=_packages_recipe("hello-plugin", "hello-plugin",
                                                                    "echo about to fail\nexit 3\n")),
        "image-recipe": _pack(root, "hello-plugin", "0.1", example_rpms.by_name["hello-plugin"], example_rpms,
                              node_iso.iso, recipe=(
                                  "repo --name=hello --baseurl=file://rpms\npart / --size 2048\n"
                                  "bootloader --append \"hello.debug=1\"\n%packages\nhello-plugin\n%end\n"
                                  "%pre\necho pre\n%end\n%post --nochroot\necho $LIVE_ROOT\n%end\n")),
        "future-node": _pack(root, "hello-plugin", "0.2", example_rpms.by_name["hello-plugin"], example_rpms,
                             node_iso.iso, recipe=_packages_recipe("hello-plugin", "hello-plugin"), versions=">=3.0"),
    }
    node = NodeVM(node_iso.iso, os.path.join(root, "node"), config_disk=make_config_disk(os.path.join(root, "config.img")))
    node.boot()
    print(f"Node up (SSH) in {node.boot_seconds} s")
    inventory = os.path.join(root, "inventory.yml")
    host = dict(node.inventory_host())
    host["ansible_ssh_common_args"] += " -o ServerAliveInterval=15 -o ServerAliveCountMax=20"
    with open(inventory, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"all": {"children": {"nodes": {"hosts": {"node1": host}}}}}, handle)
    try:
        yield Lab(root=root, node=node, inventory=inventory, plugins=plugins)
    finally:
        node.power_off()


_RECAP = re.compile(r"^node1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
_ITEM = re.compile(r"^(?:ok|changed|failed|fatal): \[node1\](?: =>)? \(item=[^)]*\) => ", re.M)


def _item_results(output: str, task: str) -> list[dict]:
    """The JSON result of each loop item of one task, from the default callback's output (result_format json)."""
    section = output.split(f": {task}] ", 1)[-1].split("\nTASK [", 1)[0]
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(section, match.end())[0] for match in _ITEM.finditer(section)]


def play(lab: Lab, plugins: list[str], *args: str) -> PlayRun:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO_ROOT, ".venv", "collections"),
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_TIMEOUT="120",
               ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(lab.root, "cp"))
    vars_file = os.path.join(lab.root, "hotadd-vars.yml")
    with open(vars_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"node_plugin_hotadd_plugins": [{"src": lab.plugins[key], "checksum": "sha256:" + _sha256(
            lab.plugins[key])} for key in plugins]}, handle)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-v", "-i", lab.inventory,
               os.path.join(REPO_ROOT, "playbooks", "hotadd.yml"), "-e", f"@{vars_file}", *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1800,
                          stdin=subprocess.DEVNULL)
    print(f"hotadd.yml {' '.join(args)}: exit {done.returncode} in {time.monotonic() - started:.1f} s")
    recap = _RECAP.search(done.stdout.split("PLAY RECAP")[-1])
    assert recap, f"no recap (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    stats = dict(zip(("ok", "changed", "unreachable", "failures"), map(int, recap.groups())))
    return PlayRun(rc=done.returncode, stats=stats, results=_item_results(done.stdout, "Hot-add the plugins"),
                   output=done.stdout[-8000:] + done.stderr[-4000:], stdout=done.stdout)


def cli(lab: Lab, key: str, *args: str) -> subprocess.CompletedProcess:
    node = lab.node
    command = [os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build"), "hotadd",
               "--host", f"root@127.0.0.1:{node.port}", "--plugin", lab.plugins[key], "--identity", node.key,
               "--ssh-option", f"UserKnownHostsFile={node.known_hosts}", "--ssh-option", "StrictHostKeyChecking=yes",
               *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800, stdin=subprocess.DEVNULL)
    print(f"ovirt-plugin-build hotadd {key} {' '.join(args)}: exit {done.returncode} in {time.monotonic() - started:.1f} s")
    return done


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _installed(lab: Lab, *names: str) -> list[str]:
    """name-version-release of each of the packages the Node's rpm database has."""
    listing = lab.node.ssh(f"{RPM} -qa --qf '%{{NAME}} %{{VERSION}}-%{{RELEASE}}\\n'").stdout.split("\n")
    found = dict(line.split(" ", 1) for line in listing if " " in line)
    return [f"{name}-{found[name]}" for name in names if name in found]


def test_the_node_runs_no_python_ansible_could_use(lab):
    """ansible-core 2.19 needs Python 3 on a managed host; the Node has none, so hot-add must not need it."""
    assert lab.node.ssh("command -v python3", check=False).returncode != 0


def test_the_playbook_hot_adds_the_plugin_to_the_running_node(lab):
    run = play(lab, ["agent-1.0"])
    assert run.rc == 0 and run.stats["changed"] > 0, run.output
    [result] = run.results
    assert result["changed"] and result["reason"] == "hot-added"
    assert sorted(result["installed"]) == ["vendor-agent-1.0-1.noarch", "vendor-agent-lib-1.0-1.noarch"]
    assert result["records"] == ["/etc/ovirt-plugins.d/vendor-agent"]
    assert result["persist"]["persisted"] == [AGENT_CONF]
    assert result["node"]["stateful"] and result["node"]["version"] == "2.5.0"
    assert "until the Node reboots" in result["lasts"] and "until the Node reboots" in result["msg"]
    assert_returns_documented("node_plugin_hotadd", {key: value for key, value in result.items()
                                                     if key not in ("ansible_loop_var", "item")})
    # The running Node shows it, without a reboot.
    assert _installed(lab, "vendor-agent", "vendor-agent-lib") == ["vendor-agent-1.0-1", "vendor-agent-lib-1.0-1"]
    record = lab.node.read("/etc/ovirt-plugins.d/vendor-agent").splitlines()
    assert record[:2] == ["Name:vendor-agent", "Version:1.0-1.noarch"] and record[2].startswith("Install Date:")
    assert "vendor-agent post ran 1.0-1 (1)" in lab.node.read("/etc/node-marker.d/vendor-agent")
    assert lab.node.read(RECIPE_POST) == "recipe post ran for 7777,tcp\n"
    assert lab.node.ssh("/opt/vendor-agent/bin/vendor-agent").stdout == "vendor-agent 1.0\n"
    assert AGENT_CONF in lab.node.read("/config/files").splitlines()
    assert f" {AGENT_CONF} " in lab.node.read("/proc/mounts")
    assert lab.node.ssh("ls /tmp").stdout.strip() == "", "the private folder on the Node is removed"


def test_a_second_run_changes_nothing(lab):
    run = play(lab, ["agent-1.0"])
    assert run.rc == 0 and run.stats["changed"] == 0, run.output
    [result] = run.results
    assert not result["changed"] and result["reason"].startswith("already hot-added")
    assert result["installed"] == [] and result["records"] == [] and result["persist"]["already"] == [AGENT_CONF]
    assert lab.node.read("/etc/node-marker.d/vendor-agent").count("post ran") == 1


def test_check_mode_plans_the_upgrade_and_changes_nothing(lab):
    before = lab.node.read("/etc/ovirt-plugins.d/vendor-agent")
    run = play(lab, ["agent-1.1"], "--check", "--diff")
    assert run.rc == 0 and run.stats["changed"] > 0, run.output
    [result] = run.results
    assert result["reason"] == "would hot-add" and result["installed"] == ["vendor-agent-1.1-1.noarch"]
    assert result["upgraded"] == [{"name": "vendor-agent", "from": "vendor-agent-1.0-1.noarch",
                                   "to": "vendor-agent-1.1-1.noarch"}]
    assert "\n-vendor-agent: vendor-agent-1.0-1.noarch\n+vendor-agent: vendor-agent-1.1-1.noarch\n" in run.stdout
    assert [step["step"] for step in result["steps"]] == ["rpm -U --test"]
    assert _installed(lab, "vendor-agent") == ["vendor-agent-1.0-1"]
    assert lab.node.read("/etc/ovirt-plugins.d/vendor-agent") == before


def test_the_command_line_upgrades_to_the_new_release(lab):
    done = cli(lab, "agent-1.1", "--json")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["plugins"]
    assert result["upgraded"] == [{"name": "vendor-agent", "from": "vendor-agent-1.0-1.noarch",
                                   "to": "vendor-agent-1.1-1.noarch"}]
    assert result["persist"]["already"] == [AGENT_CONF] and "persisted" not in result["persist"]
    assert _installed(lab, "vendor-agent") == ["vendor-agent-1.1-1"]
    assert lab.node.read("/etc/ovirt-plugins.d/vendor-agent").splitlines()[1] == "Version:1.1-1.noarch"
    marker = lab.node.read("/etc/node-marker.d/vendor-agent")
    assert "vendor-agent post ran 1.1-1 (2)" in marker and "vendor-agent preun ran 1.0-1 (1)" in marker
    assert lab.node.ssh("/opt/vendor-agent/bin/vendor-agent").stdout == "vendor-agent 1.1\n"
    again = cli(lab, "agent-1.1")
    assert again.returncode == 0 and "already hot-added" in again.stdout, again.stderr


def test_a_downgrade_is_refused(lab):
    done = cli(lab, "agent-1.0")
    assert done.returncode == 2
    assert "has newer packages than the plugin vendor-agent 1.0" in done.stderr and "does not downgrade" in done.stderr
    assert _installed(lab, "vendor-agent") == ["vendor-agent-1.1-1"]


def test_a_recipe_for_images_is_refused_before_anything_changes(lab):
    done = cli(lab, "image-recipe")
    assert done.returncode == 2
    for directive in ("line 2: 'part'", "line 3: 'bootloader'", "'%pre'", "'%post --nochroot'"):
        assert directive in done.stderr, done.stderr
    assert "rebuilt with the plugin carries it" in done.stderr
    assert _installed(lab, "hello-plugin") == []


def test_a_plugin_for_another_node_version_is_refused(lab):
    done = cli(lab, "future-node")
    assert done.returncode == 2 and "needs Node >=3.0, not 2.5.0-1.0.fc17" in done.stderr
    assert _installed(lab, "hello-plugin") == []


def test_a_failing_post_leaves_no_record_and_no_package(lab):
    others = _installed(lab, "vendor-agent", "vendor-agent-lib")
    run = play(lab, ["failing-post"])
    assert run.rc != 0 and run.stats["failures"] == 1, run.output
    [result] = run.results
    assert "%post (line 5) failed with exit status 3" in result["msg"], result
    assert "no record written" in result["msg"] and "erased again: hello-plugin" in result["msg"]
    assert "about to fail" in result["msg"]
    assert _installed(lab, "hello-plugin") == []
    assert lab.node.ssh("test -e /etc/ovirt-plugins.d/hello-plugin || test -e /opt/hello", check=False).returncode != 0
    assert _installed(lab, "vendor-agent", "vendor-agent-lib") == others, "the other plugin is untouched"
