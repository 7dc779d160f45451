# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Version ranges of compatible Node releases, compared the way rpm compares versions.

Syntax (documented in docs/plugin-format.md): clauses separated by commas, all of which must
hold (comma = AND). A clause is an operator and an ``[epoch:]version[-release]``:
``>=``, ``>``, ``<=``, ``<``, ``==`` (also ``=``), ``!=``. A bare version means ``==``.
``*`` or an empty text admits every version. Example: ``>=2.5.0, <2.6``.

A clause without a release compares the version only (``<2.6`` admits ``2.5.9-3``, and ``==2.5.0``
admits every release of 2.5.0); with a release, the release is compared too. Versions are ordered
by rpm's algorithm (``rpm.labelCompare``): ``1.10 > 1.9``, ``1.0~rc1 < 1.0``, ``1.0^git1 > 1.0``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import NodePluginError

try:
    import rpm
except ImportError:  # pragma: no cover - the module utils report it where rpm is needed
    rpm = None

OPERATORS = (">=", "<=", "==", "!=", ">", "<", "=")
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<|=)?\s*([^\s,<>=!]+)\s*$")
_EVR = re.compile(r"^(?:(\d+):)?([A-Za-z0-9._+~^]+)(?:-([A-Za-z0-9._+~^]+))?$")


@dataclass(frozen=True)
class Evr:
    """An rpm epoch:version-release; release None means 'any release'."""

    epoch: int
    version: str
    release: str | None

    def __str__(self) -> str:
        text = f"{self.epoch}:{self.version}" if self.epoch else self.version
        return f"{text}-{self.release}" if self.release is not None else text


@dataclass(frozen=True)
class Clause:
    """One comparison of a range, such as ``>=2.5.0``."""

    operator: str
    evr: Evr

    def __str__(self) -> str:
        return f"{self.operator}{self.evr}"


@dataclass(frozen=True)
class VersionRange:
    """A conjunction of clauses; no clause admits everything."""

    clauses: tuple[Clause, ...]

    def __str__(self) -> str:
        return ", ".join(str(clause) for clause in self.clauses) or "*"

    def admits(self, version: str, release: str | None = None, epoch: int = 0) -> bool:
        """True when the version (and release, if given) satisfies every clause."""
        candidate = parse_evr(version if release is None else f"{version}-{release}")
        if epoch:
            candidate = Evr(epoch, candidate.version, candidate.release)
        return all(_holds(clause, candidate) for clause in self.clauses)


def _require_rpm() -> None:
    if rpm is None:
        raise NodePluginError("the Python rpm bindings are not installed",
                              hint="install the package 'python3-rpm' (make setup does it)")


def parse_evr(text: str) -> Evr:
    """Parse ``[epoch:]version[-release]``; raise NodePluginError naming the text on bad syntax."""
    match = _EVR.match(text.strip())
    if not match:
        raise NodePluginError(f"'{text}' is not a version",
                              hint="write [epoch:]version[-release], for example 2.5.0 or 2.5.0-1.fc17")
    epoch, version, release = match.groups()
    return Evr(int(epoch or 0), version, release)


def compare_evr(left: Evr, right: Evr) -> int:
    """-1, 0 or 1 as rpm orders them; a missing release on either side compares versions only."""
    _require_rpm()
    if left.release is None or right.release is None:
        left_label = (str(left.epoch), left.version, "")
        right_label = (str(right.epoch), right.version, "")
    else:
        left_label = (str(left.epoch), left.version, left.release)
        right_label = (str(right.epoch), right.version, right.release)
    return int(rpm.labelCompare(left_label, right_label))


def _holds(clause: Clause, candidate: Evr) -> bool:
    order = compare_evr(candidate, clause.evr)
    return {
        ">=": order >= 0, ">": order > 0, "<=": order <= 0, "<": order < 0,
        "==": order == 0, "!=": order != 0,
    }[clause.operator]


def parse_range(text: str) -> VersionRange:
    """Parse a version range such as ``>=2.5.0, <2.6``; raise NodePluginError on bad syntax."""
    stripped = (text or "").strip()
    if stripped in ("", "*"):
        return VersionRange(())
    clauses = []
    for number, part in enumerate(stripped.split(","), start=1):
        if not part.strip():
            raise NodePluginError(f"version range '{text}': clause {number} is empty",
                                  hint="separate clauses with single commas, for example '>=2.5.0, <2.6'")
        match = _CLAUSE.match(part)
        if not match:
            raise NodePluginError(f"version range '{text}': clause {number} ('{part.strip()}') is not"
                                  " an operator followed by a version",
                                  hint=f"use one of {' '.join(OPERATORS)} then [epoch:]version[-release]")
        operator, version = match.groups()
        try:
            evr = parse_evr(version)
        except NodePluginError as exc:
            raise NodePluginError(f"version range '{text}': clause {number}: {exc.message}", hint=exc.hint) from exc
        clauses.append(Clause("==" if operator in (None, "=") else operator, evr))
    return VersionRange(tuple(clauses))


def admits(range_text: str, version: str, release: str | None = None) -> bool:
    """True when ``version`` (with ``release`` if given) lies in the range ``range_text``."""
    return parse_range(range_text).admits(version, release)
