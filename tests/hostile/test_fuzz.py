# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fuzz pass over the manifest and recipe parsers (hypothesis), asserting only this: a valid result, or a
clean refusal (NodePluginError with a bounded message free of control characters), and never any I/O.

Bounded and repeatable in `make test`: derandomized (the same examples every run), a fixed number of examples
per parser (about 10 s each on this machine), no example database written into the checkout. To explore
instead: OVIRT_FUZZ_EXAMPLES=20000 OVIRT_FUZZ_RANDOM=1 pytest tests/hostile/test_fuzz.py.
"""
from __future__ import annotations

import json
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import PluginManifest, parse_manifest
from ansible_collections.ovirt.node_plugins.plugins.module_utils._recipe import (
    MAX_KERNEL_ARGS_BYTES, MAX_ROOT_SIZE_MIB, MAX_SCRIPTS, PACKAGE_NAME, Recipe, parse_recipe)
from tests.hostile.crafted import INCLUDE_SPELLINGS, host_events, watch_io
from tests.unit.rpmhelpers import cache_root

# hypothesis keeps caches in .hypothesis/ of the working folder unless told: the test cache, which git ignores.
set_hypothesis_home_dir(os.path.join(cache_root(), "hypothesis"))

FUZZ = settings(max_examples=int(os.environ.get("OVIRT_FUZZ_EXAMPLES", "600")), deadline=None, database=None,
                derandomize=not os.environ.get("OVIRT_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
CANARY = "/tmp/ovirt-fuzz-canary-that-must-never-be-opened"


def _clean_refusal(error: NodePluginError) -> None:
    text = str(error)
    assert len(text) < 2000, text[:300]
    assert not _CONTROL.search(text), ascii(text[:300])


# -- recipes ---------------------------------------------------------------------------------------

_WORDS = st.sampled_from([
    "part", "/", "--size", "4096", "--size=0", "-1", "99999999999999999999", "bootloader", "--append", "repo",
    "--name=r", "--baseurl=file://rpms", "--baseurl=http://127.0.0.1:9/x", "--baseurl=file:///etc", "%pre", "%post",
    "--nochroot", "--interpreter", "/bin/sh", "/usr/bin/python3", "--log=/tmp/x", "%packages", "%end", "@core",
    "-agent", "agent", "%include", "%ksappend", "'%include'", '%inc""lude', "%traceback", "%addon", "network",
    "rootpw", "#", "!quiet", "!", "'", '"', "\\", "\t", "x=1", "vendor.debug=1", CANARY, "%", "--",
])
_LINE = st.one_of(
    st.lists(_WORDS, max_size=6).map(" ".join),
    st.text(max_size=40),
    st.sampled_from(INCLUDE_SPELLINGS).map(lambda spelling: spelling.format(x=CANARY)),
)
RECIPES = st.lists(_LINE, max_size=25).map("\n".join)


def _valid_recipe(recipe: Recipe) -> None:
    assert recipe.root_size_mib is None or 0 < recipe.root_size_mib <= MAX_ROOT_SIZE_MIB
    assert len(recipe.scripts) <= MAX_SCRIPTS
    assert all(repo.baseurl.startswith("file://") and repo.path for repo in recipe.repos)
    assert all(PACKAGE_NAME.fullmatch(name) for name in recipe.packages + recipe.excluded)
    assert all(script.interpreter in ("/bin/sh", "/bin/bash") for script in recipe.scripts)
    assert len(" ".join(recipe.kernel_args_add + recipe.kernel_args_remove).encode()) <= MAX_KERNEL_ARGS_BYTES
    assert all(word and "!" != word for word in recipe.kernel_args_remove)


@FUZZ
@given(RECIPES)
def test_recipe_parser_refuses_cleanly_or_parses_within_bounds(text):
    with watch_io() as events:
        try:
            recipe = parse_recipe(text, source="fuzz/recipe.ks")
        except NodePluginError as error:
            _clean_refusal(error)
        else:
            _valid_recipe(recipe)
    assert host_events(events) == []


# -- manifests -------------------------------------------------------------------------------------

GOOD_MANIFEST = {
    "format": 1, "name": "agent", "version": "1.0", "vendor": "Example", "summary": "an agent", "kind": "standard",
    "node": {"product": "ovirt-node-iso", "versions": ">=2.5.0, <2.6"},
    "packages": [{"file": "rpms/agent-1.0-1.noarch.rpm", "name": "agent", "nevra": "agent-1.0-1.noarch",
                  "size": 2048, "sha256": "0" * 64, "role": "plugin", "signed": False, "key_id": None}],
    "recipe": {"file": "recipe.ks", "sha256": "1" * 64}, "persist": ["/etc/agent/agent.conf"],
    "allowed_path_overrides": [], "created": "2023-11-14T22:13:20Z",
}
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_PATHS = st.sampled_from([(), ("node",), ("packages", 0), ("recipe",)])
_KEYS = st.one_of(st.sampled_from(sorted({*GOOD_MANIFEST, "product", "versions", "file", "name", "nevra", "size",
                                          "sha256", "role", "signed", "key_id"})), st.text(max_size=8))


@st.composite
def manifests(draw) -> bytes:
    """The good manifest, bent once (a value replaced or removed, a key added) and written, or raw bytes."""
    how = draw(st.sampled_from(["replace", "remove", "raw", "truncate", "nest"]))
    data = json.loads(json.dumps(GOOD_MANIFEST))
    if how == "raw":
        return draw(st.binary(max_size=200))
    if how == "nest":
        depth = draw(st.integers(min_value=1, max_value=5000))
        return b"[" * depth + json.dumps(GOOD_MANIFEST).encode() + b"]" * depth
    target = data
    for part in draw(_PATHS):
        target = target[part]
    key = draw(_KEYS)
    if how == "remove":
        target.pop(key, None)
    else:
        target[key] = draw(_VALUES)
    text = json.dumps(data, allow_nan=True, ensure_ascii=draw(st.booleans()))
    if how == "truncate":
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(manifests())
def test_manifest_parser_refuses_cleanly_or_validates(raw):
    with watch_io() as events:
        try:
            manifest = parse_manifest(raw, where="fuzz.plugin.tar.gz: manifest.json")
        except NodePluginError as error:
            _clean_refusal(error)
        else:
            assert isinstance(manifest, PluginManifest)
            assert parse_manifest(manifest.to_bytes()) == manifest  # a valid result survives its own writing
    assert host_events(events) == []


def test_the_good_manifest_is_valid():
    """The fuzzer bends a manifest that is valid to begin with (else it would only ever test refusals)."""
    assert parse_manifest(json.dumps(GOOD_MANIFEST).encode()).name == "agent"
