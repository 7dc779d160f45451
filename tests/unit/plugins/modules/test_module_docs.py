# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each module's DOCUMENTATION matches its module-level ARGUMENT_SPEC, option by option.

RETURN is compared with real results where the module tests run each module
(module_docs.assert_returns_documented).
"""
from __future__ import annotations

import ast
import inspect

import pytest
import yaml

from tests.unit.plugins.modules import module_docs


@pytest.mark.parametrize("name", module_docs.MODULES)
def test_documentation_matches_the_argument_spec(name):
    module = module_docs.load(name)
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert set(options) == set(module.ARGUMENT_SPEC), name
    for option, spec in module.ARGUMENT_SPEC.items():
        for field in module_docs.SPEC_FIELDS:
            documented = options[option].get(field, module_docs.FIELD_DEFAULTS.get(field))
            declared = spec.get(field, module_docs.FIELD_DEFAULTS.get(field))
            assert documented == declared, f"{name}: option {option}: {field} is {documented!r} in DOCUMENTATION, " \
                                           f"{declared!r} in ARGUMENT_SPEC"


def test_every_module_is_found():
    assert set(module_docs.ENGINE_MODULES) <= set(module_docs.MODULES)


@pytest.mark.parametrize("name", module_docs.ENGINE_MODULES)
def test_the_module_builds_on_its_argument_spec_and_runs_one_engine(name):
    """AnsibleModule gets ARGUMENT_SPEC itself (no second spec), and run_engine handles every failure."""
    source = inspect.getsource(module_docs.load(name))
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    modules = [call for call in calls if call.func.id == "AnsibleModule"]
    assert len(modules) == 1
    spec = next(keyword.value for keyword in modules[0].keywords if keyword.arg == "argument_spec")
    assert isinstance(spec, ast.Name) and spec.id == "ARGUMENT_SPEC"
    assert [call.func.id for call in calls].count("run_engine") == 1
    assert "except" not in source.split('RETURN = r"""', 1)[1].split('"""', 1)[1], "failures belong to run_engine"


@pytest.mark.parametrize("name", module_docs.MODULES)
def test_return_documents_type_and_when(name):
    for key, doc in module_docs.documented_returns(name).items():
        assert doc.get("type") and doc.get("returned") and doc.get("description"), f"{name}: RETURN {key}"
