# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile recipes, wherever a recipe comes in: `pack --recipe` and node_plugin_build on the vendor's side,
a plugin's recipe.ks under `build` and node_plugin_apply on the user's side.

No spelling of %include or %ksappend reads a host file (the canary, /proc/self/environ, /etc/shadow) or
fetches a URL (a local server records requests); binary, oversize, endless and odd text is refused; the
message quotes the recipe, never what a directive pointed at. The in-process parser is covered line by line
in tests/unit/plugins/module_utils/test_recipe.py; these run the real command and modules.
"""
from __future__ import annotations

import os

import pytest

from tests.hostile.crafted import PluginParts, RecordingServer

# The ways through that the hostile test found, and the literal one (the full list runs in the unit test).
SPELLINGS = ["'%include' {x}", '%inc""lude {x}', "%ksappend {x}", "%post\n%include {x}\n%end", "%include {x}"]
# _packager reads --recipe itself (Python's codec error) until it reads through _recipe.read_recipe_text.
_NOT_UTF8 = ("not UTF-8 text", "'utf-8' codec can't decode")
CANARY_RECIPE = "part / --size 7\nbootloader --append canary.url.secret=1\n"


@pytest.fixture(scope="module")
def server():
    recording = RecordingServer(CANARY_RECIPE)
    yield recording
    recording.close()


def _target(case, server, kind: str) -> str:
    return {"canary": case.canary_file, "url": server.url, "environ": "/proc/self/environ",
            "shadow": "/etc/shadow"}[kind]


# -- vendor side: pack --recipe -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["canary", "url"])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_pack_never_follows_an_include(case, pack_inputs, server, spelling, kind):
    previous = case.keep(os.path.join(case.out, "agent-1.0.plugin.tar.gz"), open(pack_inputs.good_plugin, "rb").read())
    recipe = case.file("recipe.ks", spelling.format(x=_target(case, server, kind)) + "\n")
    case.cli(*pack_inputs.args(case.out, "--recipe", recipe), says=["is not supported", "cannot read other files"],
             names=[recipe])
    assert server.requests == []
    assert os.path.getsize(previous) > 0


@pytest.mark.parametrize("kind", ["environ", "shadow"])
def test_pack_never_quotes_host_files(case, pack_inputs, server, kind):
    recipe = case.file("recipe.ks", f"'%include' {_target(case, server, kind)}\n")
    outcome = case.cli(*pack_inputs.args(case.out, "--recipe", recipe), says=["'%include' is not supported"],
                       names=[recipe])
    assert "root:" not in outcome.everything and "PATH=" not in outcome.everything


@pytest.mark.parametrize("content, says", [
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, [_NOT_UTF8]),
    (b"part / --size 10\n%post\necho \xff\xfe\n%end\n", [_NOT_UTF8]),
    (b"\x1b]0;pwned\x07\x1b[2Jrootpw x\n", ["line 1: control character U+001B at column 1", "\\x1b]0;pwned"]),
    (b"# padding\n" * (110 * 1024), ["the recipe is larger than 1048576 bytes"]),
    (b"network --hostname=" + b"A" * 100_000 + b"\n", ["line 1: 'network' is not supported", "more characters)"]),
    (b"bootloader --append '" + b"x" * 10 + b"\n", ["No closing quotation"]),
])
def test_pack_refuses_odd_recipe_files(case, pack_inputs, content, says):
    recipe = case.file("recipe.ks", content)
    outcome = case.cli(*pack_inputs.args(case.out, "--recipe", recipe), says=says, names=[recipe])
    assert len(outcome.stderr) < 1000 and "\x1b" not in outcome.stderr


def test_pack_reads_an_endless_recipe_bounded(case, pack_inputs):
    case.cli(*pack_inputs.args(case.out, "--recipe", "/dev/zero"), says=["the recipe is larger than 1048576 bytes"],
             names=["/dev/zero"], memory_mib=1024)


def test_pack_names_a_recipe_that_is_a_folder_or_missing(case, pack_inputs):
    case.cli(*pack_inputs.args(case.out, "--recipe", case.inputs), says=["cannot read the recipe"], names=[case.inputs])
    missing = os.path.join(case.inputs, "missing.ks")
    case.cli(*pack_inputs.args(case.out, "--recipe", missing), says=["cannot read the recipe"], names=[missing])


def test_an_include_in_a_script_body_is_packed_as_script_text(case, pack_inputs, server):
    """What held: a quoted '%include' in %post is a shell line for the appliance; the plugin is written."""
    recipe = case.file("recipe.ks", f"repo --name=agent --baseurl=file://rpms\n%packages\nagent\n%end\n"
                                    f"%post\n'%include' {case.canary_file}\n%end\n")
    case.cli(*pack_inputs.args(case.out, "--recipe", recipe), exit=0, new=["agent-1.0.plugin.tar.gz"])
    assert server.requests == []


def test_node_plugin_build_never_follows_an_include(case, pack_inputs, server):
    previous = os.path.join(case.out, "agent-1.0.plugin.tar.gz")
    case.keep(previous, open(pack_inputs.good_plugin, "rb").read())
    recipe = case.file("recipe.ks", f'%inc""lude {server.url}\n')
    case.module("node_plugin_build", pack_inputs.module_args(case.out, recipe=recipe),
                says=["'%include' is not supported"], names=[recipe])
    recipe = case.file("recipe2.ks", f"'%ksappend' {case.canary_file}\n")
    case.module("node_plugin_build", pack_inputs.module_args(case.out, recipe=recipe), "--check",
                says=["'%ksappend' is not supported"], names=[recipe])
    assert server.requests == []


# -- user side: a plugin's recipe.ks ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["canary", "url", "environ"])
def test_build_never_follows_an_include_in_a_plugin(case, build_inputs, server, kind):
    build_inputs.keep_previous(case)
    plugin = PluginParts(build_inputs.good_plugin).set_recipe(f"'%include' {_target(case, server, kind)}\n")
    path = plugin.write(case.file("vendor-agent-1.0.plugin.tar.gz", b""))
    case.cli(*build_inputs.args(case.out, path), says=["recipe.ks: line 1: '%include' is not supported"],
             names=[path])
    assert server.requests == []


@pytest.mark.parametrize("recipe, says", [
    (b"\x00\x01\x02binary\xff", ["recipe.ks: line 1: not UTF-8 text"]),
    (b"repo --name=a --baseurl=file://rpms\r\n", ["line 1: a carriage return (Windows line ending)"]),
    ("%post\necho \u2028%include /etc/shadow\n%end\n".encode(), ["line 2: control character U+2028"]),
    ("%post\n" + "echo x\n%end\n%post\n" * 65 + "echo y\n%end\n", ["more than 64 %pre and %post scripts"]),
    ("part / --size 100000000\n", ["a number from 1 to 65536"]),
    ("repo --name=x --baseurl=file:///etc\n", ["repo 'x' points at 'file:///etc'"]),
])
def test_build_refuses_a_hostile_plugin_recipe(case, build_inputs, recipe, says):
    build_inputs.keep_previous(case)
    path = PluginParts(build_inputs.good_plugin).set_recipe(recipe).write(case.file("p.plugin.tar.gz", b""))
    case.cli(*build_inputs.args(case.out, path), says=says, names=[path])


def test_node_plugin_apply_never_follows_an_include(case, build_inputs, server):
    build_inputs.keep_previous(case)
    path = PluginParts(build_inputs.good_plugin).set_recipe(f"%inc''lude {server.url}\n").write(
        case.file("p.plugin.tar.gz", b""))
    args = {"src": build_inputs.base_iso, "plugins": [path], "dest": os.path.join(case.out, "node.iso")}
    case.module("node_plugin_apply", args, "--check", says=["'%include' is not supported"], names=[path])
    assert server.requests == []
