# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rebuild and certify as one step (``ovirt-plugin-build build``): only a certified ISO takes the output's place.

The output is locked for the whole step. A new ISO is built as a candidate in a private folder
beside the output and certified there; only when it is certified are the ISO, its report (and the
report's signature) renamed into place, the ISO first. A candidate that is not certified is kept
as ``<name>.rejected.iso`` with its report beside it, and the previous output stays untouched.

A rerun whose output is intact (its build record names these inputs) and whose report certifies
that very ISO, asked the same way by the same tool version, reuses both: no appliance, no boot.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable

from ._apply import ApplyRequest, ApplyResult, Prepared, RootImageSession, _up_to_date, prepare, run_apply
from ._digests import cached_sha256, remember
from ._errors import NodePluginError
from ._outputs import OutputLock, check_distinct, clean_stale, work_dir
from ._run import StageTimer
from ._verify import Check, VerifyRequest, VerifyResult, read_report, report_still_holds, verify_iso

ProgressCallback = Callable[[str], None]


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


def _verify_request(request: BuildRequest, src: str, report: str, report_iso: str) -> VerifyRequest:
    return VerifyRequest(src=src, base=request.apply.src, plugins=list(request.apply.plugins),
                         boot_test=request.boot_test, boot_timeout=request.boot_timeout,
                         marker_regex=request.marker_regex, report=report, sign_key=request.sign_key,
                         gnupg_home=request.gnupg_home, report_iso=report_iso, deep=request.deep)


def rejected_path(dest: str) -> str:
    stem = dest[:-4] if dest.lower().endswith(".iso") else dest
    return f"{stem}.rejected.iso"


def build_and_certify(request: BuildRequest, *, progress: ProgressCallback | None = None,
                      session_factory: Callable[..., RootImageSession] = RootImageSession) -> BuildResult:
    """Rebuild, certify, and put the ISO in place only when certified (see the module docstring)."""
    say = progress or (lambda _stage: None)
    timer = StageTimer()
    say("apply: prepare")
    with timer.stage("prepare"):
        prepared = prepare(request.apply)
    with prepared.base:
        dest = prepared.dest
        report = report_path(request, dest)
        check_distinct({"output ISO": dest, "report": report,
                        "report's signature": f"{report}.asc" if request.sign_key else None,
                        "rejected ISO": rejected_path(dest)},
                       {"base ISO": request.apply.src, "keyring": request.apply.keyring,
                        **{f"plugin {path}": path for path in request.apply.plugins}})
        with OutputLock(dest):
            clean_stale(dest)
            clean_stale(report)
            return _build_locked(request, prepared, report, timer, say, session_factory)


def _build_locked(request: BuildRequest, prepared: Prepared, report: str, timer: StageTimer,
                  say: ProgressCallback, session_factory: Callable[..., RootImageSession]) -> BuildResult:
    dest = prepared.dest
    if _up_to_date(dest, prepared.digest, force=request.apply.force):
        applied = run_apply(request.apply, prepared, timer, lambda stage: say(f"apply: {stage}"), session_factory)
        in_place = _verify_request(request, dest, report, dest)
        if report_still_holds(in_place, read_report(report), cached_sha256(dest)) and \
                (not request.sign_key or os.path.isfile(f"{report}.asc")):
            return BuildResult(applied=applied, verified=_reused(report), certified=True, reused=True)
        # The output is the build of these inputs, but its report is missing or stale: certify it where it is.
        verified = verify_iso(in_place, progress=lambda stage: say(f"verify: {stage}"), session_factory=session_factory)
        return BuildResult(applied=applied, verified=verified, certified=verified.certified, reused=False)
    candidate_dir = work_dir(dest, "candidate")
    try:
        candidate = os.path.join(candidate_dir, os.path.basename(dest))
        candidate_report = os.path.join(candidate_dir, "report.json")
        applied = run_apply(request.apply, dataclasses.replace(prepared, dest=candidate), timer,
                            lambda stage: say(f"apply: {stage}"), session_factory)
        verified = verify_iso(_verify_request(request, candidate, candidate_report, dest),
                              progress=lambda stage: say(f"verify: {stage}"), session_factory=session_factory)
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


def _reused(report: str) -> VerifyResult:
    document = read_report(report) or {}
    checks = [Check(name=item.get("name", "?"), evidence=list(item.get("evidence", [])),
                    violations=list(item.get("violations", []))) for item in document.get("checks", [])]
    signature = f"{report}.asc" if os.path.isfile(f"{report}.asc") else None
    return VerifyResult(certified=True, sha256=document.get("sha256", ""), checks=checks, report=report,
                        report_changed=False, signature=signature, durations={})
