# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The packager against the fixture Node ISO and the example plugin RPMs (real rpm, libsolv, gpg).

The fixture is as strict as a real Node: /bin/sh and /usr/bin/python are files of its bash and python
packages, and the example RPMs carry the requirements rpmbuild generates for their scriptlets and
scripts. A variant keeps the image's rpm database as Berkeley DB, as Fedora 17, EL6 and EL7 Nodes do.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _rpmdb as rpmdb
from ansible_collections.ovirt.node_plugins.plugins.module_utils._cli import main
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import extract_root_image, open_root_image
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import open_plugin
from tests.fixtures.nodeiso import FixtureSpec, build_fixture_iso
from tests.fixtures.rpms import build_example_rpms

IN_IMAGE = ("/bin/sh (needed by vendor-agent) <- bash-4.2.37-1.x86_64",
            "/usr/bin/python (needed by vendor-agent) <- python-2.7.3-1.x86_64",
            "/bin/sh (needed by vendor-agent-lib) <- bash-4.2.37-1.x86_64",
            "libvendorbase.so.1()(64bit) (needed by vendor-agent-lib) <- libvendorbase-3.2-1.x86_64",
            "ovirt-node >= 2.5.0 (needed by vendor-agent) <- ovirt-node-2.5.0-1.0.fc17.noarch")


@pytest.fixture(scope="module")
def node():
    return build_fixture_iso(FixtureSpec())


@pytest.fixture(scope="module")
def node_bdb():
    return build_fixture_iso(FixtureSpec(rpmdb="bdb"))


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
    satisfied = json.loads(printed)["satisfied_by_image"]
    assert set(IN_IMAGE) <= set(satisfied), satisfied


def test_example_rpms_carry_generated_file_requirements(examples):
    """rpmbuild added the scriptlets' and scripts' interpreters; the packager had to meet them from files."""
    query = ["rpm", "-qp", "--nosignature", "--qf", "[%{REQUIREFLAGS:deptype} %{REQUIRENAME}\\n]"]
    agent = subprocess.run([*query, examples.by_name["vendor-agent"]], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    for line in ("pre,interp /bin/sh", "post,interp /bin/sh", "preun,interp /bin/sh", "postun,interp /bin/sh",
                 "auto /usr/bin/python", "auto /bin/sh", "manual ovirt-node", "manual vendor-agent-lib"):
        assert line in agent, agent
    library = subprocess.run([*query, examples.by_name["vendor-agent-lib"]], check=True, capture_output=True,
                             text=True).stdout.splitlines()
    assert "post,interp /bin/sh" in library and "manual libvendorbase.so.1()(64bit)" in library


def test_the_image_owns_its_shell_and_python_as_files(node):
    database = rpmdb.rpm_database(node.iso)
    assert database.format == "sqlite" and database.package_count == len(node.packages)
    owners = {path: package.name for package in database.packages for path in package.files}
    assert owners["/bin/sh"] == "bash" and owners["/bin/bash"] == "bash" and owners["/usr/bin/python"] == "python"
    assert database.file_count == len(owners)
    # Nothing papers over it with a Provides: the image is as strict as a real Node.
    assert not [package.nevra for package in database.packages for provide in package.provides
                if provide.startswith("/")]


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


# -- Berkeley DB ------------------------------------------------------------------------------------

def test_berkeley_db_image_reads_like_the_sqlite_one(node, node_bdb, tmp_path):
    """inspect-level package reading: the same packages and files from the bdb_ro branch."""
    sqlite_db, bdb_db = rpmdb.rpm_database(node.iso), rpmdb.rpm_database(node_bdb.iso)
    assert (sqlite_db.format, bdb_db.format) == ("sqlite", "bdb")
    assert bdb_db.packages == sqlite_db.packages and bdb_db.file_count == sqlite_db.file_count
    # The host's own rpm reads the image's database read-only, and finds every index.
    root_image = extract_root_image(node_bdb.iso, str(tmp_path / "root"))
    subprocess.run(["debugfs", "-R", f"rdump /var/lib/rpm {tmp_path}", root_image], check=True, capture_output=True)
    assert "Packages" in os.listdir(tmp_path / "rpm") and "rpmdb.sqlite" not in os.listdir(tmp_path / "rpm")
    listed = subprocess.run(["rpm", "--dbpath", str(tmp_path / "rpm"), "--define", "_db_backend bdb_ro", "-qa",
                             "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"], check=True, capture_output=True,
                            text=True)
    assert sorted(listed.stdout.split()) == node_bdb.packages == node.packages and listed.stderr == ""


def test_inspect_lists_the_packages_of_a_berkeley_db_image(node, node_bdb, capsys):
    for fixture, database_format in ((node_bdb, "bdb"), (node, "sqlite")):
        assert main(["inspect", "--iso", fixture.iso, "--packages", "--json"]) == 0
        facts = json.loads(capsys.readouterr().out)
        assert facts["packages"] == fixture.packages
        assert facts["rpmdb"]["format"] == database_format and facts["rpmdb"]["packages"] == len(fixture.packages)
        assert facts["rpmdb"]["files"] > len(fixture.packages)
        assert "extract root image" not in facts["durations"]  # read in place, nothing unpacked


def test_build_refuses_an_image_whose_rpm_cannot_write_its_database(node_bdb, examples, deps, tmp_path, capsys):
    """Before any work: no appliance, no output, no debris; the message names the format and what is needed."""
    dist, out = tmp_path / "dist", tmp_path / "out"
    dist.mkdir()
    out.mkdir()
    assert main(_pack(examples, deps, str(dist), "--target-iso", node_bdb.iso)) == 0
    capsys.readouterr()
    plugin = str(dist / "vendor-agent-1.0.plugin.tar.gz")
    assert main(["build", "--iso", node_bdb.iso, "--plugin", plugin, "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "Berkeley DB (Packages)" in error and "Needed:" in error and node_bdb.iso in error
    assert os.listdir(out) == []


def test_plugin_packed_against_a_berkeley_db_image(node, node_bdb, examples, deps, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for fixture, folder in ((node, tmp_path / "sqlite"), (node_bdb, tmp_path / "bdb")):
        folder.mkdir()
        assert main(_pack(examples, deps, str(folder), "--target-iso", fixture.iso, "--json")) == 0
        satisfied = json.loads(capsys.readouterr().out)["satisfied_by_image"]
        assert set(IN_IMAGE) <= set(satisfied), satisfied
    # The image's packages are the same, so the plugin is the same, byte for byte.
    name = "vendor-agent-1.0.plugin.tar.gz"
    assert (tmp_path / "sqlite" / name).read_bytes() == (tmp_path / "bdb" / name).read_bytes()


def _root_image_files(root_image: str):
    """A reader and a lister of the root image's files (None when absent), as rpmdb_write_problem takes them."""
    def read_image_file(path: str) -> bytes | None:
        with open_root_image(root_image) as root:
            return rpmdb.image_file_reader(root)(path)

    def list_image_dir(folder: str) -> list[str] | None:
        with open_root_image(root_image) as root:
            return rpmdb.image_dir_lister(root)(folder)
    return read_image_file, list_image_dir


def test_whether_the_image_rpm_can_write_its_database(node, node_bdb, tmp_path):
    sqlite_root = extract_root_image(node.iso, str(tmp_path / "sqlite"))
    assert rpmdb.rpmdb_write_problem("sqlite", *_root_image_files(sqlite_root)) is None
    bdb_root = extract_root_image(node_bdb.iso, str(tmp_path / "bdb"))
    problem = rpmdb.rpmdb_write_problem("bdb", *_root_image_files(bdb_root))
    assert problem.startswith("the image keeps its rpm database as Berkeley DB (Packages), but its rpm is set up "
                              "with %_db_backend bdb_ro, which does not write a database"), problem
