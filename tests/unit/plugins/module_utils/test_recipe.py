# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import dataclasses
import json
import os
import tracemalloc

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _recipe
from ansible_collections.ovirt.node_plugins.plugins.module_utils._recipe import (
    MAX_RECIPE_BYTES, Recipe, generate_recipe, parse_recipe, read_recipe)
from tests.hostile.crafted import INCLUDE_SPELLINGS, RecordingServer, host_events, watch_io

DATA = os.path.join(os.path.dirname(__file__), "data", "recipes")
GOLDEN = sorted(name[:-3] for name in os.listdir(DATA) if name.endswith(".ks"))


def _as_json(recipe: Recipe) -> str:
    return json.dumps(dataclasses.asdict(recipe), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_recipes(name):
    """Each data/recipes/<name>.ks parses to exactly data/recipes/<name>.json."""
    recipe = read_recipe(os.path.join(DATA, f"{name}.ks"))
    golden = os.path.join(DATA, f"{name}.json")
    if os.environ.get("REGENERATE_GOLDEN"):
        with open(golden, "w", encoding="utf-8") as handle:
            handle.write(_as_json(recipe))
    with open(golden, encoding="utf-8") as handle:
        assert _as_json(recipe) == handle.read()


def test_scripts_keep_kickstart_order_and_flags():
    recipe = read_recipe(os.path.join(DATA, "full.ks"))
    assert [(s.kind, s.nochroot, s.interpreter) for s in recipe.scripts] == [
        ("pre", True, "/bin/sh"), ("post", True, "/bin/sh"), ("post", False, "/bin/bash")]
    assert recipe.scripts[1].body == "cp x $INSTALL_ROOT/etc\n"
    assert recipe.repos[0].path == "rpms"


@pytest.mark.parametrize("text, line, words", [
    ("network --bootproto=dhcp\n", 1, "'network' is not supported"),
    ("# c\nrootpw secret\n", 2, "'rootpw' is not supported"),
    ("part /home --size 10\n", 1, "'part /home'"),
    ("part / --size 10 --grow\n", 1, "'part --grow' is not supported"),
    ("part / --size 10\npart / --size 20\n", 2, "appears twice"),
    ("part / --size=abc\n", 1, "--size"),
    ("part /\n", 1, "needs --size"),
    ("bootloader --location=mbr\n", 1, "'bootloader --location'"),
    ("bootloader --append \"!\"\n", 1, "'!' alone is not a kernel argument"),
    ("repo --name=x --baseurl=http://example.com/x\n", 1, "only file:// folders"),
    ("repo --name=x --baseurl=file://rpms --cost=1\n", 1, "'repo --cost'"),
    ("%packages --nobase\nx\n%end\n", 1, "%packages takes no options"),
    ("%packages\n\n@core\n%end\n", 3, "'@core': package groups"),
    ("%post --interpreter /usr/bin/python3\nprint(1)\n%end\n", 1, "--interpreter /usr/bin/python3"),
    ("%post --log=/tmp/x\nx\n%end\n", 1, "'%post --log=/tmp/x' is not supported"),
    ("%pre --nochroot\nx\n%end\n", 1, "'%pre --nochroot'"),
    ("%traceback\nx\n%end\n", 1, "Unknown kickstart section: %traceback"),
    ("%addon com_redhat_kdump\n%end\n", 1, "Unknown kickstart section"),
    ("%include /tmp/other.ks\n", 1, "'%include' is not supported"),
    ("%ksappend /tmp/other.ks\n", 1, "'%ksappend' is not supported"),
    ("part / --size 65537\n", 1, "a number from 1 to 65536"),
    ("part / --size \"10\n", 1, "No closing quotation"),
    ("bootloader --append 'a \"b'\n", 1, "bootloader --append: No closing quotation"),
    ("%packages\n-\n%end\n", 2, "'-' is not a package name"),
    ("%packages\nvendor-*\n%end\n", 2, "'vendor-*' is not a package name"),
    ("%packages\nagent >= 1.0\n%end\n", 2, "one package name a line"),
    ("repo --name=a --baseurl=file://rpms\nrepo --name=a --baseurl=file://rpms\n", 2,
     "A repo with the name a has already been defined"),
    ("%end\n", 1, "Unknown kickstart section: %end"),
    ("%post\necho x\n", 2, "does not end with %end"),
])
def test_refusals_name_the_line_and_directive(text, line, words):
    with pytest.raises(NodePluginError) as caught:
        parse_recipe(text, source="plugin/recipe.ks")
    message = str(caught.value)
    assert message.startswith(f"plugin/recipe.ks: line {line}: ")
    assert words in message


def test_generated_recipe_parses_back():
    text = generate_recipe(["vendor-agent", "vendor-agent-lib"], "vendor-agent")
    recipe = parse_recipe(text)
    assert recipe.packages == ["vendor-agent", "vendor-agent-lib"]
    assert [(r.name, r.baseurl) for r in recipe.repos] == [("vendor-agent", "file://rpms")]
    assert recipe.scripts == [] and recipe.root_size_mib is None
    with_args = parse_recipe(generate_recipe(["a"], "a", root_size_mib=3000, kernel_args=["x=1", "!quiet"]))
    assert with_args.root_size_mib == 3000
    assert with_args.kernel_args_add == ["x=1"] and with_args.kernel_args_remove == ["quiet"]


# -- a recipe is parsed from its own text only ---------------------------------------------------

CANARY_TEXT = "part / --size 7\nbootloader --append canary.secret=3f1d\n"


@pytest.fixture(scope="module")
def http_canary():
    server = RecordingServer(CANARY_TEXT)
    yield server
    server.close()


@pytest.fixture(scope="module", autouse=True)
def _warm_parser():
    """pykickstart imports its command modules on first use: import them before anything is watched."""
    read_recipe(os.path.join(DATA, "full.ks"))
    with pytest.raises(NodePluginError):
        parse_recipe("part / --size x\n")


@pytest.mark.parametrize("spelling", INCLUDE_SPELLINGS)
@pytest.mark.parametrize("target", ["file", "url"])
def test_no_spelling_of_include_reads_a_file_or_fetches_a_url(spelling, target, tmp_path, http_canary):
    canary = tmp_path / "canary.ks"
    canary.write_text(CANARY_TEXT)
    where = str(canary) if target == "file" else http_canary.url
    text = spelling.format(x=where) + "\n"
    with watch_io() as events:
        with pytest.raises(NodePluginError) as caught:
            parse_recipe(text, source="plugin/recipe.ks")
    message = str(caught.value)
    assert "canary.secret" not in message and "3f1d" not in message
    assert "%include" in message or "%ksappend" in message or "section" in message, message
    assert host_events(events) == []
    assert http_canary.requests == []


def test_include_inside_a_script_body_stays_script_text(tmp_path):
    """A quoted '%include' in a script is a shell line for the appliance, never a directive."""
    canary = tmp_path / "canary.ks"
    canary.write_text(CANARY_TEXT)
    with watch_io() as events:
        recipe = parse_recipe(f"%post\n'%include' {canary}\n%ksappend {canary}\n%end\n")
    assert recipe.scripts[0].body == f"'%include' {canary}\n%ksappend {canary}\n"
    assert recipe.root_size_mib is None and recipe.kernel_args_add == []
    assert host_events(events) == []


def test_pykickstart_readers_are_refusals(tmp_path):
    """The parser's own file and URL readers (readKickstart, _handleInclude) cannot be reached."""
    canary = tmp_path / "canary.ks"
    canary.write_text(CANARY_TEXT)
    parser = _recipe._SubsetParser(_recipe._SubsetChecks("recipe.ks", ""))
    with watch_io() as events:
        for call in (parser.readKickstart, parser._handleInclude):
            with pytest.raises(NodePluginError, match="cannot read other files"):
                call(str(canary))
    assert host_events(events) == []


def test_golden_recipes_parse_without_any_io():
    for name in GOLDEN:
        with open(os.path.join(DATA, f"{name}.ks"), encoding="utf-8") as handle:
            text = handle.read()
        with watch_io() as events:
            parse_recipe(text)
        assert host_events(events) == [], name


# -- bounded, plain text, messages that quote the recipe safely ------------------------------------

def test_size_is_bounded():
    parse_recipe("#" * (MAX_RECIPE_BYTES - 1) + "\n")
    with pytest.raises(NodePluginError, match=f"larger than {MAX_RECIPE_BYTES} bytes"):
        parse_recipe("#" * MAX_RECIPE_BYTES + "\n")
    with pytest.raises(NodePluginError, match=f"larger than {MAX_RECIPE_BYTES} bytes"):
        parse_recipe("# " + "é" * (MAX_RECIPE_BYTES // 2) + "\n")  # counted in bytes, not characters


def test_reading_dev_zero_is_bounded():
    tracemalloc.start()
    try:
        with pytest.raises(NodePluginError, match=f"/dev/zero: the recipe is larger than {MAX_RECIPE_BYTES} bytes"):
            read_recipe("/dev/zero")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_RECIPE_BYTES


@pytest.mark.parametrize("content, words", [
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00\x01\x00\x00\x00\xff\xfe", "line 1: "),
    (b"part / --size 10\n\xff\xfe\n", "line 2: not UTF-8 text (byte 0xff at column 1)"),
    (b"part / --size 10\x00\n", "line 1: control character U+0000 at column 17"),
    (b"part / --size 10\r\n", "line 1: a carriage return (Windows line ending)"),
    ("part / --size 10\n\u2028%include /etc/shadow\n".encode(), "line 2: control character U+2028"),
])
def test_binary_and_odd_text_is_refused(tmp_path, content, words):
    path = tmp_path / "recipe.ks"
    path.write_bytes(content)
    with pytest.raises(NodePluginError) as caught:
        read_recipe(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and words in message
    assert "\x00" not in message and "\r" not in message and "\u2028" not in message


def test_unreadable_recipe_is_reported(tmp_path):
    with pytest.raises(NodePluginError, match="cannot read the recipe: No such file or directory"):
        read_recipe(str(tmp_path / "missing.ks"))
    with pytest.raises(NodePluginError, match="cannot read the recipe: Is a directory"):
        read_recipe(str(tmp_path))


def test_messages_quote_the_line_escaped_and_bounded():
    with pytest.raises(NodePluginError) as caught:
        parse_recipe("# ok\nnetwork --hostname=" + "A" * 5000 + "\n", source="r.ks")
    message = str(caught.value)
    assert message.startswith("r.ks: line 2: 'network' is not supported in a plugin recipe; the line reads "
                              "'network --hostname=AAAA")
    assert "more characters)" in message and len(message) < 600
    with pytest.raises(NodePluginError) as caught:
        parse_recipe("\x1b[2J\x1b[31mrootpw x\n")
    assert "\x1b" not in str(caught.value) and "\\x1b[2J" in str(caught.value)
    with pytest.raises(NodePluginError) as caught:
        parse_recipe("bootloader --location=" + "B" * 5000 + "\n")
    assert len(str(caught.value)) < 700


def test_bounds_on_what_a_recipe_may_ask():
    scripts = "%post\necho x\n%end\n" * _recipe.MAX_SCRIPTS
    assert len(parse_recipe(scripts).scripts) == _recipe.MAX_SCRIPTS
    with pytest.raises(NodePluginError, match=f"line {3 * _recipe.MAX_SCRIPTS + 1}: more than"):
        parse_recipe(scripts + "%pre\necho y\n%end\n")
    repos = "".join(f"repo --name=r{index} --baseurl=file://rpms\n" for index in range(_recipe.MAX_REPOS + 1))
    with pytest.raises(NodePluginError, match=f"line {_recipe.MAX_REPOS + 1}: more than {_recipe.MAX_REPOS} repo"):
        parse_recipe(repos)
    words = " ".join(f"vendor.opt{index}=1" for index in range(200))
    with pytest.raises(NodePluginError, match="kernel arguments add up to more than 2048 bytes"):
        parse_recipe(f"bootloader --append \"{words}\"\n")


def test_bootloader_lines_add_up_each_with_its_own_words():
    recipe = parse_recipe("bootloader --append \"a=1 !quiet\"\nbootloader --append b=2\n")
    assert recipe.kernel_args_add == ["a=1", "b=2"] and recipe.kernel_args_remove == ["quiet"]
    with pytest.raises(NodePluginError, match="line 2: 'bootloader' needs --append"):
        parse_recipe("bootloader --append a=1\nbootloader\n")
