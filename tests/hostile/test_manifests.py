# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile manifests inside a plugin, opened by `build` and node_plugin_apply: pathological JSON (200,000
levels deep, huge numbers, floats, NaN, duplicate keys, control characters), schema violations with huge
values, and dates that are not RFC 3339 UTC. Each is a clean refusal (exit 2) naming the plugin, with a
bounded message."""
from __future__ import annotations

import json
import os

import pytest

from tests.hostile.crafted import PluginParts

DEEP = 200_000


def _plugin(case, build_inputs, manifest: bytes | None = None, change=None) -> str:
    parts = PluginParts(build_inputs.good_plugin)
    if change is not None:
        data = parts.manifest()
        change(data)
        manifest = json.dumps(data).encode("utf-8")
    parts.set_manifest(manifest)
    return parts.write_raw(case.file("vendor-agent-1.0.plugin.tar.gz", b""))


@pytest.mark.parametrize("manifest, says", [
    (b"[" * DEEP + b"]" * DEEP, "nests arrays or objects more than 8 deep"),
    (b'{"":' * DEEP + b"1" + b"}" * DEEP, "nests arrays or objects more than 8 deep"),  # just under 1 MiB
    (b"9" * 1_000_000, "a number has more than 18 digits"),
    (b'{"format": 1e999}', "is not an integer"),
    (b'{"format": NaN}', "NaN is not a number JSON allows"),
    (b'{"format": 1, "format": 1}', "the key 'format' appears twice"),
    (b'{"name": "\\u001b]0;pwned\\u0007"}', "control character U+001B"),
    (b"\xff\xfe{\x00}\x00", "manifest is not UTF-8 JSON"),
    (b"not json at all", "manifest is not UTF-8 JSON"),
])
def test_pathological_json(case, build_inputs, manifest, says):
    build_inputs.keep_previous(case)
    path = _plugin(case, build_inputs, manifest)
    outcome = case.cli(*build_inputs.args(case.out, path), says=[says], names=[path])
    assert len(outcome.stderr) < 2000


@pytest.mark.parametrize("change, says", [
    (lambda m: m.update(created="2023-02-30T00:00:00Z"), "created: '2023-02-30T00:00:00Z' is not a valid RFC 3339"),
    (lambda m: m.update(created="\u0662\u0660\u0662\u0663-11-14T22:13:20Z"), "schema at created"),
    (lambda m: m.update(created="yesterday"), "schema at created"),
    (lambda m: m.update(name="x" * 1_000_000), "schema at name"),
    (lambda m: m.update(summary=["nested"] * 100_000), "schema at summary"),
    (lambda m: m["packages"].extend([{}] * 4096), "schema at packages"),
    (lambda m: m["packages"][0].update(size=-1), "schema at packages/0/size"),
    (lambda m: m.update(persist=["/etc/../../root/.ssh"]), "schema at persist/0"),
    (lambda m: m["recipe"].update(file="../recipe.ks"), "schema at recipe/file"),
    (lambda m: m["packages"][0].update(file="rpms/../../../etc/cron.d/x.rpm"), "schema at packages/0/file"),
])
def test_schema_and_semantics(case, build_inputs, change, says):
    build_inputs.keep_previous(case)
    path = _plugin(case, build_inputs, change=change)
    outcome = case.cli(*build_inputs.args(case.out, path), says=[says], names=[path])
    assert len(outcome.stderr) < 2000


def test_node_plugin_apply_refuses_a_deep_manifest(case, build_inputs):
    build_inputs.keep_previous(case)
    path = _plugin(case, build_inputs, b"[" * DEEP + b"]" * DEEP)
    args = {"src": build_inputs.base_iso, "plugins": [path], "dest": os.path.join(case.out, "node.iso")}
    case.module("node_plugin_apply", args, says=["nests arrays or objects more than 8 deep"], names=[path])
