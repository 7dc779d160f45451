# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installed packages and plugin records of an image, read with debugfs and the rpm bindings."""
from __future__ import annotations

import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _rpmdb as rpmdb
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.plugins.module_utils import isohelpers


def _check_package(packages):
    assert [p.nevra for p in packages] == [f"{isohelpers.PACKAGE_NAME}-1:1.2-3.noarch"]
    package = packages[0]
    assert (package.name, package.epoch, package.version, package.release, package.arch) == (
        isohelpers.PACKAGE_NAME, 1, "1.2", "3", "noarch")
    assert package.evr == "1:1.2-3"
    assert "ovirt-node-test-capability = 7" in package.provides


def test_packages_from_root_image_and_iso(tmp_path):
    tiny = isohelpers.cached_iso()
    _check_package(rpmdb.image_packages(tiny.root_image))
    _check_package(rpmdb.image_packages_from_iso(tiny.iso, str(tmp_path)))
    assert list(tmp_path.iterdir()) == []
    _check_package(rpmdb.image_packages(tiny.iso))


def test_rpm_cli_agrees(tmp_path):
    tiny = isohelpers.cached_iso()
    ours = rpmdb.image_packages(tiny.root_image)
    subprocess.run(["debugfs", "-R", f"rdump /var/lib/rpm {tmp_path}", tiny.root_image], check=True,
                   capture_output=True)
    cli = subprocess.run(["rpm", "--dbpath", str(tmp_path / "rpm"), "-qa", "--qf", "%{NEVRA}\\n"], check=True,
                         capture_output=True, text=True).stdout.split()
    assert sorted(cli) == [p.nevra for p in ours]


def test_image_without_rpmdb(tmp_path):
    tiny = isohelpers.cached_iso(with_rpmdb=False)
    with pytest.raises(NodePluginError, match="has no /var/lib/rpm"):
        rpmdb.image_packages(tiny.root_image, str(tmp_path))
    with pytest.raises(NodePluginError, match="no rpm database in this folder"):
        rpmdb.read_rpmdb(str(tmp_path))


def test_installed_plugins_ignores_side_files():
    tiny = isohelpers.cached_iso()
    plugins = rpmdb.installed_plugins(tiny.root_image)
    assert [(p.name, p.version, p.install_date) for p in plugins] == [
        (isohelpers.PACKAGE_NAME, "1.2-3.noarch", "2026-11-25")]
    assert rpmdb.installed_plugins(isohelpers.cached_iso(with_rpmdb=False).root_image)[0].name == isohelpers.PACKAGE_NAME


def test_parse_plugin_record():
    record = rpmdb.parse_plugin_record("Name:foo\nVersion:1.0-1.x86_64\nInstall Date:Mon Jan  7 2013\n", record="/r/foo")
    assert (record.name, record.version, record.install_date) == ("foo", "1.0-1.x86_64", "Mon Jan  7 2013")
