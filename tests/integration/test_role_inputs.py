# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' inputs as an operator or an AWX survey gives them: required variables are enforced by the
argument specs, a bad input is refused in the role's own variable names before any work, and every stage of
the roles carries its tag."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.playbook_run import TOP, play


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("role-inputs"))
    inventory = {"all": {"children": {
        "builders": {"hosts": {"localhost": {"ansible_connection": "local",
                                             "ansible_python_interpreter": sys.executable}}},
        "pxe_servers": {"hosts": {"pxe-a": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                            "node_pxe_deploy_tftp_root": os.path.join(root, "tftp"),
                                            "node_pxe_deploy_stage_dir": os.path.join(root, "stage")}}}}}}
    path = os.path.join(root, "inventory.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle)
    plugin = os.path.join(root, "vendor-agent-1.0.plugin.tar.gz")
    with open(plugin, "wb") as handle:
        handle.write(b"not checked before its checksum")
    return {"root": root, "inventory": path, "plugin": plugin}


@pytest.mark.parametrize("playbook, missing", [
    ("build.yml", "node_iso_build_base_iso"),
    ("verify.yml", "node_iso_verify_iso"),
    ("package_plugin.yml", "node_plugin_package_name, node_plugin_package_rpms, node_plugin_package_version"),
])
def test_required_variables_are_named_by_the_argument_specs(lab, playbook, missing):
    run = play(lab["root"], lab["inventory"], playbook, {})
    assert run.rc != 0 and run.recap["localhost"]["failed"] == 1
    assert f"missing required arguments: {missing}" in run.output, run.output[-3000:]


@pytest.mark.parametrize("extra, words", [
    ({"node_iso_build_base_iso": "https://mirror.example.com/ovirt-node-iso-2.5.0-1.0.fc17.iso"},
     "node_iso_build_base_iso: the URL 'https://mirror.example.com/ovirt-node-iso-2.5.0-1.0.fc17.iso' has no checksum"),
    ({"node_iso_build_base_iso": "/srv/does-not-exist.iso"},
     "node_iso_build_base_iso: /srv/does-not-exist.iso: the artifact is not a file on this host"),
    ({"node_iso_build_base_iso": "{plugin}", "node_iso_build_plugins": "{plugin} sha256:" + "1" * 64},
     "node_iso_build_plugins: {plugin}: the file has the sha256 {sha}, not the expected " + "1" * 64),
    ({"node_iso_build_base_iso": "{plugin}", "node_iso_build_plugins": [{"checksum": "sha256:" + "1" * 64}]},
     "node_iso_build_plugins: an artifact"),
    ({"node_iso_build_base_iso": "{plugin}", "node_iso_build_publish_url": "http://builder1/artifacts"},
     "node_iso_build_publish_dir whenever node_iso_build_publish_url is set"),
])
def test_bad_build_inputs_are_refused_in_the_roles_own_names(lab, extra, words):
    with open(lab["plugin"], "rb") as handle:
        sha = hashlib.sha256(handle.read()).hexdigest()
    filled = yaml.safe_load(yaml.safe_dump(extra).replace("{plugin}", lab["plugin"]))
    filled["node_iso_build_output_dir"] = os.path.join(lab["root"], "out")
    run = play(lab["root"], lab["inventory"], "build.yml", filled)
    assert run.rc != 0
    assert words.format(plugin=lab["plugin"], sha=sha) in run.output, run.output[-3000:]
    assert not os.path.exists(os.path.join(lab["root"], "out", "SHA256SUMS"))


def test_a_bad_iso_for_verify_and_deploy_is_refused_in_their_names(lab):
    run = play(lab["root"], lab["inventory"], "verify.yml", {"node_iso_verify_iso": f"{lab['plugin']} sha256:{'2' * 64}"})
    assert run.rc != 0 and f"node_iso_verify_iso: {lab['plugin']}: the file has the sha256" in run.output
    run = play(lab["root"], lab["inventory"], "deploy.yml", {"node_pxe_deploy_iso": "http://mirror.example.com/n.iso"})
    assert run.rc != 0 and "node_pxe_deploy_iso: the URL 'http://mirror.example.com/n.iso' has no checksum" in run.output


ROLE_TAGS = {
    "node_iso_build": {"node_iso_build_fetch", "node_iso_build_apply", "node_iso_build_verify", "node_iso_build_publish"},
    "node_iso_verify": {"node_iso_verify_fetch", "node_iso_verify_check", "node_iso_verify_publish"},
    "node_pxe_deploy": {"node_pxe_deploy_stage", "node_pxe_deploy_copy", "node_pxe_deploy_menus",
                        "node_pxe_deploy_switch", "node_pxe_deploy_prune", "node_pxe_deploy_check"},
    "node_plugin_package": {"node_plugin_package_build"},
}


def test_every_stage_of_the_roles_has_its_tag(lab):
    listed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab["inventory"],
                             "--list-tags", os.path.join(TOP, "playbooks", "site.yml"),
                             os.path.join(TOP, "playbooks", "package_plugin.yml")],
                            capture_output=True, text=True, check=True, cwd=TOP, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".venv", "collections")))
    tags = {tag.strip() for found in re.findall(r"TASK TAGS: \[([^\]]*)\]", listed.stdout) for tag in found.split(",")}
    for role, expected in ROLE_TAGS.items():
        assert expected <= tags, f"{role}: {sorted(expected - tags)} missing from {sorted(tags)}"
    # The documented tags are the ones the roles carry.
    for role, expected in ROLE_TAGS.items():
        with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
            described = set(re.findall(r"C\((%s_[a-z]+)\)" % role, handle.read()))
        assert expected <= described, f"{role}: argument_specs.yml does not describe {sorted(expected - described)}"


@pytest.mark.parametrize("role, required", [
    ("node_iso_build", {"node_iso_build_base_iso"}), ("node_iso_verify", {"node_iso_verify_iso"}),
    ("node_plugin_package", {"node_plugin_package_name", "node_plugin_package_version", "node_plugin_package_rpms"}),
])
def test_required_variables_have_no_default(role, required):
    with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    with open(os.path.join(TOP, "roles", role, "defaults", "main.yml"), encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle) or {}
    assert {name for name, spec in options.items() if spec.get("required")} == required
    assert not required & set(defaults)
    assert all("default" not in options[name] for name in required)
    assert set(defaults) == set(options) - required  # every other option has its documented default
    for name, value in defaults.items():
        assert options[name]["default"] == value, name
