# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Persistence of plugin paths on the fixture Node, across real reboots under TCG (five boots, two at a time).

- Hot-add, stateful: vendor-agent hot-added to a Node with a config disk, its declared agent.conf edited
  by the admin; the Node boots again with the same disk: the edit is there, the hot-added package is not
  (a hot-add lasts until the reboot).
- ISO, stateful: an ISO with the plugin in its image and the files _persist.image_files() gives a rebuild
  (the boot hook and the plugin's list), plus a config/ folder at the ISO's top: the first boot with an
  empty config disk persists agent.conf through the Node's persist and copies config/ into /config; an
  edit survives the second boot with the same disk.
- ISO, stateless: the same ISO without a config disk boots, the plugin runs, and the boot log says
  agent.conf is not kept; so does a hot-add of the plugin there.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _persist as persist
from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import rewrite_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import (extract_root_image,
                                                                                 squashfs_superblock)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import open_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rootfs import RootImageSession
from tests.fixtures.nodeiso import FixtureSpec
from tests.fixtures.node_vm import NodeVM, make_config_disk

AGENT_CONF = "/etc/vendor-agent/agent.conf"
SITE_CONF = "/etc/ovirt-node/site.conf"
EDIT = "port=8888 # edited by the admin\n"
RPM = "/usr/bin/rpm"


@dataclasses.dataclass
class Boot:
    """What one boot of a Node showed: the console and the answers to the questions asked over SSH."""

    console: str
    answers: dict[str, str]
    seconds: float


def _boot(iso: str, workdir: str, questions: dict[str, str], *, config_disk: str | None = None,
          actions: tuple[str, ...] = (), before=None) -> Boot:
    """Boot, run ``before(node)`` and then each action, ask each question (a shell command), power off."""
    with NodeVM(iso, workdir, config_disk=config_disk) as node:
        if before is not None:
            before(node)
        for action in actions:
            node.ssh(action)
        answers = {name: node.ssh(command, check=False).stdout for name, command in questions.items()}
        console = node.console
        seconds = node.boot_seconds
    return Boot(console=console, answers=answers, seconds=seconds)


QUESTIONS = {
    "agent_conf": f"cat {AGENT_CONF}",
    "config_files": "cat /config/files 2>/dev/null",
    "mounts": "cat /proc/mounts",
    "installed": f"{RPM} -q vendor-agent 2>&1; true",
    "agent": "/opt/vendor-agent/bin/vendor-agent 2>&1; true",
    "site_conf": f"cat {SITE_CONF} 2>/dev/null",
    "hooks_log": "cat /var/log/ovirt-hooks.log 2>/dev/null",
}


def _plugin(example_rpms, base_iso: str, folder: str) -> str:
    os.makedirs(folder)
    return build_plugin(PluginBuildRequest(
        name="vendor-agent", version="1.0", rpms=[example_rpms.by_name["vendor-agent"]], repos=[example_rpms.dir],
        output=folder + "/", target_iso=base_iso, node_versions=">=2.5.0, <2.6", persist=[AGENT_CONF])).path


def _iso_with_plugin(base_iso: str, plugin: str, workdir: str) -> str:
    """The base (the plugin's packages preinstalled) + what _persist gives a rebuild + a top-level config/ folder."""
    squash_root = os.path.join(workdir, "squash")
    root_image = extract_root_image(base_iso, os.path.join(squash_root, "LiveOS"))
    files = persist.image_files([open_plugin(plugin).manifest])
    with RootImageSession(root_image) as session:
        for path, image_file in files.items():
            session.write(path, image_file.content, mode=image_file.mode)
    squashfs = os.path.join(workdir, "squashfs.img")
    superblock = squashfs_superblock(base_iso)
    subprocess.run(["mksquashfs", squash_root, squashfs, "-noappend", "-no-progress", "-quiet", "-all-root",
                    "-comp", superblock.compressor, "-b", str(superblock.block_size)], check=True, capture_output=True)
    config = os.path.join(workdir, "config")
    os.makedirs(os.path.join(config, os.path.dirname(SITE_CONF).lstrip("/")))
    with open(os.path.join(config, SITE_CONF.lstrip("/")), "w", encoding="utf-8") as handle:
        handle.write("from the ISO's config folder\n")
    with open(os.path.join(config, "files"), "w", encoding="utf-8") as handle:
        handle.write(f"{SITE_CONF}\n")
    dest = os.path.join(workdir, "node-with-vendor-agent.iso")
    rewrite_iso(base_iso, dest, replace_files={"LiveOS/squashfs.img": squashfs}, add_files={"config": config},
                implant=True)
    return dest


def _cli_hotadd(node: NodeVM, plugin: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build"), "hotadd",
                           "--host", f"root@127.0.0.1:{node.port}", "--plugin", plugin, "--identity", node.key,
                           "--ssh-option", f"UserKnownHostsFile={node.known_hosts}", *args],
                          capture_output=True, text=True, check=False, timeout=1800, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done


def _hotadd_then_edit(plugin: str):
    def act(node: NodeVM) -> None:
        done = _cli_hotadd(node, plugin)
        assert f"persisted: {AGENT_CONF}" in done.stdout, done.stdout
        node.ssh(f"printf %s {shlex.quote(EDIT)} >> {AGENT_CONF}")
    return act


@pytest.fixture(scope="module")
def boots(node_iso_factory, example_rpms, tmp_path_factory) -> dict[str, Boot]:
    root = str(tmp_path_factory.mktemp("persistence"))
    base = node_iso_factory()
    plugin = _plugin(example_rpms, base.iso, os.path.join(root, "plugin"))
    with_plugin = node_iso_factory(FixtureSpec(plugins=("vendor-agent", "vendor-agent-lib")))
    started = time.monotonic()
    iso = _iso_with_plugin(with_plugin.iso, plugin, os.path.join(root, "iso"))
    print(f"ISO with the plugin and the persistence files written in {time.monotonic() - started:.1f} s")
    hotadd_disk = make_config_disk(os.path.join(root, "hotadd-config.img"))
    iso_disk = make_config_disk(os.path.join(root, "iso-config.img"))

    def hotadd_sequence() -> dict[str, Boot]:
        first = _boot(base.iso, os.path.join(root, "h1"), QUESTIONS, config_disk=hotadd_disk,
                      before=_hotadd_then_edit(plugin))
        before_rehotadd = {}

        def look_then_hotadd_again(node: NodeVM) -> None:
            before_rehotadd["installed"] = node.ssh(f"{RPM} -q vendor-agent 2>&1; true").stdout
            before_rehotadd["agent_conf"] = node.read(AGENT_CONF)
            before_rehotadd["mounts"] = node.read("/proc/mounts")
            before_rehotadd["hotadd"] = _cli_hotadd(node, plugin, "--json").stdout

        second = _boot(base.iso, os.path.join(root, "h2"), QUESTIONS, config_disk=hotadd_disk,
                       before=look_then_hotadd_again)
        second.answers.update({f"{name}_before_rehotadd": answer for name, answer in before_rehotadd.items()})
        return {"hotadd-first": first, "hotadd-second": second}

    def iso_sequence() -> dict[str, Boot]:
        first = _boot(iso, os.path.join(root, "i1"), QUESTIONS, config_disk=iso_disk,
                      actions=(f"printf %s {shlex.quote(EDIT)} >> {AGENT_CONF}",))
        second = _boot(iso, os.path.join(root, "i2"), QUESTIONS, config_disk=iso_disk)
        return {"iso-first": first, "iso-second": second}

    def stateless() -> dict[str, Boot]:
        hotadd_outputs = []
        boot = _boot(iso, os.path.join(root, "s1"), QUESTIONS,
                     before=lambda node: hotadd_outputs.append(_cli_hotadd(node, plugin, "--json")))
        boot.answers["hotadd"] = hotadd_outputs[0].stdout
        return {"iso-stateless": boot}

    # Two TCG guests at a time do not slow each other on two cores.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(hotadd_sequence), pool.submit(iso_sequence)]
        futures.append(pool.submit(stateless))
        results = {}
        for future in futures:
            results.update(future.result())
    for name, boot in results.items():
        print(f"boot {name}: SSH after {boot.seconds} s")
    return results


def test_hot_added_package_lasts_until_the_reboot_and_the_persisted_edit_survives_it(boots):
    first, second = boots["hotadd-first"], boots["hotadd-second"]
    assert first.answers["installed"].strip() == "vendor-agent-1.0-1.noarch"
    assert first.answers["agent_conf"].endswith(EDIT)
    assert f" {AGENT_CONF} ext4 " in first.answers["mounts"]
    assert second.answers["installed_before_rehotadd"].strip() == "package vendor-agent is not installed"
    assert second.answers["agent_conf_before_rehotadd"] == "server=manager.example.com\nport=7777\n" + EDIT
    assert f" {AGENT_CONF} ext4 " in second.answers["mounts_before_rehotadd"], "bind-mounted early at boot"
    assert second.answers["config_files"].splitlines() == [AGENT_CONF]


def test_hot_adding_again_after_the_reboot_keeps_the_persisted_edit(boots):
    """rpm leaves the existing %config(noreplace) file alone (agent.conf.rpmnew): the bind mount keeps the edit."""
    second = boots["hotadd-second"]
    [result] = json.loads(second.answers["hotadd_before_rehotadd"])["plugins"]
    assert result["changed"] and result["persist"]["already"] == [AGENT_CONF]
    assert second.answers["installed"].strip() == "vendor-agent-1.0-1.noarch"
    assert second.answers["agent_conf"].endswith(EDIT)


def test_an_iso_with_the_plugin_persists_its_declared_paths_at_first_boot(boots):
    first = boots["iso-first"]
    assert "NODE-STATE stateful" in first.console
    assert f"ovirt-plugins-persist: vendor-agent: persisted: {AGENT_CONF}" in first.console
    assert first.answers["config_files"].splitlines() == [SITE_CONF, AGENT_CONF]
    assert f" {AGENT_CONF} ext4 " in first.answers["mounts"]
    assert first.answers["agent"].strip() == "vendor-agent 1.0"


def test_the_isos_config_folder_is_copied_into_config_and_bind_mounted(boots):
    first = boots["iso-first"]
    assert first.answers["site_conf"] == "from the ISO's config folder\n"
    assert f" {SITE_CONF} ext4 " in first.answers["mounts"]


def test_an_edit_of_a_persisted_path_survives_a_reboot_of_the_rebuilt_iso(boots):
    second = boots["iso-second"]
    assert second.answers["agent_conf"].endswith(EDIT)
    assert f"ovirt-plugins-persist: vendor-agent: already persisted: {AGENT_CONF}" in second.console
    assert second.answers["config_files"].splitlines() == [SITE_CONF, AGENT_CONF], "persisted once, not again"


def test_the_same_iso_runs_stateless_and_its_boot_log_says_what_is_not_kept(boots):
    boot = boots["iso-stateless"]
    assert "NODE-STATE stateless" in boot.console
    assert (f"ovirt-plugins-persist: vendor-agent: not kept, stateless Node (no config volume at /config): "
            f"{AGENT_CONF}") in boot.console
    assert boot.answers["agent"].strip() == "vendor-agent 1.0"
    assert boot.answers["agent_conf"] == "server=manager.example.com\nport=7777\n"
    assert " /config " not in boot.answers["mounts"] and boot.answers["site_conf"] == ""
    assert "not kept" in boot.answers["hooks_log"]


def test_a_hot_add_on_a_stateless_node_says_what_is_not_kept(boots):
    """The ISO already has vendor-agent 1.0 with its records: no change, and the declared path is reported."""
    [result] = json.loads(boots["iso-stateless"].answers["hotadd"])["plugins"]
    assert not result["changed"] and not result["node"]["stateful"]
    assert result["persist"]["not_kept"] == [AGENT_CONF]
    assert any("stateless Node" in warning and AGENT_CONF in warning for warning in result["warnings"])
