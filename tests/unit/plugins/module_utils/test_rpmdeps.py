# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dependency closure (libsolv), RPM headers, the allowed-path policy and signature checks."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmdeps import (
    InstalledPackage, parse_package_list, resolve_closure)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmhdr import (
    allowed_paths, check_paths, check_signatures, offending_paths, path_allowed, read_header)
from tests.unit import rpmhelpers

IMAGE = [InstalledPackage("base", None, "1.2", "3", "x86_64", ("libbase.so.1()(64bit)",)),
         InstalledPackage("ovirt-node", None, "2.5.0", "1.0.fc17", "noarch")]


@pytest.fixture(scope="module")
def rpms():
    return rpmhelpers.standard_rpms()


def _names(resolution) -> list[tuple[str, str]]:
    return [(package.name, package.role) for package in resolution.packages]


# -- package lists ------------------------------------------------------------------------------

def test_manifest_rpm_txt_and_rpm_qa_lines():
    packages = parse_package_list("# comment\nbusybox-1.35.0-1.x86_64 (none)\nkernel-1:3.6.11-1.fc17.x86_64\n\n"
                                  "gpg-pubkey-a15b79cc-5d8a7f4a\nlib-foo-bar-2.0-0.1.rc1.el6.noarch (RSA/SHA256, key)\n")
    assert [(p.name, p.epoch, p.version, p.release, p.arch) for p in packages] == [
        ("busybox", None, "1.35.0", "1", "x86_64"), ("kernel", 1, "3.6.11", "1.fc17", "x86_64"),
        ("lib-foo-bar", None, "2.0", "0.1.rc1.el6", "noarch")]
    assert packages[1].nevra == "kernel-1:3.6.11-1.fc17.x86_64"


def test_json_package_list_carries_provides():
    packages = parse_package_list(rpmhelpers.IMAGE_PACKAGES_JSON)
    assert packages[0].provides == ("libbase.so.1()(64bit)",)


@pytest.mark.parametrize("text, words", [("not a package\n", "line 1: 'not a package'"),
                                         ("# only comments\n", "empty"), ("[{\"name\": 1}]", "lacks"),
                                         ("[", "not valid JSON")])
def test_bad_package_lists(text, words):
    with pytest.raises(NodePluginError, match=words):
        parse_package_list(text, source="list.txt")


# -- closure ------------------------------------------------------------------------------------

def test_closure_ships_only_what_the_image_lacks(rpms, tmp_path):
    repo = rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms)
    resolution = resolve_closure([rpms.by_name["agent"]], [repo], IMAGE)
    assert _names(resolution) == [("agent", "plugin"), ("agent-lib", "dependency")]
    assert resolution.packages[1].path == os.path.join(repo, "agent-lib-1.0-1.noarch.rpm")
    assert "libbase.so.1()(64bit) (needed by agent-lib) <- base-1.2-3.x86_64" in resolution.satisfied_by_image
    assert "base >= 1.0 (needed by agent) <- base-1.2-3.x86_64" in resolution.satisfied_by_image


def test_closure_from_rpm_md_repository_by_folder_and_file_url(rpms, tmp_path):
    repo = rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms)
    subprocess.run(["createrepo_c", "--quiet", repo], check=True)
    for location in (repo, f"file://{repo}"):
        resolution = resolve_closure([rpms.by_name["agent"]], [location], IMAGE)
        assert _names(resolution) == [("agent", "plugin"), ("agent-lib", "dependency")]
        assert os.path.isfile(resolution.packages[1].path)


def test_closure_from_http_repository_downloads_the_package(rpms, tmp_path):
    repo = rpmhelpers.dependency_repo(str(tmp_path / "www"), rpms)
    subprocess.run(["createrepo_c", "--quiet", repo], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=repo)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        resolution = resolve_closure([rpms.by_name["agent"]], [url], IMAGE, download_dir=str(downloads))
        with pytest.raises(NodePluginError, match=f"cannot download {url}missing/repodata/repomd.xml"):
            resolve_closure([rpms.by_name["agent"]], [url + "missing/"], IMAGE, download_dir=str(downloads))
    finally:
        server.shutdown()
        server.server_close()
    lib = resolution.packages[1]
    assert (lib.name, lib.repo) == ("agent-lib", url)
    assert lib.path == str(downloads / "agent-lib-1.0-1.noarch.rpm")
    assert read_header(lib.path).nevra == "agent-lib-1.0-1.noarch"


def test_unsatisfiable_requirement_names_package_requirement_and_repos(rpms, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NodePluginError) as caught:
        resolve_closure([rpms.by_name["agent"]], [str(empty)], IMAGE)
    message = str(caught.value)
    assert "nothing provides agent-lib needed by agent-1.0-1.noarch" in message
    assert f"looked in: the target image's packages, the plugin's RPMs, {empty}" in message


def test_requirement_the_image_does_not_meet(rpms, tmp_path):
    repo = rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms)
    old_image = [InstalledPackage("base", None, "0.9", "1", "x86_64", ("libbase.so.1()(64bit)",))]
    with pytest.raises(NodePluginError, match=r"nothing provides base >= 1.0 needed by agent-1.0-1.noarch"):
        resolve_closure([rpms.by_name["agent"]], [repo], old_image)


def test_conflict_with_an_image_package_is_an_error(rpms):
    with pytest.raises(NodePluginError) as caught:
        resolve_closure([rpms.by_name["conflicting"]], [], IMAGE)
    assert "conflicting-1.0-1.noarch conflicts with base provided by base-1.2-3.x86_64" in str(caught.value)


def test_dependency_may_not_replace_an_image_package(tmp_path):
    built = rpmhelpers.build_rpms([
        rpmhelpers.RpmSpec("needs-new-base", files=(("/opt/n/x", "x"),), requires=("base >= 2.0",)),
        rpmhelpers.RpmSpec("base", version="2.0", arch="x86_64", files=(("/opt/base2", "x"),))], label="replace")
    repo = tmp_path / "deps"
    repo.mkdir()
    shutil.copy(built.by_name["base"], repo)
    with pytest.raises(NodePluginError) as caught:
        resolve_closure([built.by_name["needs-new-base"]], [str(repo)], IMAGE)
    assert "base-2.0-1.x86_64 would replace the image's base-1.2-3.x86_64" in str(caught.value)


def test_plain_list_assumes_file_requirements_only(tmp_path):
    built = rpmhelpers.build_rpms([rpmhelpers.RpmSpec("needs-sh", files=(("/opt/s/x", "x"),),
                                                      requires=("/bin/sh", "libbase.so.1()(64bit)"))], label="sh")
    names_only = [InstalledPackage("busybox", None, "1.35.0", "1", "x86_64")]
    with pytest.raises(NodePluginError) as caught:
        resolve_closure([built.by_name["needs-sh"]], [], names_only)
    assert "nothing provides libbase.so.1()(64bit)" in str(caught.value)
    assert "/bin/sh" not in str(caught.value)


# -- file requirements: met from the image's file lists, as rpm's database meets them --------------

# An EL7-like image: /bin/sh and /usr/sbin/useradd are files of their packages; nothing provides them by name.
BASH = InstalledPackage("bash", None, "4.2.46", "34.el7", "x86_64", files=("/bin/bash", "/bin/sh", "/usr/share/doc"))
SHADOW = InstalledPackage("shadow-utils", 2, "4.6", "5.el7", "x86_64",
                          files=("/usr/sbin/groupadd", "/usr/sbin/useradd"))
IMAGE_WITH_FILES = [*IMAGE, BASH, SHADOW]


@pytest.fixture(scope="module")
def scripted():
    """A vendor package with a %post (rpmbuild adds Requires(post): /bin/sh) that also needs useradd."""
    return rpmhelpers.build_rpms([
        rpmhelpers.RpmSpec("scripted", files=(("/opt/scripted/x", "x"),), requires=("/usr/sbin/useradd",),
                           post="useradd -r scripted || :"),
        rpmhelpers.RpmSpec("needs-perl", files=(("/opt/perl/x", "x"),), requires=("/usr/bin/perl",), post=":"),
        rpmhelpers.RpmSpec("needs-own-file", files=(("/opt/own/x", "x"),), requires=("/opt/agent/lib/data",))],
        label="file-requirements")


def test_scriptlet_requirement_is_really_there(scripted):
    requires = subprocess.run(["rpm", "-qp", "--requires", scripted.by_name["scripted"]], check=True,
                              capture_output=True, text=True).stdout.split("\n")
    assert "/bin/sh" in requires and "/usr/sbin/useradd" in requires


def test_file_requirements_are_met_by_the_owners_in_the_image(scripted):
    resolution = resolve_closure([scripted.by_name["scripted"]], [], IMAGE_WITH_FILES, assume_image_files=False)
    assert _names(resolution) == [("scripted", "plugin")]
    assert "/bin/sh (needed by scripted) <- bash-4.2.46-34.el7.x86_64" in resolution.satisfied_by_image
    assert "/usr/sbin/useradd (needed by scripted) <- shadow-utils-2:4.6-5.el7.x86_64" in resolution.satisfied_by_image


def test_names_that_are_not_utf8(scripted):
    odd = InstalledPackage("odd", None, "1", "1", "noarch", ("odd-\udcff",),
                           files=("/opt/odd-\udcff", "relative", "/usr/sbin/"))
    resolution = resolve_closure([scripted.by_name["scripted"]], [], [*IMAGE_WITH_FILES, odd])
    assert _names(resolution) == [("scripted", "plugin")]
    with pytest.raises(NodePluginError, match="not named in valid text"):
        resolve_closure([scripted.by_name["scripted"]], [], [InstalledPackage("bad\udcff", None, "1", "1", "noarch")])


def test_a_file_the_image_lacks_is_named(scripted):
    with pytest.raises(NodePluginError) as caught:
        resolve_closure([scripted.by_name["needs-perl"]], [], IMAGE_WITH_FILES)
    assert "nothing provides /usr/bin/perl needed by needs-perl-1.0-1.noarch" in str(caught.value)


def test_without_an_owner_of_bin_sh_a_scriptlet_cannot_be_packed(scripted):
    """The report of issue 11: an image read from its database whose packages hold no /bin/sh."""
    no_shell = [*IMAGE, SHADOW]
    with pytest.raises(NodePluginError, match="nothing provides /bin/sh needed by scripted-1.0-1.noarch"):
        resolve_closure([scripted.by_name["scripted"]], [], no_shell)


def test_a_shipped_dependency_meets_a_file_requirement_with_its_own_files(scripted, rpms, tmp_path):
    repo = rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms)
    resolution = resolve_closure([scripted.by_name["needs-own-file"]], [repo], IMAGE_WITH_FILES)
    assert _names(resolution) == [("needs-own-file", "plugin"), ("agent-lib", "dependency")]


def test_json_package_list_with_files_is_taken_as_complete(scripted, tmp_path):
    listed = parse_package_list(json.dumps([
        {"name": "bash", "version": "4.2.46", "release": "34.el7", "arch": "x86_64", "files": ["/bin/sh"]},
        {"name": "shadow-utils", "version": "4.6", "release": "5.el7", "arch": "x86_64"}]))
    assert listed[0].files == ("/bin/sh",) and listed[1].files == ()
    # Files listed: nothing is assumed, so useradd must come from a file list, and none has it.
    with pytest.raises(NodePluginError, match="nothing provides /usr/sbin/useradd needed by scripted"):
        resolve_closure([scripted.by_name["scripted"]], [], listed)
    # No file names at all (a plain list, or JSON without "files"): file requirements are assumed met.
    names_only = [InstalledPackage(package.name, None, package.version, package.release, package.arch)
                  for package in listed]
    resolution = resolve_closure([scripted.by_name["scripted"]], [], names_only)
    assert any(line.startswith("/usr/sbin/useradd (needed by scripted) <- (files-of-the-image")
               for line in resolution.satisfied_by_image)


# -- headers and paths --------------------------------------------------------------------------

def test_header_facts(rpms):
    header = read_header(rpms.by_name["agent"])
    assert (header.name, header.version, header.release, header.arch, header.nevra) == (
        "agent", "1.0", "1", "noarch", "agent-1.0-1.noarch")
    assert header.files == ("/etc/agent/agent.conf", "/opt/agent/bin/agent") and not header.signed


def test_unreadable_rpm(tmp_path):
    junk = tmp_path / "junk.rpm"
    junk.write_bytes(b"\xed\xab\xee\xdb" + b"\0" * 200)
    with pytest.raises(NodePluginError, match="not a readable RPM package"):
        read_header(str(junk))


@pytest.mark.parametrize("path, directory, allowed", [
    ("/etc/agent.conf", False, True), ("/etc", True, True), ("/opt/x/y", False, True),
    ("/optional/x", False, False),            # not a substring match
    ("/etcetera", False, False), ("/usr/share/man/man1/a.1.gz", False, True),
    ("/usr/share/doc/a", False, False), ("/usr/lib/python3.11/site-packages/a.py", False, True),
    ("/usr/lib/python", False, True), ("/usr/lib/pythonista", False, True),
    ("/usr/lib64/python3.11/a.py", False, False), ("/usr/lib/systemd/system/a.service", False, True),
    ("/usr", True, True), ("/usr/lib", True, True),      # parents of allowed paths, owned as folders
    ("/usr", False, False), ("/usr/bin/a", False, False), ("/opt/../usr/bin/a", False, False),
    ("/lib/modules/6.1/a.ko", False, False),
])
def test_path_policy_is_component_wise(path, directory, allowed):
    assert path_allowed(path, allowed_paths(), is_directory=directory) is allowed


def test_kmod_and_override_paths():
    assert path_allowed("/lib/modules/6.1/extra/a.ko", allowed_paths("kmod"))
    assert path_allowed("/lib/firmware/a.bin", allowed_paths("kmod"))
    assert path_allowed("/usr/share/doc/a", allowed_paths("kmod"))
    assert path_allowed("/usr/libexec/vendor/x", allowed_paths("standard", ["/usr/libexec/vendor"]))
    assert not path_allowed("/usr/libexec/other", allowed_paths("standard", ["/usr/libexec/vendor"]))
    with pytest.raises(NodePluginError, match="not an absolute path"):
        allowed_paths("standard", ["usr/libexec"])
    with pytest.raises(NodePluginError, match="unknown plugin kind"):
        allowed_paths("driver")


def test_every_offending_path_is_reported_grouped_per_package(rpms):
    headers = [read_header(rpms.by_name[name]) for name in ("agent", "bad-paths", "kmod-vendor")]
    assert offending_paths(headers[0], allowed_paths()) == []
    with pytest.raises(NodePluginError) as caught:
        check_paths(headers, allowed_paths())
    lines = str(caught.value).splitlines()
    assert "4 file(s) would be installed outside the paths a plugin may use" in lines[0]
    assert lines[1:] == ["bad-paths-1.0-1.noarch (bad-paths-1.0-1.noarch.rpm):", "  /optional/x", "  /usr/bin/bad",
                         "  /var/lib/bad/state",
                         "kmod-vendor-1.0-1.noarch (kmod-vendor-1.0-1.noarch.rpm):",
                         "  /lib/modules/6.1.0/extra/vendor.ko"]
    check_paths([headers[2]], allowed_paths("kmod"))


# -- signatures ---------------------------------------------------------------------------------

def test_rpm_signatures_against_a_keyring(rpms):
    key = rpmhelpers.make_key()
    signed = rpmhelpers.signed_rpms(key)
    headers = [read_header(path) for path in signed.by_name.values()]
    assert all(header.key_id == key.key_id.lower() for header in headers)
    check_signatures(headers, key.public_key)
    other = rpmhelpers.make_key("Other Vendor")
    with pytest.raises(NodePluginError, match=f"agent-1.0-1.noarch .*: signed with key {key.key_id.lower()}"):
        check_signatures(headers, other.public_key)
    with pytest.raises(NodePluginError, match=r"unrelated-1.0-1.noarch \(unrelated-1.0-1.noarch.rpm\): not signed"):
        check_signatures([read_header(rpms.by_name["unrelated"])], key.public_key)


def test_keyring_must_hold_a_key(tmp_path):
    empty = tmp_path / "keys.asc"
    empty.write_text("nothing here\n")
    with pytest.raises(NodePluginError, match="no usable OpenPGP public key"):
        check_signatures([], str(empty))
    with pytest.raises(NodePluginError, match="keyring file does not exist"):
        check_signatures([], str(tmp_path / "missing.asc"))
