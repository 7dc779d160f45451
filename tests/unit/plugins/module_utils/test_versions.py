# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._versions import (
    Evr, admits, compare_evr, parse_evr, parse_range)


@pytest.mark.parametrize("range_text, version, release, expected", [
    (">=2.5.0, <2.6", "2.5.0", None, True),
    (">=2.5.0, <2.6", "2.5.9", "3.fc17", True),
    (">=2.5.0, <2.6", "2.6", None, False),
    (">=2.5.0, <2.6", "2.6.0", None, False),
    (">=2.5.0, <2.6", "2.4.99", None, False),
    (">=1.9", "1.10", None, True),            # numeric segments: 1.10 > 1.9
    ("<1.9", "1.10", None, False),
    ("<1.0", "1.0~rc1", None, True),          # tilde sorts before the release
    (">1.0", "1.0^git1", None, True),         # caret sorts after
    ("==2.5.0", "2.5.0", "7", True),          # no release in the clause: any release
    ("==2.5.0-1", "2.5.0", "2", False),
    (">2.5.0-1", "2.5.0", "10", True),        # release compared the rpm way: 10 > 1
    (">2.5.0-9", "2.5.0", "10", True),
    ("2.5.0", "2.5.0", None, True),           # bare version means ==
    ("!=2.5.1", "2.5.1", None, False),
    ("*", "0.1", None, True),
    ("", "99", None, True),
    ("<1:1.0", "9.9", None, True),            # epoch wins over version
])
def test_admits(range_text, version, release, expected):
    assert admits(range_text, version, release) is expected


def test_version_release_in_one_string():
    assert parse_range(">=2.5.0-2").admits("2.5.0-3")
    assert not parse_range(">=2.5.0-2").admits("2.5.0-1")


def test_canonical_text():
    assert str(parse_range(" >= 2.5.0 ,<2.6,=3 ")) == ">=2.5.0, <2.6, ==3"
    assert str(parse_range("*")) == "*"


@pytest.mark.parametrize("bad, words", [
    (">=2.5,,<3", "clause 2 is empty"),
    ("~>2.5", "clause 1"),
    (">=2.5 <2.6", "clause 1"),
    (">=", "clause 1"),
    (">=2.5-", "not a version"),
])
def test_bad_syntax_names_the_clause(bad, words):
    with pytest.raises(NodePluginError, match=words) as caught:
        parse_range(bad)
    assert bad in str(caught.value)


def test_compare_evr_orders_like_rpm():
    assert compare_evr(parse_evr("1.10"), parse_evr("1.9")) == 1
    assert compare_evr(parse_evr("1.0~beta"), parse_evr("1.0")) == -1
    assert compare_evr(parse_evr("1.0-1.fc17"), parse_evr("1.0-1.fc18")) == -1
    assert parse_evr("2:1.0-3") == Evr(2, "1.0", "3")
