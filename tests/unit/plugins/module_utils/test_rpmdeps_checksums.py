# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rpm-md repositories are read the way dnf reads them: primary metadata checked against repomd.xml, every package
against the primary metadata, downloads tried again a bounded number of times; a mismatch is refused.

The repositories are real (createrepo_c over rpmbuild's packages), served by a local HTTP server that can fail or
damage chosen requests (tests/unit/httpserve.py), or read from a folder.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _artifacts
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmdeps import InstalledPackage, resolve_closure
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmhdr import read_header
from tests.unit import rpmhelpers
from tests.unit.httpserve import serve

IMAGE = [InstalledPackage("base", None, "1.2", "3", "x86_64", ("libbase.so.1()(64bit)",)),
         InstalledPackage("ovirt-node", None, "2.5.0", "1.0.fc17", "noarch")]
LIB = "/agent-lib-1.0-1.noarch.rpm"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(_artifacts, "_BACKOFF", 0.0)


@pytest.fixture(scope="module")
def rpms():
    return rpmhelpers.standard_rpms()


@pytest.fixture
def repo(rpms, tmp_path) -> str:
    folder = rpmhelpers.dependency_repo(str(tmp_path / "www"), rpms)
    subprocess.run(["createrepo_c", "--quiet", folder], check=True)
    return folder


def _primary(repo: str) -> str:
    with open(os.path.join(repo, "repodata", "repomd.xml"), encoding="utf-8") as handle:
        href = re.search(r'<data type="primary">.*?<location href="([^"]+)"', handle.read(), re.S).group(1)
    return "/" + href


def _resolve(rpms, location: str, downloads) -> list[str]:
    resolution = resolve_closure([rpms.by_name["agent"]], [location], IMAGE, download_dir=str(downloads))
    return [package.path for package in resolution.packages]


def test_metadata_and_package_that_fail_once_are_fetched_again(rpms, repo, tmp_path):
    with serve(repo) as server:
        primary = _primary(repo)
        server.faults.update({primary: [503], LIB: ["cut"]})
        paths = _resolve(rpms, server.url, tmp_path)
    assert server.hits[primary] == 2 and server.hits[LIB] == 2
    assert read_header(paths[1]).nevra == "agent-lib-1.0-1.noarch"


def test_primary_metadata_that_does_not_match_repomd_is_refused(rpms, repo, tmp_path):
    with serve(repo) as server:
        primary = _primary(repo)
        server.faults[primary] = ["damage"] * 3
        with pytest.raises(NodePluginError) as caught:
            _resolve(rpms, server.url, tmp_path)
    text = str(caught.value)
    assert f"{primary[1:]} of the repository {server.url} does not have the expected sha256" in text
    assert "attempt 3: its sha256 is" in text and "refused" in text
    assert server.hits[LIB] == 0


def test_a_package_that_does_not_match_the_primary_metadata_is_refused(rpms, repo, tmp_path):
    with open(repo + LIB, "ab") as handle:  # the repository's copy changed after createrepo_c ran
        handle.write(b"\0")
    (tmp_path / "downloads").mkdir()
    with serve(repo) as server:
        with pytest.raises(NodePluginError) as caught:
            _resolve(rpms, server.url, tmp_path / "downloads")
    assert f"the package agent-lib-1.0-1.noarch of the repository {server.url} does not have the expected sha256" \
        in str(caught.value)
    assert server.hits[LIB] == _artifacts.DEFAULT_ATTEMPTS
    assert not (tmp_path / "downloads" / LIB[1:]).exists()


def test_a_local_repository_is_checked_too(rpms, repo, tmp_path):
    assert _resolve(rpms, repo, tmp_path)[1] == repo + LIB
    with open(repo + LIB, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(NodePluginError, match=r"agent-lib-1.0-1.noarch.rpm: the package agent-lib-1.0-1.noarch .* has "
                                              r"the sha256 \w+, not the expected"):
        _resolve(rpms, repo, tmp_path)
    with open(repo + _primary(repo), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(NodePluginError, match="of the repository .* has the sha256 .* not the expected"):
        _resolve(rpms, f"file://{repo}", tmp_path)


def test_repomd_without_a_checksum_of_the_primary_metadata_is_refused(rpms, repo, tmp_path):
    path = os.path.join(repo, "repodata", "repomd.xml")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(re.sub(r'(<data type="primary">.*?)<checksum type="sha256">\w+</checksum>', r"\1", text, flags=re.S))
    with pytest.raises(NodePluginError, match="repomd.xml gives no checksum of the primary metadata"):
        _resolve(rpms, repo, tmp_path)
