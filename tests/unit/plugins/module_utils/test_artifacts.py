# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""References (path or URL, optional sha256), downloads checked and retried against a local HTTP server, and
content-addressed publishing."""
from __future__ import annotations

import hashlib
import os
import re

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _artifacts
from ansible_collections.ovirt.node_plugins.plugins.module_utils._artifacts import (
    ArtifactRef, Checksum, FetchRequest, PublishRequest, download, fetch_artifacts, parse_ref, parse_refs,
    publish_artifacts)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.httpserve import serve

BODY = b"an ISO stand-in\n" * 4096
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(_artifacts, "_BACKOFF", 0.0)


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "node.iso").write_bytes(BODY)
    with serve(str(folder)) as server:
        yield server


# -- references -------------------------------------------------------------------------------------------------

def test_a_survey_line_is_a_path_or_url_with_an_optional_checksum():
    assert parse_ref("/srv/node.iso") == ArtifactRef("/srv/node.iso")
    assert parse_ref(f"  https://h.example/a/node.iso  sha256:{SHA.upper()} ") == \
        ArtifactRef("https://h.example/a/node.iso", Checksum("sha256", SHA))
    assert parse_ref("file:///srv/my%20node.iso") == ArtifactRef("/srv/my node.iso")
    assert parse_ref("https://h.example/a/node%2B1.iso", f"sha256:{SHA}").name == "node+1.iso"


def test_a_text_area_and_mappings_mix():
    refs = parse_refs([f"# plugins\n/srv/a.plugin.tar.gz\n\nhttps://h.example/b.plugin.tar.gz sha256:{SHA}\n",
                       {"src": "/srv/c.plugin.tar.gz", "checksum": f"sha256:{SHA}"}, {"src": "/srv/d", "checksum": ""}])
    assert [str(ref) for ref in refs] == ["/srv/a.plugin.tar.gz", f"https://h.example/b.plugin.tar.gz sha256:{SHA}",
                                          f"/srv/c.plugin.tar.gz sha256:{SHA}", "/srv/d"]


@pytest.mark.parametrize("text, words", [
    ("https://h.example/node.iso", "has no checksum"),
    ("/srv/node.iso sha256:abc", "is not <algorithm>:<hex digest>"),
    (f"/srv/node.iso md5:{'0' * 32}", "is not <algorithm>:<hex digest>"),
    (f"/srv/node.iso sha256:{SHA} extra", "is not '<path or URL> [sha256:<hex>]'"),
    (f"https://h.example/dir/ sha256:{SHA}", "names no file"),
    (f"https://h.example/a/.. sha256:{SHA}", "names no file"),
])
def test_bad_references_are_refused_with_their_text(text, words):
    with pytest.raises(NodePluginError, match=re.escape(words)):
        parse_refs([text])


def test_a_mapping_without_src_is_refused():
    with pytest.raises(NodePluginError, match="has no 'src'"):
        parse_refs([{"checksum": f"sha256:{SHA}"}])


# -- downloads --------------------------------------------------------------------------------------------------

def test_download_checks_the_checksum(site, tmp_path):
    dest = tmp_path / "node.iso"
    assert download(site.url + "node.iso", str(dest), checksum=Checksum("sha256", SHA)) == str(dest)
    assert dest.read_bytes() == BODY
    assert [name for name in os.listdir(tmp_path) if name.endswith(".part")] == []


@pytest.mark.parametrize("faults", [[503], [500, 502], ["cut"], ["damage"], ["cut", 429]])
def test_transient_failures_are_tried_again(site, tmp_path, faults):
    site.faults["/node.iso"] = list(faults)
    dest = tmp_path / "node.iso"
    download(site.url + "node.iso", str(dest), checksum=Checksum("sha256", SHA), attempts=3)
    assert dest.read_bytes() == BODY
    assert site.hits["/node.iso"] == len(faults) + 1


def test_a_wrong_checksum_is_refused_after_the_attempts_and_nothing_is_left(site, tmp_path):
    wrong = Checksum("sha256", "0" * 64)
    dest = tmp_path / "node.iso"
    with pytest.raises(NodePluginError) as caught:
        download(site.url + "node.iso", str(dest), checksum=wrong, attempts=2, what="the ISO")
    text = str(caught.value)
    assert f"the ISO does not have the expected sha256 {'0' * 64}" in text
    assert f"attempt 1: its sha256 is {SHA}; attempt 2: its sha256 is {SHA}" in text and "refused" in text
    assert site.hits["/node.iso"] == 2
    assert os.listdir(tmp_path) == ["www"]


def test_a_server_that_keeps_failing_is_given_up_on(site, tmp_path):
    site.faults["/node.iso"] = [503, 503, 503, 503]
    with pytest.raises(NodePluginError, match=r"cannot download .*node.iso after 3 attempt\(s\): attempt 1: HTTP 503"):
        download(site.url + "node.iso", str(tmp_path / "node.iso"), attempts=3)
    assert site.hits["/node.iso"] == 3


def test_a_missing_file_is_not_tried_again(site, tmp_path):
    with pytest.raises(NodePluginError, match=r"cannot download .*/gone.iso: HTTP Error 404"):
        download(site.url + "gone.iso", str(tmp_path / "gone.iso"), attempts=3)
    assert site.hits["/gone.iso"] == 1


def test_an_unreachable_host_is_named(tmp_path):
    with pytest.raises(NodePluginError, match=r"cannot download http://127.0.0.1:9/x.iso after 2 attempt"):
        download("http://127.0.0.1:9/x.iso", str(tmp_path / "x.iso"), attempts=2, timeout=5)


# -- fetching references ----------------------------------------------------------------------------------------

def test_fetch_downloads_a_url_once_and_takes_a_path_as_it_is(site, tmp_path):
    local = tmp_path / "plugin.tar.gz"
    local.write_bytes(b"plugin")
    request = FetchRequest(artifacts=[f"{site.url}node.iso sha256:{SHA}", str(local)], dest=str(tmp_path / "in"))
    first = fetch_artifacts(request)
    assert first.changed
    assert [item.path for item in first.artifacts] == [str(tmp_path / "in" / "node.iso"), str(local)]
    assert first.artifacts[0].sha256 == SHA and first.artifacts[1].sha256 == hashlib.sha256(b"plugin").hexdigest()
    again = fetch_artifacts(request)
    assert not again.changed and site.hits["/node.iso"] == 1


def test_fetch_in_check_mode_downloads_nothing(site, tmp_path):
    result = fetch_artifacts(FetchRequest([f"{site.url}node.iso sha256:{SHA}"], str(tmp_path / "in"), check_mode=True))
    assert result.changed and result.artifacts[0].sha256 == SHA
    assert not (tmp_path / "in").exists() and site.hits["/node.iso"] == 0


def test_fetch_refuses_a_local_file_with_another_checksum(tmp_path):
    local = tmp_path / "base.iso"
    local.write_bytes(b"not it")
    with pytest.raises(NodePluginError, match="base.iso: the file has the sha256 .* not the expected"):
        fetch_artifacts(FetchRequest([f"{local} sha256:{SHA}"], str(tmp_path)))
    with pytest.raises(NodePluginError, match="is not a file on this host"):
        fetch_artifacts(FetchRequest([str(tmp_path / "missing.iso")], str(tmp_path)))


def test_two_urls_with_one_file_name_are_refused(tmp_path):
    with pytest.raises(NodePluginError, match="two URLs name the same file 'p.tar.gz'"):
        fetch_artifacts(FetchRequest([f"http://a.example/1/p.tar.gz sha256:{SHA}",
                                      f"http://a.example/2/p.tar.gz sha256:{SHA}"], str(tmp_path)))


# -- publishing -------------------------------------------------------------------------------------------------

def test_publish_places_the_files_under_the_digest_of_the_first(tmp_path):
    iso, report = tmp_path / "node.iso", tmp_path / "node.iso.report.json"
    iso.write_bytes(BODY)
    report.write_text('{"certified": true}\n', encoding="utf-8")
    request = PublishRequest(src=[str(iso), str(report)], dest=str(tmp_path / "pub"),
                             base_url="http://builder1.example.com/artifacts/")
    first = publish_artifacts(request)
    folder = tmp_path / "pub" / SHA
    assert first.changed and first.folder == str(folder) and first.sha256 == SHA
    assert first.url == f"http://builder1.example.com/artifacts/{SHA}/node.iso"
    assert [item.url for item in first.files][1] == f"http://builder1.example.com/artifacts/{SHA}/node.iso.report.json"
    assert (folder / "node.iso").read_bytes() == BODY
    report_sha = hashlib.sha256(report.read_bytes()).hexdigest()
    assert (folder / "SHA256SUMS").read_text() == f"{SHA}  node.iso\n{report_sha}  node.iso.report.json\n"
    assert oct((folder / "node.iso").stat().st_mode & 0o777) == "0o644"
    inode = (folder / "node.iso").stat().st_ino
    assert not publish_artifacts(request).changed
    report.write_text('{"certified": true, "again": 1}\n', encoding="utf-8")
    third = publish_artifacts(request)
    assert third.changed and [item.changed for item in third.files] == [False, True]
    assert (folder / "node.iso").stat().st_ino == inode


def test_publish_in_check_mode_writes_nothing(tmp_path):
    iso = tmp_path / "node.iso"
    iso.write_bytes(BODY)
    result = publish_artifacts(PublishRequest([str(iso)], str(tmp_path / "pub"), check_mode=True))
    assert result.changed and result.url is None and not (tmp_path / "pub").exists()


@pytest.mark.parametrize("names, base_url, words", [
    (["a.iso", "a.iso"], None, "distinct names"), (["a.iso", "SHA256SUMS"], None, "distinct names"),
    (["a.iso"], "builder1/artifacts", "is not an http"),
])
def test_publish_refuses(tmp_path, names, base_url, words):
    paths = []
    for index, name in enumerate(names):
        folder = tmp_path / str(index)
        folder.mkdir()
        (folder / name).write_bytes(b"x")
        paths.append(str(folder / name))
    with pytest.raises(NodePluginError, match=words):
        publish_artifacts(PublishRequest(paths, str(tmp_path / "pub"), base_url=base_url))


def test_a_mapping_takes_a_path_with_spaces_whole():
    assert parse_refs([{"src": "/srv/my isos/node.iso", "checksum": f"sha256:{SHA}"}]) == [
        ArtifactRef("/srv/my isos/node.iso", Checksum("sha256", SHA))]
    assert parse_refs([{"src": f"/srv/node.iso sha256:{SHA}"}]) == [ArtifactRef("/srv/node.iso", Checksum("sha256", SHA))]


def test_a_url_that_cannot_be_used_is_not_tried_again(tmp_path):
    with pytest.raises(NodePluginError, match=r"cannot download http://\[bad/x.iso: Invalid IPv6 URL"):
        download("http://[bad/x.iso", str(tmp_path / "x.iso"), attempts=3)
