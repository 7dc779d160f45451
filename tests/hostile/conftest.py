# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hostile suite's shared checks (README.md): every case runs the real command or a module in its own
process, in a sandbox of its own, and is judged the same way:

- the exit code (command: 2 for an error, 1 only for "not certified"; module: failed or not);
- a message that names the problem and the path, and no traceback anywhere;
- nothing leaked: a canary secret in the environment and a canary file in /tmp never appear in the
  output, the module result, or any file the run left;
- no debris: the output folder, TMPDIR and /tmp hold the same entries after as before (plus the
  outputs the case declares);
- the previous output intact, by digest.

/tmp: as root (and where ``unshare`` works) each run gets a private /tmp, a folder of the case bound
over /tmp in a mount namespace of its own, so that what the run leaves there is known exactly while
other processes of the machine use the real /tmp. Elsewhere the real /tmp is compared, limited to the
names this project's code uses (OUR_NAMES).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterable, Iterator
from unittest import mock

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from tests import ansible_run
from tests.unit import rpmhelpers

VENV_BIN = os.path.dirname(sys.executable)
CLI = os.path.join(VENV_BIN, "ovirt-plugin-build")
CANARY_ENV = "OVIRT_CANARY_SECRET"
OUR_NAMES = (".*.work-*", "ovirt-*", "libguestfs*", "node-*")
EXIT_OK, EXIT_NOT_CERTIFIED, EXIT_ERROR = 0, 1, 2
TRACEBACK = "Traceback (most recent call last)"
SCAN_BYTES = 64 * 1024 ** 2  # files a run leaves are searched for the canaries up to this size
DEFAULT_MEMORY_MIB = 4096    # address space of a run: a run that grows without bound fails, the machine stays up


@dataclasses.dataclass
class Outcome:
    """What a run showed: exit code, output, and the module's result (None for the command)."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    result: dict | None = None

    @property
    def message(self) -> str:
        """The message for the user: the command's stderr, or the module's msg."""
        return str(self.result.get("msg", "")) if self.result is not None else self.stderr

    @property
    def everything(self) -> str:
        return "\n".join([self.stdout, self.stderr, json.dumps(self.result, sort_keys=True) if self.result else ""])

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@functools.cache
def private_tmp_works() -> bool:
    """Whether runs can get a private /tmp (root, and mount namespaces allowed here)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory(dir="/var/tmp") as probe:
        open(os.path.join(probe, "probe"), "w").close()
        done = subprocess.run(_isolation(probe) + ["test", "-e", "/tmp/probe"], capture_output=True, check=False)
    return done.returncode == 0


def _isolation(private_tmp: str) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /tmp && exec "$@"', private_tmp]


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 ** 2), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entries(folder: str, patterns: tuple[str, ...] | None = None) -> set[str]:
    """Every path under folder (relative), or only the top-level names matching patterns."""
    if not os.path.isdir(folder):
        return set()
    if patterns is not None:
        return {name for name in os.listdir(folder) if any(fnmatch.fnmatch(name, p) for p in patterns)}
    found = set()
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(top, name), folder))
    return found


class Case:
    """One hostile case: a folder with inputs (in/) and outputs (out/), a private TMPDIR and /tmp, the canaries,
    and the previous outputs to keep. Run the command with cli() or a module with module(); both judge the run."""

    def __init__(self, root: str, name: str) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"{name[:40]}-", dir=root)
        self.inputs = self._folder("in")
        self.out = self._folder("out")
        self.tmpdir = self._folder("tmpdir")
        self.private_tmp = self._folder("tmp") if private_tmp_works() else None
        token = secrets.token_hex(8)
        self.secret = f"canary-env-{token}"
        # A line the recipe parser would refuse and quote: if anything ever reads the canary file as input,
        # its content lands in a message, where the leak check finds it.
        self.canary_content = f"rootpw --plaintext canary-file-{token}\n"
        self.canary_file = f"/tmp/ovirt-canary-{token}"  # the path as every run sees it
        self._canary_real = os.path.join(self.private_tmp or "/tmp", os.path.basename(self.canary_file))
        with open(self._canary_real, "w", encoding="utf-8") as handle:
            handle.write(self.canary_content)
        self.previous: dict[str, str] = {}
        self.judged = 0

    def _folder(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        os.mkdir(path)
        return path

    # -- inputs and the previous output ---------------------------------------------------------------

    def file(self, name: str, content: bytes | str) -> str:
        """Write an input file under in/ and return its path."""
        path = os.path.join(self.inputs, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def keep(self, path: str, content: bytes | str | None = None) -> str:
        """A previous output (written now when content is given) that every run must leave as it is."""
        if content is not None:
            with open(path, "wb") as handle:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        self.previous[path] = sha256_of(path)
        return path

    # -- runs ---------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**os.environ, CANARY_ENV: self.secret, "TMPDIR": self.tmpdir}

    def prefix(self) -> list[str]:
        """What every run is started under: the private /tmp when there is one."""
        return _isolation(self.private_tmp) if self.private_tmp else []

    def _limits(self, memory_mib: int | None):
        def apply() -> None:
            if memory_mib:
                resource.setrlimit(resource.RLIMIT_AS, (memory_mib * 1024 ** 2,) * 2)
        return apply

    def spawn(self, *args: str, memory_mib: int | None = DEFAULT_MEMORY_MIB) -> subprocess.Popen:
        """Start the command in this case's sandbox without waiting (for faults: kill it, then judge())."""
        return subprocess.Popen([*self.prefix(), CLI, *args], env=self.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=self._limits(memory_mib))

    def cli(self, *args: str, exit: int = EXIT_ERROR, says: Iterable[str] = (), names: Iterable[str] = (),
            new: Iterable[str] = (), timeout: float = 600, memory_mib: int | None = DEFAULT_MEMORY_MIB,
            before: dict[str, set[str]] | None = None) -> Outcome:
        """Run ovirt-plugin-build with args and judge it; new: paths under out/ the run may add; before: the
        state to compare with (default: now; give an earlier snapshot() when a rerun must clean up a killed run)."""
        before = before if before is not None else self.snapshot()
        process = self.spawn(*args, memory_mib=memory_mib)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"ovirt-plugin-build {' '.join(args)} still ran after {timeout} s\n{stderr.decode()[-3000:]}")
        outcome = Outcome([CLI, *args], process.returncode, stdout.decode("utf-8", "replace"),
                          stderr.decode("utf-8", "replace"))
        self.judge(outcome, before, exit=exit, says=says, names=names, new=new)
        return outcome

    def module(self, module: str, args: dict, *extra: str, failed: bool = True, says: Iterable[str] = (),
               names: Iterable[str] = (), new: Iterable[str] = (), timeout: float = 900,
               memory_mib: int | None = DEFAULT_MEMORY_MIB, before: dict[str, set[str]] | None = None) -> Outcome:
        """Run a module through ansible (tests/ansible_run.py) in this case's sandbox and judge it (see cli())."""
        case = self

        def run(argv, **kwargs):
            kwargs["env"] = {**kwargs["env"], CANARY_ENV: case.secret, "TMPDIR": case.tmpdir}
            return subprocess.run([*case.prefix(), *argv], preexec_fn=case._limits(memory_mib),
                                  check=kwargs.pop("check", False), **kwargs)

        before = before if before is not None else self.snapshot()
        sandboxed = types.SimpleNamespace(run=run, DEVNULL=subprocess.DEVNULL)
        with mock.patch.object(ansible_run, "subprocess", sandboxed):
            result = ansible_run.run_module(module, args, *extra, timeout=timeout)
        outcome = Outcome(["ansible", "localhost", "-m", module, json.dumps(args), *extra],
                          EXIT_ERROR if result["failed"] else EXIT_OK, "", result.pop("stderr_of_ansible", ""),
                          result)
        self.judge(outcome, before, exit=EXIT_ERROR if failed else EXIT_OK, says=says, names=names, new=new)
        return outcome

    # -- the shared checks ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, set[str]]:
        """The entries of the watched places: out/, TMPDIR, and /tmp (private, or the real one by OUR_NAMES)."""
        watched = {"out": _entries(self.out), "TMPDIR": _entries(self.tmpdir)}
        watched["/tmp"] = _entries(self.private_tmp) if self.private_tmp else _entries("/tmp", OUR_NAMES)
        return watched

    def judge(self, outcome: Outcome, before: dict[str, set[str]], *, exit: int, says: Iterable[str] = (),
              names: Iterable[str] = (), new: Iterable[str] = ()) -> None:
        """Every check of the suite on one run (see the module docstring). A says item may be a tuple of
        alternatives (any one will do), for a message that another part of the code words differently."""
        self.judged += 1
        says, names = list(says), list(names)
        assert TRACEBACK not in outcome.everything, f"a traceback reached the user:\n{outcome}"
        if outcome.result is not None:
            assert "exception" not in outcome.result, f"the module failed with an exception:\n{outcome}"
        assert outcome.exit_code == exit, f"exit code {outcome.exit_code}, expected {exit}:\n{outcome}"
        if exit == EXIT_ERROR:
            assert names, "a refusal case must say which path its message names"
            if outcome.result is None:  # stage lines ([apply: prepare]) may come first
                assert any(line.startswith("ovirt-plugin-build ") and ": error: " in line
                           for line in outcome.stderr.splitlines()), f"no error line on stderr:\n{outcome}"
        for word in says + names:
            alternatives = word if isinstance(word, tuple) else (word,)
            assert any(one in outcome.message for one in alternatives), \
                f"the message does not say {' or '.join(map(repr, alternatives))}:\n{outcome}"
        self.check_no_leak(outcome.everything)
        self.check_no_debris(before, new)
        self.check_previous_intact()

    def check_no_leak(self, text: str = "") -> None:
        """Neither canary in text, nor in any file under out/, TMPDIR or the private /tmp (up to SCAN_BYTES each)."""
        marks = (self.secret, self.canary_content.split()[-1])
        for mark in marks:
            assert mark not in text, f"the canary {mark!r} leaked into the output:\n{text[-3000:]}"
        for folder in (self.out, self.tmpdir, self.private_tmp):
            for path in self._files(folder):
                if os.path.realpath(path) == os.path.realpath(self._canary_real):
                    continue
                with open(path, "rb") as handle:
                    content = handle.read(SCAN_BYTES)
                for mark in marks:
                    assert mark.encode() not in content, f"the canary {mark!r} leaked into {path}"

    @staticmethod
    def _files(folder: str | None) -> Iterator[str]:
        for top, _dirs, files in os.walk(folder) if folder else ():
            for name in files:
                path = os.path.join(top, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    yield path

    def check_no_debris(self, before: dict[str, set[str]], new: Iterable[str] = ()) -> None:
        """The watched places hold what they held before, plus the declared new outputs under out/."""
        after = self.snapshot()
        allowed = {os.path.relpath(path, self.out) if os.path.isabs(path) else path for path in new}
        for parent in list(allowed):  # a declared output may bring its folders
            while os.path.dirname(parent):
                parent = os.path.dirname(parent)
                allowed.add(parent)
        for place in after:
            added = after[place] - before[place] - (allowed if place == "out" else set())
            removed = before[place] - after[place]
            assert not added, f"debris in {place}: {sorted(added)}"
            assert not removed, f"{place} lost {sorted(removed)}"
        missing = sorted(path for path in allowed if path not in after["out"] and "/" not in path)
        assert not missing, f"declared outputs were not written: {missing}"

    def check_previous_intact(self) -> None:
        for path, digest in self.previous.items():
            assert os.path.isfile(path), f"the previous output {path} is gone"
            assert sha256_of(path) == digest, f"the previous output {path} changed"

    def close(self) -> None:
        if not self.private_tmp and os.path.exists(self._canary_real):
            os.unlink(self._canary_real)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def hostile_root() -> Iterator[str]:
    """The session's folder for cases and shared inputs: outside /tmp, which runs see privately."""
    root = tempfile.mkdtemp(prefix="ovirt-hostile-", dir=os.environ.get("OVIRT_HOSTILE_ROOT", "/var/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.hostile_call_passed = report.passed
    return report


@pytest.fixture
def case(hostile_root, request) -> Iterator[Case]:
    """A fresh sandbox for one case; a case that passes must have judged at least one run."""
    sandbox = Case(hostile_root, request.node.name.replace("/", "_").replace("[", "-").strip("]"))
    yield sandbox
    judged = sandbox.judged
    sandbox.close()
    if getattr(request.node, "hostile_call_passed", False):
        assert judged, "a hostile case ran nothing through the shared checks"


# -- shared inputs, made once per session under hostile_root ------------------------------------------

@dataclasses.dataclass
class PackInputs:
    """What `ovirt-plugin-build pack` needs for the test RPMs (tests/unit/rpmhelpers.py), and its good output."""

    rpms: rpmhelpers.RpmSet
    deps: str
    image_packages: str
    good_plugin: str

    def args(self, out: str, *extra: str) -> list[str]:
        return ["pack", "--name", "agent", "--version", "1.0", "--rpm", self.rpms.by_name["agent"], "--repo",
                self.deps, "--target-packages", self.image_packages, "--node-versions", ">=2.5.0, <2.6",
                "-o", out + "/", *extra]

    def module_args(self, out: str, **extra) -> dict:
        return {"name": "agent", "version": "1.0", "rpms": [self.rpms.by_name["agent"]], "repos": [self.deps],
                "target_packages": self.image_packages, "node_versions": ">=2.5.0, <2.6", "output": out + "/",
                **extra}


@pytest.fixture(scope="session")
def pack_inputs(hostile_root) -> PackInputs:
    folder = os.path.join(hostile_root, "pack")
    os.mkdir(folder)
    rpms = rpmhelpers.standard_rpms()
    deps = rpmhelpers.dependency_repo(os.path.join(folder, "deps"), rpms)
    image = rpmhelpers.image_packages_file(folder)
    with mock.patch.dict(os.environ, {"SOURCE_DATE_EPOCH": "1700000000"}):
        good = build_plugin(PluginBuildRequest(name="agent", version="1.0", rpms=[rpms.by_name["agent"]], repos=[deps],
                                               target_packages=image, node_versions=">=2.5.0, <2.6",
                                               output=folder + "/")).path
    return PackInputs(rpms, deps, image, good)


@dataclasses.dataclass
class BuildInputs:
    """The fixture base ISO and a good plugin made for it: `ovirt-plugin-build build` opens plugins before work."""

    base_iso: str
    good_plugin: str

    def args(self, out: str, *plugins: str, extra: Iterable[str] = ()) -> list[str]:
        return ["build", "--iso", self.base_iso, *[arg for plugin in plugins for arg in ("--plugin", plugin)],
                "-o", os.path.join(out, "node.iso"), *extra]

    def keep_previous(self, case: Case) -> str:
        """A previous output ISO and its report in out/ (by digest, they must survive a refused build)."""
        case.keep(os.path.join(case.out, "node.iso.certification.json"), '{"certified": true}\n')
        return case.keep(os.path.join(case.out, "node.iso"), b"previous certified ISO\n" * 1000)


@pytest.fixture(scope="session")
def build_inputs(hostile_root, node_iso, example_rpms) -> BuildInputs:
    folder = os.path.join(hostile_root, "build")
    os.mkdir(folder)
    with mock.patch.dict(os.environ, {"SOURCE_DATE_EPOCH": "1700000000"}):
        good = build_plugin(PluginBuildRequest(
            name="vendor-agent", version="1.0", vendor="Example Vendor", summary="agent",
            rpms=[example_rpms.by_name["vendor-agent"]], repos=[example_rpms.dir], target_iso=node_iso.iso,
            node_versions=">= 2.5.0, < 2.6", output=folder + "/")).path
    return BuildInputs(node_iso.iso, good)
