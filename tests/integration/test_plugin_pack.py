# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The packager against the fixture Node ISO and the example plugin RPMs (real rpm, libsolv, gpg)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._cli import main
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import open_plugin
from tests.fixtures.nodeiso import FixtureSpec, build_fixture_iso
from tests.fixtures.rpms import build_example_rpms


@pytest.fixture(scope="module")
def node():
    return build_fixture_iso(FixtureSpec())


@pytest.fixture(scope="module")
def examples():
    return build_example_rpms()


@pytest.fixture
def deps(tmp_path, examples):
    """A dependency folder holding vendor-agent-lib and an unrelated package (hello-plugin)."""
    folder = tmp_path / "deps"
    folder.mkdir()
    for name in ("vendor-agent-lib", "hello-plugin"):
        shutil.copy(examples.by_name[name], folder)
    return str(folder)


def _pack(examples, deps, output, *extra) -> list[str]:
    return ["pack", "--name", "vendor-agent", "--version", "1.0", "--vendor", "Example Corp.",
            "--rpm", examples.by_name["vendor-agent"], "--repo", deps, "--node-product", "ovirt-node-iso",
            "--node-versions", ">=2.5.0, <2.6", "--persist", "/etc/vendor-agent/agent.conf", "-o", output, *extra]


def test_plugin_from_the_fixture_iso_ships_exactly_what_the_image_lacks(node, examples, deps, tmp_path, capsys):
    """Done-when of issue 5: rpms/ holds vendor-agent + vendor-agent-lib, not libvendorbase (in the image)."""
    out = tmp_path / "dist"
    out.mkdir()
    assert main(_pack(examples, deps, str(out), "--target-iso", node.iso, "--json")) == 0
    printed = capsys.readouterr().out
    assert '"changed": true' in printed
    path = out / "vendor-agent-1.0.plugin.tar.gz"
    with tarfile.open(path, "r:gz") as archive:
        rpms = sorted(name for name in archive.getnames() if name.startswith("rpms/") and name.endswith(".rpm"))
    assert rpms == ["rpms/vendor-agent-1.0-1.noarch.rpm", "rpms/vendor-agent-lib-1.0-1.noarch.rpm"]
    plugin = open_plugin(str(path))
    assert {(p.name, p.role) for p in plugin.manifest.packages} == {("vendor-agent", "plugin"),
                                                                    ("vendor-agent-lib", "dependency")}
    assert plugin.manifest.persist == ("/etc/vendor-agent/agent.conf",)
    assert "libvendorbase.so.1()(64bit) (needed by vendor-agent-lib) <- libvendorbase-3.2-1" in printed


def test_two_runs_give_identical_bytes(node, examples, deps, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first, second = tmp_path / "a.plugin.tar.gz", tmp_path / "b.plugin.tar.gz"
    assert main(_pack(examples, deps, str(first), "--target-iso", node.iso)) == 0
    assert main(_pack(examples, deps, str(second), "--target-iso", node.iso)) == 0
    assert first.read_bytes() == second.read_bytes()


def test_plain_package_list_lacks_sonames_and_says_where_it_looked(node, examples, deps, tmp_path, capsys):
    manifest = tmp_path / "manifest-rpm.txt"
    manifest.write_text("".join(f"{nevra} (none)\n" for nevra in node.packages))
    assert main(_pack(examples, deps, str(tmp_path), "--target-packages", str(manifest))) == 2
    error = capsys.readouterr().err
    assert "nothing provides libvendorbase.so.1()(64bit) needed by vendor-agent-lib-1.0-1.noarch" in error
    assert f"looked in: the target image's packages, the plugin's RPMs, {deps}" in error
    assert "Traceback" not in error


def test_bad_paths_plugin_is_refused_listing_each_file(node, examples, deps, tmp_path, capsys):
    argv = ["pack", "--name", "bad", "--version", "1", "--rpm", examples.by_name["bad-paths"],
            "--target-iso", node.iso, "-o", str(tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "would be installed outside the paths a plugin may use" in error
    listed = [line.strip() for line in error.splitlines() if line.startswith("  /")]
    assert listed, error
    assert not list(tmp_path.glob("*.plugin.tar.gz"))


def test_command_line_wrapper_runs_as_a_process(node, examples, deps, tmp_path):
    command = os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build")  # installed by make setup
    helped = subprocess.run([command, "pack", "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "examples:" in helped.stdout and "--target-iso" in helped.stdout
    done = subprocess.run([command, *_pack(examples, deps, str(tmp_path), "--target-iso", node.iso)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote: " in done.stdout and "dependency vendor-agent-lib-1.0-1.noarch" in done.stdout
    again = subprocess.run([command, *_pack(examples, deps, str(tmp_path), "--target-iso", node.iso)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 0 and again.stdout.startswith("unchanged: ")
