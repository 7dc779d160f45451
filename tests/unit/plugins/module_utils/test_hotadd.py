# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_hotadd's pure logic: reading the Node's answers, recipe refusals, products, hosts. The Node itself is
in tests/integration/test_hotadd.py."""
from __future__ import annotations

import dataclasses

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _hotadd as hotadd
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._recipe import parse_recipe


@dataclasses.dataclass
class _Connection:
    """A NodeConnection that answers every command with one canned outcome (for the parsers)."""

    answer: hotadd.ShellOutcome
    target: str = "node1"

    def run(self, command: str) -> hotadd.ShellOutcome:
        self.command = command
        return self.answer

    def put(self, local: str, remote: str) -> None:
        raise AssertionError("no files are copied while reading facts")


@dataclasses.dataclass
class _Archive:
    """The two fields of a PluginArchive that live_refusals reads."""

    recipe_text: str

    @property
    def recipe(self):
        return parse_recipe(self.recipe_text)


FACTS = """@@ovirt-hotadd version
PRODUCT='oVirt Node Hypervisor'
PRODUCT_CODE=ovirt-node-iso
VERSION=2.5.0
RELEASE=1.0.fc17

@@ovirt-hotadd system-release
oVirt Node Hypervisor release 2.5.0 (1.0.fc17)
@@ovirt-hotadd rpm
/usr/bin/rpm
@@ovirt-hotadd installed
vendor-agent\t0\t1.0\t1\tnoarch\tSat Jun  2 00:00:00 2012
vendor-agent\t0\t1.1\t1\tnoarch\tSun Jun  3 00:00:00 2012
package vendor-agent-lib is not installed
@@ovirt-hotadd config
/dev/sda /config ext4 rw,relatime 0 0
@@ovirt-hotadd persisted
/etc/vendor-agent/agent.conf
not-a-path
@@ovirt-hotadd existing
/etc/vendor-agent/agent.conf
/etc/injected
@@ovirt-hotadd record vendor-agent
Name:vendor-agent
Version:1.1-1.noarch
Install Date:Sun Jun  3 00:00:00 2012

@@ovirt-hotadd end
"""


def test_the_facts_of_a_stateful_node_are_read_from_one_answer():
    connection = _Connection(hotadd.ShellOutcome(0, FACTS.replace("\n", "\r\n"), ""))
    node = hotadd.read_node(connection, ["vendor-agent", "vendor-agent-lib"], ["/etc/vendor-agent/agent.conf"])
    assert (node.info.version, node.info.release, node.info.source) == ("2.5.0", "1.0.fc17", "/etc/default/version")
    assert node.rpm == "/usr/bin/rpm" and node.stateful
    assert list(node.installed) == ["vendor-agent"] and node.installed["vendor-agent"].nevra == "vendor-agent-1.1-1.noarch"
    assert node.records == {"vendor-agent": {"Name": "vendor-agent", "Version": "1.1-1.noarch",
                                             "Install Date": "Sun Jun  3 00:00:00 2012"}}
    assert node.persisted == ("/etc/vendor-agent/agent.conf",)
    assert node.existing == ("/etc/vendor-agent/agent.conf",)  # only what was asked
    assert "'vendor-agent-lib'" in connection.command or " vendor-agent-lib" in connection.command


def test_a_node_without_version_file_is_known_by_its_system_release():
    answer = FACTS.replace("VERSION=2.5.0\nRELEASE=1.0.fc17\n", "").replace("/dev/sda /config ext4 rw,relatime 0 0\n", "")
    node = hotadd.read_node(_Connection(hotadd.ShellOutcome(0, answer, "")), ["vendor-agent"])
    assert (node.info.version, node.info.source, node.stateful) == ("2.5.0", "/etc/system-release", False)


@pytest.mark.parametrize("answer, message", [
    ("sh: syntax error\n", "did not answer"),
    (FACTS.replace("/usr/bin/rpm\n", ""), "no working rpm"),
    (FACTS.replace("VERSION=2.5.0\n", "").replace("oVirt Node Hypervisor release 2.5.0 (1.0.fc17)", "Debian"),
     "cannot tell which Node")])
def test_unusable_answers_are_refused_with_the_reason(answer, message):
    with pytest.raises(NodePluginError, match=message):
        hotadd.read_node(_Connection(hotadd.ShellOutcome(0, answer, "")), ["vendor-agent"])


def test_recipes_for_images_are_refused_directive_by_directive():
    text = ("repo --name=p --baseurl=file://rpms\npart / --size 4096\nbootloader --append \"vendor.debug=1\"\n"
            "%packages\np\n%end\n%pre\necho pre\n%end\n%post --nochroot\necho $LIVE_ROOT\n%end\n%post\necho ok\n%end\n")
    refusals = hotadd.live_refusals(_Archive(text))
    assert [refusal.split(":")[0] for refusal in refusals] == ["line 2", "line 3", "line 7", "line 10"]
    assert "'part'" in refusals[0] and "'bootloader'" in refusals[1] and "'%pre'" in refusals[2]
    assert "'%post --nochroot'" in refusals[3]


def test_a_recipe_with_packages_and_post_only_is_accepted():
    """Words inside a script are not directives, even 'part' or 'bootloader' at the start of a line."""
    assert hotadd.live_refusals(_Archive("repo --name=p --baseurl=file://rpms\n%packages\np\n%end\n"
                                         "%post\npart=1\nbootloader --append x\necho $part\n%end\n")) == []


def test_output_of_the_node_is_shown_printable_and_bounded():
    outcome = hotadd.ShellOutcome(1, "line\x1b[2J\r\n" * 100 + "last\n", "err\x07")
    shown = outcome.output.splitlines()
    assert len(shown) == 60 and shown[-2:] == ["last", "err\\x07"] and "\\x1b[2J" in shown[0]


def test_a_plugin_product_matches_the_nodes_product_or_its_code():
    node = hotadd._node_info(FACTS.split("@@ovirt-hotadd system-release", maxsplit=1)[0].split("\n", 1)[1], "", "node1")
    assert node.is_product("ovirt-node-iso")
    assert node.is_product("oVirt Node Hypervisor")
    assert not node.is_product("rhev-hypervisor")


@pytest.mark.parametrize("host, expected", [
    ("node1", ("root", "node1", 22)), ("admin@node1.example.com:2222", ("admin", "node1.example.com", 2222)),
    ("root@[2001:db8::1]:22", ("root", "2001:db8::1", 22)), ("root@192.0.2.10", ("root", "192.0.2.10", 22))])
def test_ssh_targets_are_parsed(host, expected):
    connection = hotadd.OpenSshConnection(host)
    assert (connection.user, connection.hostname, connection.port) == expected


@pytest.mark.parametrize("host", ["", "-oProxyCommand=x", "root@-oProxyCommand=x", "root@node:99999", "a b",
                                  "root@node;reboot"])
def test_bad_ssh_targets_are_refused(host):
    with pytest.raises(NodePluginError):
        hotadd.OpenSshConnection(host)


def test_the_option_documentation_module_and_the_action_share_one_spec():
    from ansible_collections.ovirt.node_plugins.plugins.modules import node_plugin_hotadd as module
    from tests.unit.plugins.modules import module_docs
    import yaml
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert module.ARGUMENT_SPEC is hotadd.ARGUMENT_SPEC and set(options) == set(hotadd.ARGUMENT_SPEC)
    for option, spec in hotadd.ARGUMENT_SPEC.items():
        for field in module_docs.SPEC_FIELDS:
            assert options[option].get(field, module_docs.FIELD_DEFAULTS.get(field)) == \
                spec.get(field, module_docs.FIELD_DEFAULTS.get(field)), (option, field)
