# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ovirt-plugin-build pack, through main() and as a process; failures that are not verdicts; build_plugin() options."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _cli
from ansible_collections.ovirt.node_plugins.plugins.module_utils._cli import main, make_parser
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import open_plugin
from tests.unit import rpmhelpers
from tests.unit.plugins.modules.faults import deeply_nested_plugin, one_line_without_traceback, read_only_folder

COMMAND = os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build")  # what make setup installs


@pytest.fixture(scope="module")
def rpms():
    return rpmhelpers.standard_rpms()


@pytest.fixture
def inputs(tmp_path, rpms):
    return {"deps": rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms),
            "image": rpmhelpers.image_packages_file(str(tmp_path)), "out": str(tmp_path)}


def _argv(rpms, inputs, *extra) -> list[str]:
    return ["pack", "--name", "agent", "--version", "1.0", "--rpm", rpms.by_name["agent"], "--repo", inputs["deps"],
            "--target-packages", inputs["image"], "-o", inputs["out"], *extra]


def test_help_explains_with_examples(capsys):
    with pytest.raises(SystemExit) as done:
        main(["pack", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for words in ("examples:", "--target-iso", "--target-packages", "--node-versions", "SOURCE_DATE_EPOCH",
                  "docs/plugin-writers-guide.md"):
        assert words in text
    assert "pack" in make_parser().format_help()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        main(["pack", "--name", "x"])
    assert done.value.code == 2
    assert "required" in capsys.readouterr().err


def test_pack_then_unchanged_as_json(rpms, inputs, capsys):
    assert main(_argv(rpms, inputs, "--json")) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["changed"] is True and first["path"] == os.path.join(inputs["out"], "agent-1.0.plugin.tar.gz")
    assert [(p["name"], p["role"]) for p in first["packages"]] == [("agent", "plugin"), ("agent-lib", "dependency")]
    assert main(_argv(rpms, inputs, "--json")) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["changed"] is False and second["sha256"] == first["sha256"]
    assert second["manifest"]["created"] == first["manifest"]["created"]  # kept without SOURCE_DATE_EPOCH


def test_check_writes_nothing_but_predicts(rpms, inputs, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert main(_argv(rpms, inputs, "--check", "--json")) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["changed"] is True and not os.path.exists(planned["path"])
    assert main(_argv(rpms, inputs, "--json")) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["sha256"] == planned["sha256"]  # check mode computed the very bytes
    assert main(_argv(rpms, inputs, "--check", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False


def test_library_error_is_a_message_and_exit_2(rpms, inputs, capsys):
    argv = _argv(rpms, inputs)
    argv[argv.index(rpms.by_name["agent"])] = rpms.by_name["bad-paths"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("ovirt-plugin-build pack: error: 3 file(s) would be installed outside")
    assert "  /usr/bin/bad" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_text_output_lists_roles(rpms, inputs, capsys):
    assert main(_argv(rpms, inputs)) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote: ")
    assert "plugin     agent-1.0-1.noarch  (unsigned)" in out
    assert "in image   libbase.so.1()(64bit) (needed by agent-lib) <- base-1.2-3.x86_64" in out


def test_as_a_process(rpms, inputs):
    done = subprocess.run([COMMAND, *_argv(rpms, inputs, "--json")], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] is True
    failed = subprocess.run([COMMAND, *_argv(rpms, inputs, "--node-versions", ">=2.5,,")],
                            capture_output=True, text=True, check=False)
    assert failed.returncode == 2
    assert "clause 2 is empty" in failed.stderr and "Traceback" not in failed.stderr


# -- failures that are not verdicts: exit 2 (130 interrupted), one line naming the path ------------

def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line_without_traceback(captured.err)
    assert line.startswith("ovirt-plugin-build pack: error: "), line
    return line[len("ovirt-plugin-build pack: error: "):]


def test_a_read_only_output_folder(rpms, inputs, tmp_path, capsys):
    with read_only_folder(str(tmp_path / "ro")) as out:
        assert main(_argv(rpms, {**inputs, "out": out + "/"})) == 2
        assert os.listdir(out) == []
    reason = _error_line(capsys)
    assert reason.startswith(f"{out}/.agent-1.0.plugin.tar.gz.") and reason.endswith(
        f": read-only file system ({tmp_path}/ro is mounted read-only: mount it read-write or choose another --output)")


def test_a_full_output_file_system(rpms, inputs, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={full}/filler", "bs=4k"], capture_output=True, check=False)
        assert main(_argv(rpms, {**inputs, "out": str(full)})) == 2
        assert os.listdir(full) == ["filler"]  # no debris
    finally:
        subprocess.run(["umount", str(full)], check=True)
    assert _error_line(capsys).startswith(f"no space left on device (free space on the file system at {full} "
                                          "(--output) or TMPDIR (")


def test_an_output_in_proc(rpms, inputs, capsys):
    assert main(_argv(rpms, {**inputs, "out": "/proc/"})) == 2
    reason = _error_line(capsys)
    assert reason.startswith("/proc/.agent-1.0.plugin.tar.gz.") and reason.endswith(
        ": no such file or directory (/proc is the kernel's proc file system, which holds no files: "
        "choose another --output)")


def test_a_missing_tmpdir(rpms, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    assert main(_argv(rpms, inputs)) == 2
    assert _error_line(capsys) == (f"{tmp_path}/gone: TMPDIR names no existing folder "
                                   "(create it, or set TMPDIR to another folder or unset it)")
    assert not os.path.exists(os.path.join(inputs["out"], "agent-1.0.plugin.tar.gz"))


def test_an_endless_recipe_under_a_memory_limit(rpms, inputs):
    """/dev/zero as the recipe, with 2 GiB of address space: refused (bounded read) or out of memory, in one line."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    failed = subprocess.run([COMMAND, *_argv(rpms, inputs, "--recipe", "/dev/zero")], capture_output=True, text=True,
                            check=False, preexec_fn=limit_memory, timeout=300)
    assert failed.returncode == 2
    line = one_line_without_traceback(failed.stderr)
    assert line.startswith("ovirt-plugin-build pack: error: ") and "/dev/zero" in line


def test_a_binary_recipe(rpms, inputs, tmp_path, capsys):
    recipe = tmp_path / "recipe.ks"
    recipe.write_bytes(b"\xff\xfe%post\n\x00secret\n")
    assert main(_argv(rpms, inputs, "--recipe", str(recipe))) == 2
    reason = _error_line(capsys)
    assert reason.startswith(f"{recipe}: ") and "secret" not in reason


def test_a_deeply_nested_plugin_manifest(node_iso, tmp_path):
    deep = deeply_nested_plugin(str(tmp_path))
    argv = [COMMAND, "build", "--iso", node_iso.iso, "--plugin", deep, "-o", str(tmp_path / "out.iso")]
    failed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert failed.returncode == 2
    line = failed.stderr.splitlines()[-1]  # after the stage lines
    assert "Traceback" not in failed.stderr and line.startswith("ovirt-plugin-build build: error: ") and deep in line
    assert not os.path.exists(tmp_path / "out.iso")


def test_interrupted_exits_130_without_a_traceback(rpms, inputs, tmp_path):
    """Ctrl-C while the command waits on its recipe (a FIFO nobody writes): one line, exit 130, no output."""
    fifo = str(tmp_path / "recipe.ks")
    os.mkfifo(fifo)
    process = subprocess.Popen([COMMAND, *_argv(rpms, inputs, "--recipe", fifo)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _waits_on_fifo(process.pid):  # inside main(), blocked in open() of the FIFO
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert err == "ovirt-plugin-build pack: interrupted\n" and out == ""
    assert not os.path.exists(os.path.join(inputs["out"], "agent-1.0.plugin.tar.gz"))


def _waits_on_fifo(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as handle:
            return handle.read() == "wait_for_partner"
    except OSError:
        return False


def _raise_a_bug(_args):
    return {}["certified"]  # a KeyError: what a bug looks like


def test_a_bug_says_so_and_shows_its_traceback_with_v(rpms, inputs, capsys, monkeypatch):
    monkeypatch.setattr(_cli, "_run_pack", _raise_a_bug)
    assert main(_argv(rpms, inputs)) == 2
    line = one_line_without_traceback(capsys.readouterr().err)
    assert line == ("ovirt-plugin-build pack: internal error, a bug of ovirt.node_plugins: KeyError: 'certified'. "
                    "Please report it with its traceback (run again with -v to see it)")
    assert main(["-v", *_argv(rpms, inputs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in _raise_a_bug" in err
    assert err.splitlines()[-1] == ("ovirt-plugin-build pack: internal error, a bug of ovirt.node_plugins: "
                                    "KeyError: 'certified'. Please report it with its traceback")


# -- build_plugin options ----------------------------------------------------------------------

def _request(built, inputs, **overrides) -> PluginBuildRequest:
    values = {"name": "agent", "version": "1.0", "rpms": [built.by_name["agent"]], "repos": [inputs["deps"]],
              "target_packages": inputs["image"], "output": inputs["out"]}
    values.update(overrides)
    return PluginBuildRequest(**values)


def test_given_recipe_is_packed_verbatim(rpms, inputs, tmp_path):
    recipe = tmp_path / "recipe.ks"
    text = ("part / --size 3000\nbootloader --append \"agent.debug=1 !quiet\"\n"
            "repo --name=agent --baseurl=file://rpms\n%packages\nagent\n%end\n%post\necho hi\n%end\n")
    recipe.write_text(text)
    result = build_plugin(_request(rpms, inputs, recipe=str(recipe), persist=["/etc/agent/agent.conf"]))
    archive = open_plugin(result.path)
    assert archive.recipe_text == text and archive.recipe.root_size_mib == 3000
    assert archive.manifest.persist == ("/etc/agent/agent.conf",)


@pytest.mark.parametrize("overrides, words", [
    ({"recipe": "RECIPE:%packages\nnot-here\n%end\n"}, "%packages names not-here"),
    ({"recipe": "RECIPE:repo --name=x --baseurl=file:///srv\n"}, "may only use --baseurl=file://rpms"),
    ({"recipe": "RECIPE:firewall --enabled\n"}, "line 1: 'firewall' is not supported"),
    ({"name": "bad name"}, "plugin name 'bad name' is not valid"),
    ({"version": "1.0-1"}, "plugin version '1.0-1' is not valid"),
    ({"persist": ["etc/x"]}, "persist path 'etc/x' is not an absolute path"),
    ({"target_packages": None}, "exactly one of target packages"),
    ({"output": "/nonexistent/dir/x.plugin.tar.gz"}, "the output folder does not exist"),
    ({"kind": "driver"}, "unknown plugin kind"),
    ({"rpms": []}, "no RPM given"),
    ({"node_versions": "=>2"}, "clause 1"),
])
def test_build_refusals(rpms, inputs, tmp_path, overrides, words):
    if str(overrides.get("recipe", "")).startswith("RECIPE:"):
        recipe = tmp_path / "r.ks"
        recipe.write_text(overrides["recipe"][len("RECIPE:"):])
        overrides = {**overrides, "recipe": str(recipe)}
    with pytest.raises(NodePluginError, match=words):
        build_plugin(_request(rpms, inputs, **overrides))


def test_kmod_plugin_and_path_overrides(rpms, inputs):
    with pytest.raises(NodePluginError, match="/lib/modules/6.1.0/extra/vendor.ko"):
        build_plugin(_request(rpms, inputs, name="kmod", rpms=[rpms.by_name["kmod-vendor"]]))
    result = build_plugin(_request(rpms, inputs, name="kmod", rpms=[rpms.by_name["kmod-vendor"]], kind="kmod"))
    assert result.manifest["kind"] == "kmod"
    allowed = build_plugin(_request(rpms, inputs, name="bad", rpms=[rpms.by_name["bad-paths"]],
                                    allow_paths=["/usr/bin", "/var/lib/bad", "/optional"]))
    assert allowed.manifest["allowed_path_overrides"] == ["/optional", "/usr/bin", "/var/lib/bad"]


def test_unsigned_rpms_refused_with_keyring_and_flagged_without(rpms, inputs):
    key = rpmhelpers.make_key()
    with pytest.raises(NodePluginError, match="not signed by a key of the keyring"):
        build_plugin(_request(rpms, inputs, keyring=key.public_key))
    signed = rpmhelpers.signed_rpms(key)
    result = build_plugin(_request(rpms, inputs, rpms=[signed.by_name["agent"]], repos=[signed.dir],
                                   keyring=key.public_key))
    assert [(p["name"], p["signed"], p["key_id"]) for p in result.packages] == [
        ("agent", True, key.key_id.lower()), ("agent-lib", True, key.key_id.lower())]


def test_check_mode_with_signing_reports_unknown_digest(rpms, inputs):
    key = rpmhelpers.make_key()
    try:
        planned = build_plugin(_request(rpms, inputs, sign_key=key.fingerprint, gnupg_home=key.home, check_mode=True))
        assert planned.changed is True and planned.sha256 is None and not os.path.exists(planned.path)
        written = build_plugin(_request(rpms, inputs, sign_key=key.fingerprint, gnupg_home=key.home))
        again = build_plugin(_request(rpms, inputs, sign_key=key.fingerprint, gnupg_home=key.home, check_mode=True))
        assert again.changed is False and again.sha256 == written.sha256
        with pytest.raises(NodePluginError, match="no secret key 'nobody@example.com'"):
            build_plugin(_request(rpms, inputs, sign_key="nobody@example.com", gnupg_home=key.home))
    finally:
        rpmhelpers.stop_agent(key.home)
