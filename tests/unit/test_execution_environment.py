# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment as AWX builds it, up to where an image registry is needed (none is reachable here).

ansible-builder 3 ``create`` turns execution-environment.yml into a build context; its galaxy stage is run for
real (ansible-galaxy installs the collection from the context), then the context's own introspection script reads
the installed collection, as the builder stage does. What it collects must be this collection's run-time
requirements, and every system package must have a name that exists on the platform it is meant for: Fedora
(the EE's base) and EL by the static table of plugins/module_utils/_platforms.py, Debian by apt for real.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from bindep.depends import Depends

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _platforms

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
# The profiles bindep sees on each platform (bindep.depends.Depends.platform_profiles).
FEDORA = ["default", "platform:rpm", "platform:fedora", "platform:redhat"]
CENTOS_STREAM = ["default", "platform:rpm", "platform:centos", "platform:redhat"]
DEBIAN = ["default", "platform:dpkg", "platform:debian", "platform:python3"]


def _read(relative: str) -> str:
    with open(os.path.join(TOP, relative), encoding="utf-8") as handle:
        return handle.read()


def _lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _packages(bindep_text: str, profiles: list[str]) -> list[str]:
    depends = Depends(bindep_text)
    return [rule[0] for rule in depends.active_rules(profiles)]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("ee") / "context")
    _run([os.path.join(BIN, "ansible-builder"), "create", "-f", os.path.join(TOP, "execution-environment.yml"),
          "-c", folder, "--output-filename", "Containerfile"], cwd=TOP)
    return folder


def _run(argv: list[str], **kwargs) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, **kwargs)
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def introspected(context, tmp_path_factory) -> dict[str, list[str]]:
    """The galaxy stage, then the builder stage's introspection, against the context ansible-builder made."""
    collections = str(tmp_path_factory.mktemp("usr-share-ansible") / "collections")
    build = os.path.join(context, "_build")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1",
               ANSIBLE_NOCOLOR="1")
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-r", "requirements.yml",
          "--collections-path", collections], cwd=build, env=env)
    pip, bindep = os.path.join(context, "requirements.txt"), os.path.join(context, "bindep.txt")
    _run([sys.executable, os.path.join(build, "scripts", "introspect.py"), "introspect", collections,
          "--write-pip", pip, "--write-bindep", bindep])
    with open(pip, encoding="utf-8") as handle:
        python = handle.read()
    with open(bindep, encoding="utf-8") as handle:
        system = handle.read()
    return {"python": python, "system": system,
            "installed": sorted(os.listdir(os.path.join(collections, "ansible_collections", "ovirt", "node_plugins")))}


def test_the_context_builds_on_fedora_with_its_system_python(context):
    containerfile = _read(os.path.join(context, "Containerfile"))
    assert 'ARG EE_BASE_IMAGE="registry.fedoraproject.org/fedora:42"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3"' in containerfile and 'ARG PYPKG="python3"' in containerfile
    assert re.search(r'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2\.19,<2\.20 ansible-runner>=2\.4,<3"', containerfile)
    assert "RUN $PYCMD /output/scripts/introspect.py introspect" in containerfile
    # The appliance is made once into the image, and libguestfs runs QEMU itself (no libvirt in a container).
    assert "RUN libguestfs-make-fixed-appliance /usr/lib64/guestfs/fixed-appliance" in containerfile
    assert "ENV LIBGUESTFS_PATH=/usr/lib64/guestfs/fixed-appliance" in containerfile
    assert "ENV LIBGUESTFS_BACKEND=direct" in containerfile
    final = containerfile.split("FROM base AS final", 1)[1]
    assert final.index("libguestfs-make-fixed-appliance") < final.index("USER 1000")  # as root, before AWX's user


def test_the_collection_is_inside_the_context_and_nothing_else_of_the_checkout(context):
    requirements = yaml.safe_load(_read(os.path.join(context, "_build", "requirements.yml")))
    assert requirements["collections"] == [{"name": "ovirt.node_plugins", "type": "dir", "source": "collection"}]
    copied = os.path.join(context, "_build", "collection")
    assert sorted(os.listdir(copied)) == ["COPYING", "README.md", "docs", "galaxy.yml", "meta", "playbooks",
                                          "plugins", "roles"]
    for relative in ("plugins/modules/node_plugin_apply.py", "plugins/module_utils/_platforms.py",
                     "roles/node_pxe_deploy/tasks/main.yml", "meta/ee-bindep.txt", "meta/ee-requirements.txt"):
        assert os.path.isfile(os.path.join(copied, relative)), relative


def test_introspection_of_the_installed_collection_finds_its_requirements(introspected):
    assert "MANIFEST.json" in introspected["installed"] and "galaxy.yml" not in introspected["installed"]
    found = [line.split("#", 1)[0].strip() for line in introspected["python"].splitlines() if line.strip()]
    assert found == _lines(_read("meta/ee-requirements.txt"))
    assert all(line.endswith("# from collection ovirt.node_plugins") for line in introspected["python"].splitlines()
               if line.strip())
    system = [line.split("#", 1)[0].strip() for line in introspected["system"].splitlines() if line.strip()]
    assert system == _lines(_read("meta/ee-bindep.txt"))


def test_the_collection_metadata_names_files_relative_to_the_collection():
    metadata = yaml.safe_load(_read("meta/execution-environment.yml"))
    assert metadata["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    for relative in metadata["dependencies"].values():
        assert os.path.isfile(os.path.join(TOP, relative))


@pytest.mark.parametrize("profiles", [FEDORA, CENTOS_STREAM], ids=["fedora", "centos"])
def test_rpm_package_names_are_those_of_the_platform(introspected, profiles):
    packages = _packages(introspected["system"], profiles)
    unknown = sorted(set(packages) - _platforms.EL.known_packages)
    assert not unknown, f"not {_platforms.EL.reference_release} package names: {unknown}"
    # The platform's names of what the library runs (_platforms) are installed by the EE.
    for tool in ("qemu-system-x86_64", "qemu-img", "grub-mkimage", "grub-script-check", "xorriso", "mksquashfs",
                 "busybox", "cpio", "gpg", "ssh", "tftp"):
        assert _platforms.EL.package_of(tool) in packages, tool
    for name in ("pxelinux.0", "ldlinux.c32", "grub-x86_64-efi", "ovmf"):
        assert _platforms.EL.package_of(name) in packages, name
    for needed in ("python3-libguestfs", "python3-rpm", "python3-solv", "libguestfs", "kernel-core"):
        assert needed in packages


def test_debian_package_names_are_those_of_the_platform(introspected):
    """The Debian side of the EE's list, and bindep.txt's, exist in this Debian 12 machine's package index."""
    packages = _packages(introspected["system"], DEBIAN)
    packages += _packages(_read("bindep.txt"), DEBIAN + ["test"])
    assert not sorted(set(packages) - _platforms.DEBIAN.known_packages)
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(set(packages))], capture_output=True,
                           text=True, check=False)
    listed = set(re.findall(r"^Package: (\S+)$", shown.stdout, re.MULTILINE))
    assert listed == set(packages), f"unknown to apt: {sorted(set(packages) - listed)}"
    for tool in ("qemu-system-x86_64", "qemu-img", "grub-mkimage", "grub-script-check", "busybox"):
        assert _platforms.DEBIAN.package_of(tool) in packages, tool


@pytest.mark.parametrize("family", _platforms.FAMILIES, ids=lambda family: family.name)
def test_every_package_of_the_lookup_tables_is_a_known_name(family):
    assert not sorted(set(_platforms.packages(family)) - family.known_packages)
