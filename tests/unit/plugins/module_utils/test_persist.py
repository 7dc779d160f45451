# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_persist: which paths a plugin may declare, the packager's check against real RPMs, the files a rebuild
writes, and the shell that persists (checked by the shells a Node may have; it runs for real in
tests/integration/test_persistence.py)."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _persist as persist
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmhdr import read_header
from tests.fixtures.rpms import build_example_rpms


@dataclasses.dataclass(frozen=True)
class _Manifest:
    """The fields of a PluginManifest that image_files reads."""

    name: str
    version: str
    persist: tuple[str, ...]


@pytest.mark.parametrize("path", ["/etc/vendor-agent/agent.conf", "/etc/vendor-agent", "/var/lib/vendor-agent/state",
                                  "/opt/vendor/etc/a_b-c.conf"])
def test_plain_paths_below_etc_opt_var_lib_can_be_declared(path):
    assert persist.path_problem(path) is None


@pytest.mark.parametrize("path, problem", [
    ("etc/relative", "absolute"), ("/etc", "not below"), ("/usr/bin/tool", "not below"), ("/var/log/x", "not below"),
    ("/etc/with space", "plain path"), ("/etc/x/../shadow", "plain path"), ("/etc/x/", "plain path"),
    ("/etc/$(reboot)", "plain path"), ("/etc/x\nrm", "plain path"), ("/etc//x", "plain path"),
    ("/etc/ovirt-plugins.d/vendor-agent", "bookkeeping"), ("/config/files", "bookkeeping"),
    ("/etc/" + "a" * 1100, "longer")])
def test_other_paths_are_refused_with_the_reason(path, problem):
    assert problem in persist.path_problem(path)


def test_check_declared_names_every_offender_once():
    with pytest.raises(NodePluginError) as caught:
        persist.check_declared("vendor-agent", ["/etc/ok.conf", "/etc", "/usr/x"], where="plugin.tar.gz")
    assert "2 persist path(s)" in caught.value.message and caught.value.path == "plugin.tar.gz"
    assert "'/etc'" in caught.value.details and "'/usr/x'" in caught.value.details
    assert "/etc/ok.conf" not in caught.value.details


@pytest.fixture(scope="module")
def vendor_headers():
    examples = build_example_rpms()
    return [read_header(examples.by_name["vendor-agent"]), read_header(examples.by_name["vendor-agent-lib"])]


def test_packager_check_accepts_files_and_folders_of_the_packages(vendor_headers):
    persist.check_persist_paths("vendor-agent", ["/etc/vendor-agent/agent.conf", "/etc/vendor-agent"],
                                vendor_headers, post_scripts=[])


def test_packager_check_accepts_paths_a_recipe_post_creates(vendor_headers):
    script = "mkdir -p /var/lib/vendor-agent\necho ready > /var/lib/vendor-agent/state\n"
    persist.check_persist_paths("vendor-agent", ["/var/lib/vendor-agent/state"], vendor_headers, [script])


def test_packager_check_reads_the_packages_own_post_scriptlet(vendor_headers):
    """vendor-agent's %post writes /etc/node-marker.d/vendor-agent: the RPM's scriptlet counts as its %post."""
    persist.check_persist_paths("vendor-agent", ["/etc/node-marker.d/vendor-agent"], vendor_headers, [])


def test_packager_check_refuses_paths_nothing_makes(vendor_headers):
    script = "echo x > /var/lib/vendor-agent/state.db\n"  # a longer name is not the declared path
    with pytest.raises(NodePluginError) as caught:
        persist.check_persist_paths("vendor-agent", ["/var/lib/vendor-agent/state", "/etc/vendor-agent/agent.conf",
                                                     "/etc/other.conf"], vendor_headers, [script])
    assert "2 persist path(s)" in caught.value.message
    assert caught.value.details.split() == ["/var/lib/vendor-agent/state", "/etc/other.conf"]


def test_packager_check_refuses_paths_outside_the_persist_roots(vendor_headers):
    with pytest.raises(NodePluginError, match="cannot be persisted on a Node"):
        persist.check_persist_paths("vendor-agent", ["/opt/vendor-agent/bin/vendor-agent", "/usr/share/x"],
                                    vendor_headers, [])


def test_image_files_are_one_list_per_declaring_plugin_and_the_boot_hook():
    files = persist.image_files([_Manifest("vendor-agent", "1.0", ("/etc/vendor-agent/agent.conf",)),
                                 _Manifest("hello-plugin", "0.1", ())])
    assert set(files) == {f"{persist.PERSIST_LISTS_DIR}/vendor-agent", persist.BOOT_HOOK}
    listing = files[f"{persist.PERSIST_LISTS_DIR}/vendor-agent"]
    assert listing.mode == 0o644 and listing.content.decode().splitlines()[-1] == "/etc/vendor-agent/agent.conf"
    assert files[persist.BOOT_HOOK].mode == 0o755
    assert files[persist.BOOT_HOOK].content.startswith(b"#!/bin/sh\n")


def test_no_declared_paths_write_nothing():
    assert persist.image_files([_Manifest("hello-plugin", "0.1", ())]) == {}


def test_image_files_refuse_a_bad_declared_path():
    with pytest.raises(NodePluginError, match="vendor-agent"):
        persist.image_files([_Manifest("vendor-agent", "1.0", ("/etc",))])


@pytest.mark.parametrize("shell", ["/bin/sh", "bash", "busybox"])
def test_the_shell_parses_in_the_shells_a_node_may_have(shell):
    """dash, bash and busybox ash read the boot hook and the hot-add command without a syntax error."""
    argv = [shell, "sh", "-n"] if shell == "busybox" else [shell, "-n"]
    if not shutil.which(argv[0]):
        pytest.fail(f"{argv[0]} is not installed (bindep.txt lists it)")
    hook = persist.image_files([_Manifest("p", "1", ("/etc/p.conf",))])[persist.BOOT_HOOK].content
    for script in (hook, persist.persist_command("p", ["/etc/p.conf", "/var/lib/p"]).encode()):
        done = subprocess.run(argv, input=script, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr


def test_outcome_lines_are_read_back():
    output = ("storing to /config : /etc/a.conf\r\n"
              "ovirt-plugins-persist: vendor-agent: persisted: /etc/a.conf\n"
              "ovirt-plugins-persist: vendor-agent: already persisted: /etc/b.conf\n"
              "ovirt-plugins-persist: vendor-agent: not kept, stateless Node (no config volume at /config): /etc/c\n"
              "ovirt-plugins-persist: vendor-agent: not persisted, it does not exist: /var/lib/d\n"
              "ovirt-plugins-persist: vendor-agent: could not persist: /etc/e:1\n"
              "ovirt-plugins-persist: vendor-agent: something else: /etc/f\n")
    found = [(item.outcome, item.path) for item in persist.parse_outcomes(output)]
    assert found == [(persist.PERSISTED, "/etc/a.conf"), (persist.ALREADY, "/etc/b.conf"), (persist.NOT_KEPT, "/etc/c"),
                     (persist.MISSING, "/var/lib/d"), (persist.FAILED, "/etc/e:1")]


def test_persist_command_refuses_unsafe_paths():
    with pytest.raises(NodePluginError):
        persist.persist_command("p", ["/etc/x'; reboot; '"])
