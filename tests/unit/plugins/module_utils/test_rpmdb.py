# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installed packages and plugin records of an image, read with debugfs and the rpm bindings; sqlite and
Berkeley DB databases; whether an image's own rpm can write its database."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _rpmdb as rpmdb
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.fixtures.rpms import convert_rpmdb_to_bdb
from tests.unit import rpmhelpers
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import open_root_image
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
    database = rpmdb.rpm_database_from_iso(tiny.iso, str(tmp_path))
    _check_package(database.packages)
    assert (database.format, database.package_count, database.file_count) == ("sqlite", 1, 0)
    assert database.facts() == {"format": "sqlite", "packages": 1, "files": 0}
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
        rpmdb.read_rpm_database(str(tmp_path))


def test_installed_plugins_ignores_side_files():
    tiny = isohelpers.cached_iso()
    with open_root_image(tiny.root_image) as root:
        plugins = rpmdb.installed_plugins(root)
    assert [(p.name, p.version, p.install_date) for p in plugins] == [
        (isohelpers.PACKAGE_NAME, "1.2-3.noarch", "2026-11-25")]
    with open_root_image(isohelpers.cached_iso(with_rpmdb=False).root_image) as root:
        assert rpmdb.installed_plugins(root)[0].name == isohelpers.PACKAGE_NAME


def test_parse_plugin_record():
    record = rpmdb.parse_plugin_record("Name:foo\nVersion:1.0-1.x86_64\nInstall Date:Mon Jan  7 2013\n", record="/r/foo")
    assert (record.name, record.version, record.install_date) == ("foo", "1.0-1.x86_64", "Mon Jan  7 2013")


# -- sqlite and Berkeley DB ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """The same packages (with files) in a sqlite database and in its Berkeley DB conversion."""
    rpms = rpmhelpers.standard_rpms()
    root = tmp_path_factory.mktemp("rpmroot")
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps",
                    "--noscripts", "--force-debian", rpms.by_name["agent"], rpms.by_name["agent-lib"]],
                   check=True, capture_output=True)
    sqlite_dir = str(root / "var" / "lib" / "rpm")
    bdb_dir = str(tmp_path_factory.mktemp("bdb") / "rpm")
    shutil.copytree(sqlite_dir, bdb_dir)
    convert_rpmdb_to_bdb(bdb_dir)
    return sqlite_dir, bdb_dir


def test_berkeley_db_is_read_like_sqlite(databases):
    sqlite_dir, bdb_dir = databases
    assert "Packages" in os.listdir(bdb_dir) and "rpmdb.sqlite" not in os.listdir(bdb_dir)
    from_sqlite, from_bdb = rpmdb.read_rpm_database(sqlite_dir), rpmdb.read_rpm_database(bdb_dir)
    assert (from_sqlite.format, from_bdb.format) == ("sqlite", "bdb")
    assert from_bdb.packages == from_sqlite.packages
    assert from_bdb.facts() == {"format": "bdb", "packages": 2, "files": 3}
    agent = next(package for package in from_bdb.packages if package.name == "agent")
    assert agent.files == ("/etc/agent/agent.conf", "/opt/agent/bin/agent")
    assert "agent = 1.0-1" in agent.provides


def test_host_rpm_reads_the_berkeley_db_read_only(databases):
    _sqlite_dir, bdb_dir = databases
    query = ["rpm", "--dbpath", bdb_dir, "--define", "_db_backend bdb_ro"]
    listed = subprocess.run([*query, "-qa", "--qf", "%{NEVRA}\\n"], check=True, capture_output=True, text=True)
    assert sorted(listed.stdout.split()) == ["agent-1.0-1.noarch", "agent-lib-1.0-1.noarch"]
    assert listed.stderr == ""  # every index is there: no "could not open" warning
    owner = subprocess.run([*query, "-qf", "/opt/agent/lib/data"], check=True, capture_output=True, text=True)
    assert owner.stdout.strip() == "agent-lib-1.0-1.noarch"  # the Basenames index works


@pytest.mark.parametrize("names, expected", [
    (["Packages", "Name", "Basenames", "__db.001"], "bdb"), (["rpmdb.sqlite", "rpmdb.sqlite-shm"], "sqlite"),
    (["rpmdb.sqlite", "Packages"], "sqlite"), (["Packages.db", "Index.db"], "ndb"), ([".rpm.lock"], None)])
def test_format_from_the_folder_listing(names, expected):
    assert rpmdb.rpmdb_format_from_names(names) == expected


# -- can the image's own rpm write its database? ------------------------------------------------

DEBIAN_MACROS = b"%_dbpath\t\t%(bash -c 'echo ~/.rpmdb')\n%_db_backend\t      sqlite\n"
EL7_MACROS = b"%_dbpath\t\t%{_var}/lib/rpm\n%_dbi_config_Packages %{_dbi_htconfig} lockdbfd\n"


def _image(files: dict[str, bytes]):
    """A reader and a lister over a dict of image paths, as the lead's root image readers give them."""
    def read_image_file(path: str) -> bytes | None:
        return files.get(path)

    def list_image_dir(folder: str) -> list[str] | None:
        names = [path[len(folder) + 1:] for path in files if path.startswith(folder + "/")]
        return [name for name in names if "/" not in name] or None
    return read_image_file, list_image_dir


def test_old_rpm_writes_its_berkeley_db():
    read, listing = _image({"/usr/lib/rpm/macros": EL7_MACROS})
    assert rpmdb.rpmdb_write_problem("bdb", read, listing) is None


def test_new_rpm_cannot_write_berkeley_db():
    read, listing = _image({"/usr/lib/rpm/macros": DEBIAN_MACROS, "/etc/rpm/macros": b"%_dbpath /var/lib/rpm\n"})
    problem = rpmdb.rpmdb_write_problem("bdb", read, listing)
    assert problem.startswith("the image keeps its rpm database as Berkeley DB (Packages), but its rpm is set up "
                              "with %_db_backend sqlite, so it writes sqlite (rpmdb.sqlite) and reads Berkeley DB "
                              "only through the read-only bdb_ro backend")
    assert "Needed: an image whose own rpm writes Berkeley DB (Packages)" in problem
    assert "rpmdb --rebuilddb" in problem
    assert rpmdb.rpmdb_write_problem("sqlite", read, listing) is None


def test_the_last_definition_wins_and_globs_need_the_lister():
    files = {"/usr/lib/rpm/macros": DEBIAN_MACROS, "/etc/rpm/macros.rpmdb": b"%_db_backend bdb_ro\n",
             "/etc/rpm/macros.zz.rpmnew": b"%_db_backend sqlite\n"}
    read, listing = _image(files)
    assert "%_db_backend bdb_ro, which does not write a database" in rpmdb.rpmdb_write_problem("bdb", read, listing)
    assert "bdb_ro" in rpmdb.rpmdb_write_problem("sqlite", read, listing)
    assert "%_db_backend sqlite" in rpmdb.rpmdb_write_problem("bdb", read)  # without the lister: only fixed files
    read, listing = _image({**files, "/etc/rpm/macros": b"%_db_backend bdb\n"})
    assert rpmdb.rpmdb_write_problem("bdb", read, listing) is None


def test_sqlite_database_with_an_old_rpm():
    read, listing = _image({"/usr/lib/rpm/macros": EL7_MACROS})
    problem = rpmdb.rpmdb_write_problem("sqlite", read, listing)
    assert "its rpm defines no %_db_backend (rpm older than 4.14), so it writes Berkeley DB only" in problem


def test_no_rpm_or_an_unreadable_setting():
    read, listing = _image({})
    assert "it has no /usr/lib/rpm/macros" in rpmdb.rpmdb_write_problem("bdb", read, listing)
    read, listing = _image({"/usr/lib/rpm/macros": b"%_db_backend %{?_vendor_db}" + b"x" * 500 + b"\n"})
    problem = rpmdb.rpmdb_write_problem("bdb", read, listing)
    assert problem.startswith("cannot tell which database backend the image's rpm uses (%_db_backend is '%{?_vendor")
    assert len(problem) < 300  # the image's text is quoted bounded
