# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dependency closure of a plugin's packages with libsolv, against the target image's package set.

The image's packages form the installed repository, as rpm's own database does: what they provide
and the files they hold count as satisfied (a file requirement such as /bin/sh, which rpmbuild adds
for every scriptlet, is met by the package that owns the file). The plugin's own RPMs and the given
repositories (folders of RPMs, or rpm-md repositories by file://, http:// or https:// URL) are the
candidates. The solver's transaction says what is missing from the
image: exactly those packages go into the plugin.

An rpm-md repository is read the way dnf reads it: the primary metadata must have the checksum that
``repomd.xml`` gives, and every package taken from it the checksum the primary metadata gives.
Downloads are retried a bounded number of times (_artifacts.download); a mismatch is refused.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import urllib.parse
from xml.etree import ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._artifacts import Checksum, check_file, download
from ._errors import NodePluginError, excerpt
from ._outputs import run_dir

try:
    import solv
except ImportError:  # pragma: no cover - reported by resolve
    solv = None

_NVRA = re.compile(r"^(?P<name>\S+)-(?:(?P<epoch>\d+):)?(?P<version>[^-\s]+)-(?P<release>[^-\s]+)"
                   r"\.(?P<arch>[A-Za-z0-9_]+)$")
_DEP = re.compile(r"^\s*(?P<name>\S+)(?:\s*(?P<op><=|>=|=|<|>)\s*(?P<evr>\S+))?\s*$")
_REPOMD_NS = {"repo": "http://linux.duke.edu/metadata/repo"}
ASSUMED_FILES = "(files-of-the-image, assumed from a plain package list)"


@dataclass(frozen=True)
class InstalledPackage:
    """A package of the target image: its NEVRA, what it provides (name or ``name OP evr``) and its files."""

    name: str
    epoch: int | None
    version: str
    release: str
    arch: str
    provides: tuple[str, ...] = ()
    install_time: int | None = None
    files: tuple[str, ...] = field(default=(), repr=False)

    @property
    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"

    @property
    def evr(self) -> str:
        prefix = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{prefix}{self.version}-{self.release}"


@dataclass(frozen=True)
class ResolvedPackage:
    """A package the plugin must carry: where its file is and why it is there."""

    name: str
    nevra: str
    path: str
    role: str
    repo: str
    # The checksum the repository's metadata gives (rpm-md repositories), which the file must have.
    checksum: Checksum | None = None


@dataclass
class Resolution:
    """What the solver decided: packages to ship, and what the image already satisfied."""

    packages: list[ResolvedPackage] = field(default_factory=list)
    satisfied_by_image: list[str] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)


def _require_solv() -> None:
    if solv is None:
        raise NodePluginError("the Python solv bindings are not installed",
                              hint="install the package 'python3-solv' (make setup does it)")


def parse_package_list(text: str, source: str = "package list") -> list[InstalledPackage]:
    """Read a package list: JSON (a list of objects with name/epoch/version/release/arch/provides/files),
    or text lines ``name-[epoch:]version-release.arch [(signature)]`` as in manifest-rpm.txt or
    ``rpm -qa`` output. Blank lines, ``#`` comments and gpg-pubkey entries are skipped.
    """
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise NodePluginError(f"not valid JSON ({excerpt(exc)})", path=source) from exc
        if isinstance(data, dict):
            data = data.get("packages", [])
        try:
            return [InstalledPackage(name=item["name"], epoch=item.get("epoch"), version=item["version"],
                                     release=item["release"], arch=item.get("arch", "noarch"),
                                     provides=tuple(item.get("provides", ())), files=tuple(item.get("files", ())))
                    for item in data]
        except (KeyError, TypeError) as exc:
            raise NodePluginError(f"a package entry lacks {exc}", path=source,
                                  hint="each entry needs name, version, release (epoch, arch, provides, files "
                                       "optional)") from exc
    packages = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = re.sub(r"\s+\(.*\)\s*$", "", line).strip()
        if not entry or entry.startswith("#") or entry.startswith("gpg-pubkey-"):
            continue
        match = _NVRA.match(entry)
        if not match:
            raise NodePluginError(f"line {number}: {excerpt(line.strip())} is not name-version-release.arch",
                                  path=source, hint="use isolinux/manifest-rpm.txt of the ISO or 'rpm -qa' output")
        epoch = match.group("epoch")
        packages.append(InstalledPackage(match.group("name"), int(epoch) if epoch else None,
                                         match.group("version"), match.group("release"), match.group("arch")))
    if not packages:
        raise NodePluginError("the package list is empty", path=source)
    return packages


# A real Node lists a few hundred packages (a JSON list with file lists: some tens of MiB).
MAX_PACKAGE_LIST_BYTES = 256 << 20


def read_package_list(path: str) -> list[InstalledPackage]:
    """Read a package list file (at most MAX_PACKAGE_LIST_BYTES, UTF-8); see parse_package_list."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PACKAGE_LIST_BYTES + 1)
    except OSError as exc:
        raise NodePluginError(f"cannot read the package list: {exc.strerror or exc}", path=path) from exc
    if len(raw) > MAX_PACKAGE_LIST_BYTES:
        raise NodePluginError(f"the package list is larger than {MAX_PACKAGE_LIST_BYTES} bytes", path=path,
                              hint="give isolinux/manifest-rpm.txt of the ISO, 'rpm -qa' output, or its JSON form")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NodePluginError(f"the package list is not UTF-8 text (byte {exc.start})", path=path) from exc
    return parse_package_list(text, source=path)


def _dep(pool, text: str):
    """A libsolv dependency id from 'name [op evr]'."""
    match = _DEP.match(text)
    if not match:
        return None
    dep = pool.Dep(match.group("name"))
    if match.group("op"):
        flags = {"<": solv.REL_LT, ">": solv.REL_GT, "=": solv.REL_EQ,
                 "<=": solv.REL_LT | solv.REL_EQ, ">=": solv.REL_GT | solv.REL_EQ}[match.group("op")]
        dep = dep.Rel(flags, pool.Dep(match.group("evr")))
    return dep


def _evr(package: InstalledPackage) -> str:
    text = f"{package.version}-{package.release}"
    return f"{package.epoch}:{text}" if package.epoch else text


class _Candidates:
    """A repository of candidates and the file each of its solvables comes from."""

    def __init__(self, label: str, repo) -> None:
        self.label = label
        self.repo = repo
        self.files: dict[int, str] = {}
        self.checksums: dict[int, Checksum] = {}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # rpm hands undecodable bytes of a file name over as surrogates
        return False
    return True


def _add_file_list(filelist, solvable_id: int, paths: Iterable[str], dir_ids: dict[str, int]) -> None:
    """The package's files as libsolv's file list (directory ids shared): pool.addfileprovides() then
    turns exactly the files that some package requires into provides, as rpm's Basenames index does."""
    for path in paths:
        folder, _sep, base = path.rpartition("/")
        if not base or not path.startswith("/") or not _utf8(path):
            continue  # not a path a requirement can name, or bytes libsolv's bindings refuse
        dir_id = dir_ids.get(folder)
        if dir_id is None:
            dir_id = dir_ids[folder] = filelist.str2dir(folder or "/", True)
        filelist.add_dirstr(solvable_id, solv.SOLVABLE_FILELIST, dir_id, base)


class Resolver:
    """One libsolv pool: the image as installed repository, and the candidate repositories."""

    def __init__(self, image_packages: Sequence[InstalledPackage], workdir: str) -> None:
        _require_solv()
        self.workdir = workdir
        self.pool = solv.Pool()
        self.pool.setdisttype(solv.Pool.DISTTYPE_RPM)
        self.pool.setarch()
        installed = self.pool.add_repo("@image")
        filelist = installed.add_repodata(0)
        dir_ids: dict[str, int] = {}
        for package in image_packages:
            if not _utf8(package.name + _evr(package) + package.arch):
                raise NodePluginError(f"a package of the target image is not named in valid text: "
                                      f"{package.nevra[:80]!r}",
                                      hint="check the package list or the image's rpm database")
            solvable = installed.add_solvable()
            solvable.name, solvable.evr, solvable.arch = package.name, _evr(package), package.arch
            solvable.add_deparray(solv.SOLVABLE_PROVIDES,
                                  self.pool.Dep(package.name).Rel(solv.REL_EQ, self.pool.Dep(_evr(package))))
            for provide in package.provides:
                dep = _dep(self.pool, provide) if _utf8(provide) else None
                if dep is not None:
                    solvable.add_deparray(solv.SOLVABLE_PROVIDES, dep)
            _add_file_list(filelist, solvable.id, package.files, dir_ids)
        filelist.internalize()
        installed.internalize()
        self.pool.installed = installed
        self.installed = installed
        self.candidates: list[_Candidates] = []

    def add_rpm_files(self, label: str, paths: Iterable[str]) -> _Candidates:
        candidates = _Candidates(label, self.pool.add_repo(label))
        for path in paths:
            solvable = candidates.repo.add_rpm(path, solv.Repo.REPO_REUSE_REPODATA | solv.Repo.REPO_NO_INTERNALIZE)
            if solvable is None:
                raise NodePluginError(f"not a readable RPM package ({self.pool.errstr})", path=path)
            candidates.files[solvable.id] = path
        candidates.repo.internalize()
        self.candidates.append(candidates)
        return candidates

    def add_repository(self, location: str) -> _Candidates:
        """A folder of RPMs, or an rpm-md repository (folder with repodata/, file:// or http(s):// URL)."""
        parsed = urllib.parse.urlparse(location)
        if parsed.scheme in ("http", "https"):
            return self._add_rpmmd(location, remote=True)
        folder = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else location
        if parsed.scheme not in ("", "file"):
            raise NodePluginError(f"repository '{location}': unsupported URL scheme '{parsed.scheme}'",
                                  hint="give a folder, or a file://, http:// or https:// URL")
        if not os.path.isdir(folder):
            raise NodePluginError("the repository folder does not exist", path=folder)
        if os.path.isfile(os.path.join(folder, "repodata", "repomd.xml")):
            return self._add_rpmmd(folder, remote=False)
        paths = sorted(glob.glob(os.path.join(folder, "**", "*.rpm"), recursive=True))
        return self.add_rpm_files(location, [path for path in paths if not path.endswith(".src.rpm")])

    def _fetch(self, base: str, relative: str, remote: bool, checksum: Checksum | None = None) -> str:
        what = f"{relative} of the repository {base}"
        if not remote:
            path = os.path.join(base, relative)
            if not os.path.isfile(path):
                raise NodePluginError(f"the repository lacks {relative}", path=base)
            if checksum is not None:
                check_file(path, checksum, what)
            return path
        dest = tempfile.mkstemp(dir=self.workdir, suffix="-" + os.path.basename(relative))
        os.close(dest[0])
        return download(base.rstrip("/") + "/" + relative, dest[1], checksum=checksum, what=what)

    def _add_rpmmd(self, base: str, remote: bool) -> _Candidates:
        repomd = self._fetch(base, "repodata/repomd.xml", remote)
        try:
            root = ElementTree.parse(repomd).getroot()
        except ElementTree.ParseError as exc:
            raise NodePluginError(f"repodata/repomd.xml is not XML ({exc})", path=base) from exc
        primary = root.find("repo:data[@type='primary']/repo:location", _REPOMD_NS)
        href = None if primary is None else primary.get("href")
        if not href:
            raise NodePluginError("repodata/repomd.xml names no primary metadata", path=base)
        if href.startswith("/") or ".." in href.split("/"):
            raise NodePluginError(f"repodata/repomd.xml names primary metadata outside the repository: {excerpt(href)}",
                                  path=base)
        primary_file = self._fetch(base, href, remote, _metadata_checksum(root, base))
        candidates = _Candidates(base, self.pool.add_repo(base))
        handle = solv.xfopen(primary_file)
        if handle is None or not candidates.repo.add_rpmmd(handle, None, 0):
            raise NodePluginError(f"cannot read the primary metadata ({self.pool.errstr})", path=base)
        handle.close()
        candidates.repo.internalize()
        for solvable in candidates.repo.solvables:
            location, _media = solvable.lookup_location()
            if location.startswith("/") or ".." in location.split("/"):
                raise NodePluginError(f"the primary metadata places {solvable.str()[:80]!r} outside the repository: "
                                      f"{excerpt(location)}", path=base)
            candidates.files[solvable.id] = (base.rstrip("/") + "/" + location) if remote \
                else os.path.join(base, location)
            candidates.checksums[solvable.id] = _package_checksum(solvable, base)
        self.candidates.append(candidates)
        return candidates

    def _problem_text(self, problems) -> str:
        lines = []
        for problem in problems:
            rules = [rule.info().problemstr() for rule in problem.findallproblemrules()]
            lines.append("  " + ("; ".join(dict.fromkeys(rules)) or str(problem)))
        return "\n".join(lines)

    def assume_file_requirements(self) -> None:
        """Treat every file requirement (/bin/sh) of the candidates as met by the image.

        Used when the image is known by a package list without file names (manifest-rpm.txt, rpm -qa,
        JSON without "files"); capabilities such as sonames are not assumed (they need the ISO or a JSON
        list with provides).
        """
        wanted = set()
        for candidates in self.candidates:
            for solvable in candidates.repo.solvables:
                for requirement in solvable.lookup_deparray(solv.SOLVABLE_REQUIRES, 0):
                    if str(requirement).startswith("/"):
                        wanted.add(str(requirement))
        if not wanted:
            return
        stand_in = self.installed.add_solvable()
        stand_in.name, stand_in.evr, stand_in.arch = ASSUMED_FILES, "0-0", "noarch"
        for path in sorted(wanted):
            stand_in.add_deparray(solv.SOLVABLE_PROVIDES, self.pool.Dep(path))
        self.installed.internalize()

    def resolve(self, plugin: _Candidates) -> Resolution:
        """Install every package of ``plugin``; return the packages the image lacks."""
        self.pool.addfileprovides()
        self.pool.createwhatprovides()
        jobs = [self.pool.Job(solv.Job.SOLVER_SOLVABLE | solv.Job.SOLVER_INSTALL, solvable.id)
                for solvable in plugin.repo.solvables]
        solver = self.pool.Solver()
        problems = solver.solve(jobs)
        searched = ["the target image's packages"] + [candidates.label for candidates in self.candidates]
        if problems:
            raise NodePluginError(
                f"the plugin's packages cannot be installed on the target image ({len(problems)} problem(s))",
                hint="add the repository that provides what is missing (--repo), or remove the conflict",
                details=self._problem_text(problems) + "\n  looked in: " + ", ".join(searched))
        transaction = solver.transaction()
        resolution = Resolution(searched=searched)
        replaced = []
        by_id = {solvable_id: (candidates, path) for candidates in self.candidates
                 for solvable_id, path in candidates.files.items()}
        for solvable in transaction.newsolvables():
            candidates, path = by_id[solvable.id]
            checksum = candidates.checksums.get(solvable.id)
            role = "plugin" if candidates is plugin else "dependency"
            for old in self.installed.solvables:
                if old.name == solvable.name and role == "dependency" and old.name != ASSUMED_FILES:
                    replaced.append(f"  {solvable.str()} would replace the image's {old.str()}")
            resolution.packages.append(ResolvedPackage(solvable.name, solvable.str(), path, role, candidates.label,
                                                       checksum))
            for requirement in solvable.lookup_deparray(solv.SOLVABLE_REQUIRES, 0):
                providers = [provider for provider in self.pool.whatprovides(requirement)
                             if provider.repo == self.installed]
                if providers and not str(requirement).startswith("rpmlib("):
                    resolution.satisfied_by_image.append(
                        f"{requirement} (needed by {solvable.name}) <- {providers[0].str()}")
        if replaced:
            raise NodePluginError("a dependency would replace a package of the target image",
                                  hint="a plugin may add packages, not change the image's own; pin the dependency"
                                       " to the image's version or drop that repository",
                                  details="\n".join(replaced))
        resolution.packages.sort(key=lambda package: (package.role != "plugin", package.name, package.nevra))
        resolution.satisfied_by_image = list(dict.fromkeys(resolution.satisfied_by_image))
        return resolution


def resolve_closure(plugin_rpms: Sequence[str], repos: Sequence[str], image_packages: Sequence[InstalledPackage],
                    *, download_dir: str | None = None, assume_image_files: bool | None = None) -> Resolution:
    """The plugin's RPMs plus what of their requirements the image lacks, from the given repos.

    File requirements are met from the image packages' file lists; with ``assume_image_files`` they are
    taken as met instead (None: when no image package carries a file list, as in a plain package list).
    Packages from http(s) repositories are downloaded into download_dir (required for them).
    """
    if assume_image_files is None:
        assume_image_files = not any(package.files for package in image_packages)
    workdir = tempfile.mkdtemp(prefix="ovirt-plugin-deps-", dir=run_dir())
    try:
        resolver = Resolver(image_packages, workdir)
        plugin = resolver.add_rpm_files("the plugin's RPMs", plugin_rpms)
        for location in repos:
            resolver.add_repository(location)
        if assume_image_files:
            resolver.assume_file_requirements()
        resolution = resolver.resolve(plugin)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    materialized = []
    for package in resolution.packages:
        url = urllib.parse.urlparse(package.path)
        what = f"the package {package.nevra} of the repository {package.repo}"
        if url.scheme in ("http", "https"):
            if not download_dir:
                raise NodePluginError("packages from http(s) repositories need a download folder")
            dest = os.path.join(download_dir, os.path.basename(url.path))
            download(package.path, dest, checksum=package.checksum, what=what)
            package = ResolvedPackage(package.name, package.nevra, dest, package.role, package.repo, package.checksum)
        elif package.checksum is not None:
            check_file(package.path, package.checksum, what)
        materialized.append(package)
    resolution.packages = materialized
    return resolution


def _metadata_checksum(repomd, base: str) -> Checksum:
    """The checksum repomd.xml gives for the primary metadata, which the fetched file must have."""
    element = repomd.find("repo:data[@type='primary']/repo:checksum", _REPOMD_NS)
    if element is None or not (element.text or "").strip():
        raise NodePluginError("repodata/repomd.xml gives no checksum of the primary metadata, so it cannot be "
                              "checked", path=base, hint="regenerate the repository metadata (createrepo_c)")
    return Checksum.parse(f"{element.get('type', '')}:{element.text.strip()}",
                          what="the checksum of the primary metadata in repodata/repomd.xml")


def _package_checksum(solvable, base: str) -> Checksum:
    """The checksum the primary metadata gives for a package, which its file must have."""
    found = solvable.lookup_checksum(solv.SOLVABLE_CHECKSUM)
    if found is None:
        raise NodePluginError(f"the primary metadata gives no checksum of {solvable.str()[:80]!r}, so it cannot be "
                              "checked", path=base, hint="regenerate the repository metadata (createrepo_c)")
    return Checksum.parse(f"{found.typestr()}:{found.hex()}", what=f"the checksum of {solvable.str()[:80]!r}")
