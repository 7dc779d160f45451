# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ships: the collection tarball stays small beside every build output (make setup, make demo, make test, pip),
pyproject.toml installs the library and the ovirt-plugin-build command, and the run-time requirements agree
(ranges for shared execution environments, pins for make setup)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest
import yaml
from packaging.requirements import Requirement

from ansible_collections.ovirt.node_plugins.plugins.module_utils._version import VERSION

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
LIMIT = 2 * 1024 * 1024
# What make setup, make demo, make test, pip and the tools they run leave in a checkout, and where.
BUILD_OUTPUTS = {
    "out/demo/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso": 3 << 20,
    "out/demo/vendor-agent-1.0.plugin.tar.gz": 1 << 20,
    "out/demo/pxe-a/tftp/ovirt-node/releases/2.5.0-1.0.fc17-0123456789ab/initrd0.img": 1 << 20,
    "tests/output/junit.xml": 1 << 10,
    ".ansible/collections/ansible_collections/ovirt/node_plugins/galaxy.yml": 1 << 10,
    "build/galaxy/ovirt-node_plugins-1.0.0-dev0.tar.gz": 1 << 20,
    "build/sanity/ansible_collections/ovirt/node_plugins/plugins/module_utils/_x.py": 1 << 20,
    ".venv/lib/python3.11/site-packages/big.so": 1 << 20,
    ".cache/fixture-0123/node.iso": 1 << 20,
    "dist/ovirt_node_plugins-1.0.0.dev0-py3-none-any.whl": 1 << 20,
    "ovirt_node_plugins.egg-info/PKG-INFO": 1 << 10,
    ".pytest_cache/v/cache/lastfailed": 1 << 10,
    ".hypothesis/examples/x": 1 << 10,
    "plugins/module_utils/__pycache__/_run.cpython-311.pyc": 1 << 10,
    "ovirt-node_plugins-1.0.0-dev0.tar.gz": 1 << 20,
}


def _build_collection(source: str, output: str) -> str:
    done = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                           output, source], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    return os.path.join(output, f"ovirt-node_plugins-{VERSION}.tar.gz")


def _members(tarball: str) -> list[str]:
    with tarfile.open(tarball) as archive:
        return archive.getnames()


def _tracked_copy(dest: str) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=TOP,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = os.path.join(TOP, relative)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(dest, relative)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, relative))


def test_the_tarball_leaves_out_every_build_output(tmp_path):
    source = str(tmp_path / "checkout")
    _tracked_copy(source)
    for relative, size in BUILD_OUTPUTS.items():
        path = os.path.join(source, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(os.urandom(size))
    members = _members(_build_collection(source, str(tmp_path / "galaxy")))
    roots = ("out", "tests/output", ".ansible", "build", ".venv", ".cache", "dist", "ovirt_node_plugins.egg-info",
             ".pytest_cache", ".hypothesis", "ovirt-node_plugins-1.0.0-dev0.tar.gz")
    leaked = sorted(member for member in members
                    if any(member == root or member.startswith(root + "/") for root in roots)
                    or "__pycache__" in member or member.endswith((".pyc", ".iso", ".whl")))
    assert not leaked
    assert "plugins/modules/node_pxe_tree.py" in members and "roles/node_iso_build/tasks/main.yml" in members
    assert os.path.getsize(os.path.join(tmp_path, "galaxy", f"ovirt-node_plugins-{VERSION}.tar.gz")) < LIMIT


def test_the_tarball_of_this_checkout_stays_under_2_mb(tmp_path):
    """Whatever make demo and make test left here (out/demo, .cache, build, .venv) stays out."""
    tarball = _build_collection(TOP, str(tmp_path))
    size = os.path.getsize(tarball)
    print(f"collection tarball of this checkout: {size} bytes, {len(_members(tarball))} members")
    assert size < LIMIT


def _pyproject() -> dict:
    with open(os.path.join(TOP, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def _requirements(relative: str) -> dict[str, Requirement]:
    with open(os.path.join(TOP, relative), encoding="utf-8") as handle:
        lines = [line.split("#", 1)[0].strip() for line in handle]
    return {Requirement(line).name: Requirement(line) for line in lines if line and not line.startswith("-")}


def test_versions_agree():
    with open(os.path.join(TOP, "galaxy.yml"), encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["version"] == VERSION
    assert _pyproject()["tool"]["hatch"]["version"]["path"] == "plugins/module_utils/_version.py"


def test_ranges_for_execution_environments_and_pins_for_make_setup():
    ranges = _requirements("meta/ee-requirements.txt")
    declared = {Requirement(text).name: Requirement(text) for text in _pyproject()["project"]["dependencies"]}
    assert {name: str(req.specifier) for name, req in declared.items() if name != "ansible-core"} == \
        {name: str(req.specifier) for name, req in ranges.items()}
    pins = _requirements("requirements.txt")
    assert set(pins) == set(ranges)
    for name, pin in pins.items():
        assert str(pin.specifier).startswith("=="), f"requirements.txt pins {name}"
        assert ranges[name].specifier.contains(str(pin.specifier)[2:]), f"{pin} is outside {ranges[name]}"
        assert all(spec.operator in (">=", "<") for spec in ranges[name].specifier), f"{ranges[name]} is not a range"
    ansible = _requirements("requirements-dev.txt")["ansible-core"]
    assert declared["ansible-core"].specifier.contains(str(ansible.specifier)[2:])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("wheel"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                           "-w", folder, TOP], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    names = [name for name in os.listdir(folder) if name.endswith(".whl")]
    assert len(names) == 1, names
    return os.path.join(folder, names[0])


def test_the_wheel_is_the_collection_under_ansible_collections(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    prefix = "ansible_collections/ovirt/node_plugins/"
    for relative in ("galaxy.yml", "plugins/module_utils/_cli.py", "plugins/modules/node_artifact_fetch.py",
                     "roles/node_pxe_deploy/meta/argument_specs.yml", "playbooks/site.yml", "meta/runtime.yml",
                     "meta/ee-bindep.txt"):
        assert prefix + relative in names, relative
    assert not [name for name in names if name.startswith(prefix + "tests/") or "__pycache__" in name]
    assert "ovirt-plugin-build = ansible_collections.ovirt.node_plugins.plugins.module_utils._cli:main" in entry_points


def test_pip_installs_the_command_from_the_wheel(wheel, tmp_path):
    """A fresh venv (with the distribution's bindings, as the docs say) gets a working ovirt-plugin-build."""
    venv = str(tmp_path / "venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True)
    done = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--no-deps",
                           "--disable-pip-version-check", wheel], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "ANSIBLE"))}
    shown = subprocess.run([os.path.join(venv, "bin", "ovirt-plugin-build"), "--version"], capture_output=True,
                           text=True, check=False, cwd=str(tmp_path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"ovirt-plugin-build {VERSION}")
    installed = os.path.join(venv, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages",
                             "ansible_collections", "ovirt", "node_plugins")
    assert shown.stdout.rstrip().endswith(f"(collection at {installed})")


def test_make_setup_installed_this_checkout_in_editable_mode():
    shown = subprocess.run([os.path.join(BIN, "ovirt-plugin-build"), "--version"], capture_output=True, text=True,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"ovirt-plugin-build {VERSION}")
    assert f"(collection at {os.path.join(TOP, '.venv', 'collections')}" in shown.stdout or TOP in shown.stdout
