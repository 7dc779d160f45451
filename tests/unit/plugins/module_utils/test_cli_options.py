# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ovirt-plugin-build --version, and the boot options of build and verify (timeout, memory, accelerator)."""
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _cli
from ansible_collections.ovirt.node_plugins.plugins.module_utils._version import VERSION


def test_version_is_one_line_naming_the_collection(capsys):
    with pytest.raises(SystemExit) as stopped:
        _cli.main(["--version"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"ovirt-plugin-build {VERSION} (collection at /")
    folder = out.rstrip()[:-1].split("(collection at ", 1)[1]
    assert os.path.isfile(os.path.join(folder, "galaxy.yml"))


@pytest.mark.parametrize("command", ["build", "verify"])
def test_boot_options_become_the_settings_of_the_run(command, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OVIRT_NODE_PLUGINS_ACCEL", raising=False)
    monkeypatch.delenv("OVIRT_NODE_PLUGINS_BOOT_MEMORY", raising=False)
    missing = str(tmp_path / "missing.iso")
    extra = ["--plugin", str(tmp_path / "p.plugin.tar.gz"), "-o", str(tmp_path)] if command == "build" else []
    code = _cli.main([command, "--iso", missing, *extra, "--accel", "tcg", "--boot-memory", "2048",
                      "--boot-timeout", "900"])
    assert code == 2  # the ISO does not exist: the settings were applied before that was found
    assert os.environ["OVIRT_NODE_PLUGINS_ACCEL"] == "tcg" and os.environ["OVIRT_NODE_PLUGINS_BOOT_MEMORY"] == "2048"
    assert "Traceback" not in capsys.readouterr().err


def test_too_little_boot_memory_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OVIRT_NODE_PLUGINS_BOOT_MEMORY", raising=False)
    assert _cli.main(["verify", "--iso", str(tmp_path / "x.iso"), "--boot-memory", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ovirt-plugin-build verify: error: boot memory 64 MiB is too small") and err.count("\n") == 1
