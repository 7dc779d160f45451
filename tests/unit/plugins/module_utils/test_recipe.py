# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._recipe import (
    Recipe, generate_recipe, parse_recipe, read_recipe)

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
    ("bootloader --append \"!\"\n", 1, "'!' must be followed"),
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
