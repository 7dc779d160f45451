# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_artifact_publish and node_artifact_fetch run through ansible: publish by sha256, fetch by URL and checksum
(survey lines and mappings), reruns and check mode change nothing, a wrong checksum fails with a message."""
from __future__ import annotations

import hashlib
import os

from tests.ansible_run import run_module
from tests.unit.httpserve import serve
from tests.unit.plugins.modules.module_docs import assert_returns_documented

BODY = b"ISO bytes\n" * 1000


def test_publish_then_fetch_by_url(tmp_path):
    iso, report = tmp_path / "node.iso", tmp_path / "node.iso.report.json"
    iso.write_bytes(BODY)
    report.write_text("{}\n", encoding="utf-8")
    www = tmp_path / "www"
    with serve(str(www.parent)) as server:
        base_url = server.url + "www"
        args = {"src": [str(iso), str(report)], "dest": str(www), "base_url": base_url}
        checked = run_module("node_artifact_publish", args, "--check")
        assert checked["changed"] and not www.exists()
        published = run_module("node_artifact_publish", args)
        assert_returns_documented("node_artifact_publish", published)
        sha = hashlib.sha256(BODY).hexdigest()
        assert published["changed"] and published["sha256"] == sha
        assert published["url"] == f"{base_url}/{sha}/node.iso"
        assert not run_module("node_artifact_publish", args)["changed"]

        inputs = tmp_path / "inputs"
        survey = f"{published['url']} sha256:{published['sha256']}\n# the report too\n" \
                 f"{published['urls'][1]} sha256:{published['files'][1]['sha256']}\n"
        fetch = {"artifacts": [survey, {"src": str(report)}], "dest": str(inputs)}
        assert run_module("node_artifact_fetch", fetch, "--check")["changed"] and not inputs.exists()
        fetched = run_module("node_artifact_fetch", fetch)
        assert_returns_documented("node_artifact_fetch", fetched)
        assert fetched["changed"]
        assert fetched["paths"] == [str(inputs / "node.iso"), str(inputs / "node.iso.report.json"), str(report)]
        assert (inputs / "node.iso").read_bytes() == BODY
        assert not run_module("node_artifact_fetch", fetch)["changed"]

        wrong = run_module("node_artifact_fetch", {"artifacts": [f"{published['url']} sha256:{'1' * 64}"],
                                                   "dest": str(tmp_path / "other"), "attempts": 2})
    assert wrong["failed"] and "does not have the expected sha256 " + "1" * 64 in wrong["msg"]
    assert "attempt 2" in wrong["msg"] and "exception" not in wrong
    assert os.listdir(tmp_path / "other") == []


def test_a_url_without_checksum_is_refused(tmp_path):
    result = run_module("node_artifact_fetch", {"artifacts": ["https://mirror.example.com/node.iso"],
                                                "dest": str(tmp_path)})
    assert result["failed"] and "has no checksum" in result["msg"] and "exception" not in result
