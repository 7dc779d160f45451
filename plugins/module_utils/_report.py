# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certification report: its checks, its verdict, the JSON document, and whether an old one still holds.

Free of heavy imports, so that a rerun that finds its output and report intact (_build) answers
without loading the certification engine.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence

from . import _records as records
from ._digests import cached_sha256
from ._errors import NodePluginError
from ._outputs import read_small_json

REPORT_FORMAT = 1


@dataclasses.dataclass
class Check:
    """One certification check: passed when it found no violation."""

    name: str
    evidence: list[str] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "evidence": self.evidence, "violations": self.violations}


@dataclasses.dataclass
class VerifyResult:
    """The verdict and its report."""

    certified: bool
    sha256: str
    checks: list[Check]
    report: str | None
    report_changed: bool
    signature: str | None
    durations: dict[str, float]

    @property
    def violations(self) -> list[str]:
        return [f"{check.name}: {violation}" for check in self.checks for violation in check.violations]

    def to_dict(self) -> dict:
        return {"certified": self.certified, "sha256": self.sha256, "checks": [c.to_dict() for c in self.checks],
                "violations": self.violations, "report": self.report, "signature": self.signature,
                "durations": self.durations}


def asked(*, base: str | None, plugins: Sequence[str], boot_test: str, marker_regex: str | None,
          deep: bool) -> dict:
    """What a certification was asked besides the ISO (the inputs by digest): a report says it, to be reused."""
    return {"base_sha256": cached_sha256(base) if base else None,
            "plugins_sha256": sorted(cached_sha256(path) for path in plugins),
            "boot_test": boot_test, "marker_regex": marker_regex, "deep": deep}


def tool() -> str:
    return f"{records.TOOL_NAME} {records.TOOL_VERSION}"


def report_document(*, iso: str, sha256: str, checks: list[Check], certified: bool, asked: dict) -> dict:
    """The certification report (without its time, which the writer adds)."""
    return {"format": REPORT_FORMAT, "iso": os.path.abspath(iso), "sha256": sha256, "certified": certified,
            "checks": [check.to_dict() for check in checks], "asked": asked, "tool": tool()}


def read_report(path: str) -> dict | None:
    """A report this tool wrote, or None when there is none or it is not one."""
    document = read_small_json(path, limit=64 << 20)
    return document if document is not None and document.get("format") == REPORT_FORMAT else None


def report_holds(document: dict | None, *, iso: str, iso_sha256: str, asked: dict) -> bool:
    """Whether a report certifies this very ISO (by sha256, at this path), asked the same way, by this tool version."""
    if not document:
        return False
    return document.get("certified") is True and document.get("sha256") == iso_sha256 \
        and document.get("tool") == tool() and document.get("asked") == asked \
        and document.get("iso") == os.path.abspath(iso)


def reused_result(report: str) -> VerifyResult:
    """The verdict of a report that still holds, as verify would have returned it."""
    document = read_report(report) or {}
    checks = [Check(name=str(item.get("name", "?")), evidence=list(item.get("evidence", [])),
                    violations=list(item.get("violations", []))) for item in document.get("checks", [])]
    signature = f"{report}.asc" if os.path.isfile(f"{report}.asc") else None
    return VerifyResult(certified=True, sha256=str(document.get("sha256", "")), checks=checks, report=report,
                        report_changed=False, signature=signature, durations={})


def atomic_write(path: str, content: bytes) -> None:
    """Write a file next to its place (a name with this process's PID) and rename it there."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise NodePluginError("the report's folder does not exist", path=folder)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{os.path.basename(path)}.tmp-{os.getpid()}-",
                                     delete=False) as handle:
        try:
            handle.write(content)
        except BaseException:
            os.unlink(handle.name)
            raise
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
