# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._run import StageTimer, require_tool, run


def test_run_returns_output():
    result = run(["sh", "-c", "printf hello"])
    assert result.stdout == b"hello"


def test_run_failure_names_the_tool_and_carries_stderr():
    with pytest.raises(NodePluginError) as caught:
        run(["sh", "-c", "echo 'disk full' >&2; exit 3"])
    text = str(caught.value)
    assert "'sh' failed with exit code 3" in text
    assert "disk full" in text


def test_missing_tool_names_the_package():
    with pytest.raises(NodePluginError, match="install the package"):
        require_tool("surely-not-a-real-tool-xyz")


def test_stage_timer_records_each_stage():
    timer = StageTimer()
    with timer.stage("one"):
        pass
    with pytest.raises(ValueError):
        with timer.stage("two"):
            raise ValueError("boom")
    assert list(timer.durations) == ["one", "two"]
