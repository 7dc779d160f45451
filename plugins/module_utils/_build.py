# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rebuild and certify as one step (``ovirt-plugin-build build``): only a certified ISO takes the output's place.

The output is locked for the whole step. A new ISO is built as a candidate in a private folder
beside the output and certified there; only when it is certified are the ISO, its report (and the
report's signature) renamed into place, the ISO first. A candidate that is not certified is kept
as ``<name>.rejected.iso`` with its report beside it, and the previous output stays untouched.

A rerun whose output is intact (its build record names these inputs, by digest) and whose report
certifies that very ISO, asked the same way by the same tool version, reuses both. That answer
needs the inputs' digests (cached by file identity), the output's build record and its report:
the engine, the appliance and the plugin readers are not even loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable

from . import _records as records
from ._digests import cached_sha256, is_cached, remember
from ._errors import NodePluginError
from ._iso import IsoReader
from ._outputs import OutputLock, check_distinct, clean_stale, work_dir
from ._report import VerifyResult, asked, read_report, report_holds, reused_result
from ._request import ApplyRequest, ApplyResult, output_path

ProgressCallback = Callable[[str], None]
_PLUGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclasses.dataclass
class BuildRequest:
    """A rebuild (the apply request) and how to certify it."""

    apply: ApplyRequest
    boot_test: str = "none"
    boot_timeout: float = 300
    marker_regex: str | None = None
    report: str | None = None
    sign_key: str | None = None
    gnupg_home: str | None = None
    deep: bool = False

    def asked(self) -> dict:
        return asked(base=self.apply.src, plugins=self.apply.plugins, boot_test=self.boot_test,
                     marker_regex=self.marker_regex, deep=self.deep)


@dataclasses.dataclass
class BuildResult:
    """What the step did: the apply and verify results, and where a rejected candidate went."""

    applied: ApplyResult
    verified: VerifyResult | None
    certified: bool
    reused: bool
    rejected: str | None = None

    def to_dict(self) -> dict:
        return {"apply": self.applied.to_dict(), "verify": self.verified.to_dict() if self.verified else None,
                "certified": self.certified, "reused": self.reused, "rejected": self.rejected}


def report_path(request: BuildRequest, dest: str) -> str:
    return os.path.abspath(request.report or f"{dest}.certification.json")


def rejected_path(dest: str) -> str:
    stem = dest[:-4] if dest.lower().endswith(".iso") else dest
    return f"{stem}.rejected.iso"


def _distinct_paths(request: BuildRequest, dest: str, report: str) -> None:
    check_distinct({"output ISO": dest, "report": report,
                    "report's signature": f"{report}.asc" if request.sign_key else None,
                    "rejected ISO": rejected_path(dest)},
                   {"base ISO": request.apply.src, "keyring": request.apply.keyring,
                    **{f"plugin {path}": path for path in request.apply.plugins}})


def build_and_certify(request: BuildRequest, *, progress: ProgressCallback | None = None,
                      session_factory: Callable | None = None) -> BuildResult:
    """Rebuild, certify, and put the ISO in place only when certified (see the module docstring)."""
    say = progress or (lambda _stage: None)
    reused = None if request.apply.force else _reuse(request)
    if reused is not None:
        return reused
    from ._apply import prepare  # pylint: disable=import-outside-toplevel
    from ._run import StageTimer  # pylint: disable=import-outside-toplevel
    timer = StageTimer()
    say("apply: prepare")
    with timer.stage("prepare"):
        prepared = prepare(request.apply)
    with prepared:
        report = report_path(request, prepared.dest)
        _distinct_paths(request, prepared.dest, report)
        with OutputLock(prepared.dest):
            clean_stale(prepared.dest)
            clean_stale(report)
            return _build_locked(request, prepared, report, timer, say, session_factory)


# -- the rerun that changes nothing -----------------------------------------------------------------

def _manifest_name(plugin: str) -> str | None:
    """The plugin's name, from its first member (manifest.json) alone; None when that is not plain.

    Only to find the output an earlier build named after the plugins: whether that output was built
    from this very plugin is decided by the digests, never by this name.
    """
    try:
        with tarfile.open(plugin, mode="r|gz") as archive:
            member = archive.next()
            if member is None or member.name != "manifest.json" or not member.isfile() or member.size > 1 << 20:
                return None
            handle = archive.extractfile(member)
            data = json.loads(handle.read(1 << 20)) if handle else None
    except (OSError, tarfile.TarError, EOFError, ValueError, RecursionError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and _PLUGIN_NAME.match(name) else None


def _reuse(request: BuildRequest) -> BuildResult | None:
    """The answer of a rerun whose output and report still hold, or None (then the full step runs)."""
    apply = request.apply
    if apply.rebase_from:
        return None  # the plugins are the old ISO's carried tarballs: only the full step reads them
    try:
        if not os.path.isfile(apply.src) or not all(os.path.isfile(path) for path in apply.plugins):
            return None
        names = [_manifest_name(path) for path in apply.plugins]
        if None in names:
            return None
        dest = output_path(apply.dest, apply.src, [name for name in names if name], apply.remove)
        report = report_path(request, dest)
        if not os.path.isfile(dest) or not os.path.isfile(report) or \
                (request.sign_key and not os.path.isfile(f"{report}.asc")):
            return None
        _distinct_paths(request, dest, report)
        digest = records.inputs_digest(cached_sha256(apply.src), [cached_sha256(path) for path in apply.plugins],
                                       apply.options_for_digest())
        with OutputLock(dest):
            if not is_cached(dest):  # an output whose identity changed is re-checked the long way
                return None
            with IsoReader(dest) as reader:
                if not reader.exists(records.BUILD_RECORD_ISO_PATH) or \
                        records.recorded_inputs_digest(reader.read_bytes(records.BUILD_RECORD_ISO_PATH)) != digest:
                    return None
            if not report_holds(read_report(report), iso=dest, iso_sha256=cached_sha256(dest), asked=request.asked()):
                return None
    except NodePluginError:
        return None  # the full step says what is wrong, with its own checks
    applied = ApplyResult(changed=False, path=dest, reason="up to date: the output's build record matches the inputs",
                          base={"path": apply.src, "sha256": cached_sha256(apply.src)}, plugins=[],
                          kernel_args_before={}, kernel_args={}, sha256=cached_sha256(dest),
                          size=os.path.getsize(dest))
    return BuildResult(applied=applied, verified=reused_result(report), certified=True, reused=True)


# -- the full step ------------------------------------------------------------------------------------

def _verify_request(request: BuildRequest, src: str, report: str, report_iso: str):
    from ._verify import VerifyRequest  # pylint: disable=import-outside-toplevel
    return VerifyRequest(src=src, base=request.apply.src, plugins=list(request.apply.plugins),
                         boot_test=request.boot_test, boot_timeout=request.boot_timeout,
                         marker_regex=request.marker_regex, report=report, sign_key=request.sign_key,
                         gnupg_home=request.gnupg_home, report_iso=report_iso, deep=request.deep)


def _build_locked(request: BuildRequest, prepared, report: str, timer, say: ProgressCallback,
                  session_factory: Callable | None) -> BuildResult:
    # pylint: disable=import-outside-toplevel
    from ._apply import _up_to_date, run_apply
    from ._verify import verify_iso
    factory = {} if session_factory is None else {"session_factory": session_factory}
    dest = prepared.dest
    if _up_to_date(dest, prepared.digest, force=request.apply.force):
        # The output is the build of these inputs, but its report is missing or stale: certify it where it is.
        applied = run_apply(request.apply, prepared, timer, lambda stage: say(f"apply: {stage}"), **factory)
        verified = verify_iso(_verify_request(request, dest, report, dest),
                              progress=lambda stage: say(f"verify: {stage}"), **factory)
        return BuildResult(applied=applied, verified=verified, certified=verified.certified, reused=False)
    candidate_dir = work_dir(dest, "candidate")
    try:
        candidate = os.path.join(candidate_dir, os.path.basename(dest))
        candidate_report = os.path.join(candidate_dir, "report.json")
        applied = run_apply(request.apply, dataclasses.replace(prepared, dest=candidate), timer,
                            lambda stage: say(f"apply: {stage}"), **factory)
        verified = verify_iso(_verify_request(request, candidate, candidate_report, dest),
                              progress=lambda stage: say(f"verify: {stage}"), **factory)
        target, target_report = (dest, report) if verified.certified else \
            (rejected_path(dest), f"{rejected_path(dest)}.certification.json")
        _promote(candidate, candidate_report, target, target_report, signed=bool(request.sign_key))
        applied.path = target
        verified.report = target_report
        if verified.signature:
            verified.signature = f"{target_report}.asc"
        return BuildResult(applied=applied, verified=verified, certified=verified.certified, reused=False,
                           rejected=None if verified.certified else target)
    finally:
        shutil.rmtree(candidate_dir, ignore_errors=True)


def _promote(candidate: str, candidate_report: str, target: str, target_report: str, *, signed: bool) -> None:
    """Rename the candidate ISO, then its report and signature, into place (each rename atomic)."""
    sha256 = cached_sha256(candidate)
    try:
        os.replace(candidate, target)
        remember(target, sha256)
        os.replace(candidate_report, target_report)
        if signed:
            os.replace(f"{candidate_report}.asc", f"{target_report}.asc")
    except OSError as exc:
        raise NodePluginError(f"cannot move the certified ISO or its report into place: {exc.strerror}",
                              path=exc.filename or target, hint="check the output folder (space, permissions)") from exc
