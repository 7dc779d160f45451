# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Artifacts by reference: inputs fetched and checked where a play runs, outputs published under a URL.

A *reference* is a local path or an http(s)/ftp URL, optionally followed by whitespace and a checksum
``sha256:<hex>``: one line of text, so an AWX survey field can hold it (a text area holds one per
line). A URL must carry its checksum: nothing fetched over a network is used unchecked.

``download`` is the one way this collection fetches over a network (artifacts, repository metadata
and RPMs for packing): written beside its destination and renamed into place, checked against the
checksum while it is written, retried a bounded number of times on network errors, server errors
and a wrong checksum (a transfer cut short, a mirror caught mid-sync), and refused with the digest
seen and the one expected when every attempt fails.

``publish_artifacts`` copies an ISO and its companions (report, signature) into
``<dest>/<sha256 of the ISO>/`` with a ``SHA256SUMS`` beside them and returns the URLs under which a
web server that serves ``dest`` offers them: a content-addressed location, so a later build never
changes what an earlier URL names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Mapping, Sequence

from ansible.module_utils.urls import ConnectionError as UrlConnectionError, SSLValidationError, open_url

from ._digests import cached_sha256, remember
from ._errors import NodePluginError, excerpt, quote

DEFAULT_ATTEMPTS = 3
DEFAULT_TIMEOUT = 60
SUMS = "SHA256SUMS"
# Checksum types of references and of rpm-md metadata (where "sha" means sha1), as hashlib names them.
ALGORITHMS = {"sha256": "sha256", "sha512": "sha512", "sha384": "sha384", "sha224": "sha224", "sha1": "sha1",
              "sha": "sha1", "md5": "md5"}
REFERENCE_ALGORITHMS = ("sha256", "sha512")
_URL = re.compile(r"^(https?|ftp)://", re.IGNORECASE)
_CHUNK = 1 << 20
# HTTP statuses worth another attempt: the server is busy or failing, not refusing this request.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_BACKOFF = 1.0


@dataclasses.dataclass(frozen=True)
class Checksum:
    """An expected digest: the hashlib algorithm and its lowercase hex value."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str, *, allowed: Sequence[str] = tuple(ALGORITHMS), what: str = "checksum") -> Checksum:
        """``<algorithm>:<hex>`` (``sha256:0123...``) as a Checksum, or raise saying what a checksum looks like."""
        name, sep, value = text.strip().partition(":")
        algorithm = ALGORITHMS.get(name.lower()) if name.lower() in allowed else None
        value = value.strip().lower()
        size = hashlib.new(algorithm).digest_size * 2 if algorithm else 0
        if not sep or algorithm is None or len(value) != size or not re.fullmatch(r"[0-9a-f]+", value):
            raise NodePluginError(f"{what} {excerpt(text)} is not <algorithm>:<hex digest>",
                                  hint=f"write it as sha256:<64 hex digits> ({', '.join(allowed)} are accepted)")
        return cls(algorithm, value)

    @staticmethod
    def looks_like(text: str) -> bool:
        """True for text of the form ``<algorithm>:<something>`` with an algorithm this module knows."""
        name, sep, _value = text.partition(":")
        return bool(sep) and name.lower() in ALGORITHMS

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclasses.dataclass(frozen=True)
class ArtifactRef:
    """A local path or a URL, and the checksum its content must have (required for a URL)."""

    src: str
    checksum: Checksum | None = None

    @property
    def is_url(self) -> bool:
        return bool(_URL.match(self.src))

    @property
    def name(self) -> str:
        """The file name the artifact keeps where it is fetched to."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.src).path) if self.is_url else self.src
        return os.path.basename(path)

    def __str__(self) -> str:
        return f"{self.src} {self.checksum}" if self.checksum else self.src


def _local(src: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(src).path) if src.lower().startswith("file://") else src


def parse_ref(text: str, checksum: str | None = None) -> ArtifactRef:
    """A reference from ``<path or URL> [sha256:<hex>]`` (a file:// URL is a path, so a survey line can name a path
    with spaces as file:///...%20...); ``checksum`` may come apart."""
    words = text.split()
    if not words or len(words) > 2:
        raise NodePluginError(f"{excerpt(text)} is not '<path or URL> [sha256:<hex>]'",
                              hint="give one artifact per line: its path or URL, then optionally its checksum")
    if len(words) == 2 and checksum:
        raise NodePluginError(f"{excerpt(text)} carries a checksum and is given one apart as well",
                              hint="give the checksum once")
    return _reference(words[0], words[1] if len(words) == 2 else checksum or None)


def _no_checksum(ref: ArtifactRef) -> NodePluginError:
    return NodePluginError(f"the URL {excerpt(ref.src)} has no checksum",
                           hint="append its sha256 (' sha256:<hex>'): what is fetched over a network is "
                                "used only when its checksum holds")


def _reference(src: str, checksum: str | None) -> ArtifactRef:
    ref = ArtifactRef(_local(src), Checksum.parse(checksum, allowed=REFERENCE_ALGORITHMS) if checksum else None)
    if ref.is_url and ref.checksum is None:
        raise _no_checksum(ref)
    if ref.is_url and (not ref.name or ref.name.startswith(".") or "\0" in ref.name or len(ref.name) > 255):
        raise NodePluginError(f"the URL {excerpt(ref.src)} names no file that can be kept under its name",
                              hint="give the URL of the file itself, whose name does not start with '.'")
    return ref


def parse_refs(items: Sequence[object]) -> list[ArtifactRef]:
    """References from a list whose items are ``{src, checksum}`` mappings or text (one reference per line;
    blank lines and ``#`` comments are skipped), as a role variable or a survey's text area gives them."""
    refs = []
    for item in items:
        if isinstance(item, Mapping):
            src = item.get("src")
            if not isinstance(src, str) or not src.strip():
                raise NodePluginError(f"an artifact {quote(dict(item), 200)} has no 'src'",
                                      hint="give each artifact as {src: <path or URL>, checksum: sha256:<hex>}")
            checksum = str(item.get("checksum") or "").strip() or None
            # A mapping's src is taken whole (a path may hold spaces), unless it is a survey line with its checksum.
            words = src.split()
            if len(words) == 2 and Checksum.looks_like(words[1]):
                refs.append(parse_ref(src, checksum))
            else:
                refs.append(_reference(src.strip(), checksum))
        elif isinstance(item, str):
            refs += [parse_ref(line) for line in item.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        else:
            raise NodePluginError(f"an artifact is a {type(item).__name__}, not a path, URL or mapping",
                                  hint="give '<path or URL> [sha256:<hex>]' or {src, checksum}")
    return refs


# Downloads.

class _Attempt(Exception):
    """One failed attempt that another may fix: a network error, a server error, a wrong checksum."""


def _fetch_once(url: str, partial: str, checksum: Checksum | None, timeout: float) -> str:
    """Write url to partial; return its digest in checksum's algorithm (sha256 when none is expected)."""
    digest = hashlib.new(checksum.algorithm if checksum else "sha256")
    try:
        with open_url(url, timeout=timeout, follow_redirects="safe") as response, open(partial, "wb") as handle:
            for block in iter(lambda: response.read(_CHUNK), b""):
                digest.update(block)
                handle.write(block)
    except urllib.error.HTTPError as exc:
        if exc.code in _TRANSIENT_STATUS:
            raise _Attempt(f"HTTP {exc.code} {quote(exc.reason, 80)}") from exc
        raise NodePluginError(f"cannot download {url}: HTTP Error {exc.code}: {quote(exc.reason, 80)}",
                              hint="check the URL") from exc
    except ValueError as exc:
        raise NodePluginError(f"cannot download {url}: {quote(exc, 200)}", hint="check the URL") from exc
    except (urllib.error.URLError, UrlConnectionError, SSLValidationError, http.client.HTTPException,
            socket.timeout, ConnectionError) as exc:
        raise _Attempt(quote(exc, 200)) from exc
    except OSError as exc:
        if exc.filename == partial:
            raise
        raise _Attempt(quote(exc, 200)) from exc
    return digest.hexdigest()


def download(url: str, dest: str, *, checksum: Checksum | None = None, attempts: int = DEFAULT_ATTEMPTS,
             timeout: float = DEFAULT_TIMEOUT, what: str | None = None) -> str:
    """Download ``url`` to ``dest`` (beside it, then renamed), checked against ``checksum``; return dest.

    Network errors, HTTP 408/429/5xx and a wrong checksum are tried again, ``attempts`` times in all;
    any other HTTP error is refused at once. ``what`` names the artifact in messages (default: the URL).
    """
    what = what or url
    folder = os.path.dirname(os.path.abspath(dest)) or "."
    failures: list[str] = []
    mismatched = False
    for attempt in range(1, max(1, attempts) + 1):
        handle, partial = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".part", dir=folder)
        os.close(handle)
        try:
            seen = _fetch_once(url, partial, checksum, timeout)
            mismatched = False
            if checksum is not None and seen != checksum.hexdigest:
                mismatched = True
                raise _Attempt(f"its {checksum.algorithm} is {seen}")
            os.replace(partial, dest)
        except _Attempt as exc:
            failures.append(f"attempt {attempt}: {exc}")
            if attempt < attempts:
                time.sleep(_BACKOFF * attempt)
            continue
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        if checksum is not None and checksum.algorithm == "sha256":
            remember(dest, checksum.hexdigest)
        return dest
    if mismatched and checksum is not None:
        raise NodePluginError(
            f"{what} does not have the expected {checksum.algorithm} {checksum.hexdigest} "
            f"({'; '.join(failures)}), refused",
            hint="the file changed on the server since its checksum was taken, or a mirror or proxy served a "
                 "damaged copy: check the checksum you were given, or try again later or from another mirror")
    raise NodePluginError(f"cannot download {url} after {len(failures)} attempt(s): {'; '.join(failures)}",
                          hint="check the URL, the network and the server")


def file_digest(path: str, algorithm: str) -> str:
    """The hex digest of a local file (sha256 from the digest cache)."""
    if algorithm == "sha256":
        return cached_sha256(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: str, checksum: Checksum, what: str | None = None) -> None:
    """Refuse a local file whose digest is not ``checksum``."""
    seen = file_digest(path, checksum.algorithm)
    if seen != checksum.hexdigest:
        raise NodePluginError(f"{what or 'the file'} has the {checksum.algorithm} {seen}, not the expected "
                              f"{checksum.hexdigest}, refused", path=path,
                              hint="the file is not the one the checksum was taken of: fetch it again or fix the "
                                   "checksum")


# Fetching references where a play runs.

@dataclasses.dataclass
class FetchRequest:
    """References to make local (see the node_artifact_fetch module for each option)."""

    artifacts: list
    dest: str
    attempts: int = DEFAULT_ATTEMPTS
    timeout: int = DEFAULT_TIMEOUT
    check_mode: bool = False


@dataclasses.dataclass
class FetchedArtifact:
    """Where one reference is on this host, and its sha256."""

    src: str
    path: str
    sha256: str
    downloaded: bool


@dataclasses.dataclass
class FetchResult:
    """What fetch_artifacts did: changed when anything was (or, in check mode, would be) downloaded."""

    changed: bool
    artifacts: list[FetchedArtifact]

    def to_dict(self) -> dict:
        return {"changed": self.changed, "artifacts": [dataclasses.asdict(item) for item in self.artifacts],
                "paths": [item.path for item in self.artifacts]}


def _fetch_one(ref: ArtifactRef, dest: str, request: FetchRequest) -> FetchedArtifact:
    if not ref.is_url:
        if not os.path.isfile(ref.src):
            raise NodePluginError("the artifact is not a file on this host", path=ref.src,
                                  hint="give a path on the host the play runs on, or a URL with its checksum")
        if ref.checksum is not None:
            check_file(ref.src, ref.checksum)
        return FetchedArtifact(ref.src, os.path.abspath(ref.src), cached_sha256(ref.src), False)
    target = os.path.join(dest, ref.name)
    checksum = ref.checksum
    if checksum is None:  # parse_ref refuses a URL without one; an ArtifactRef made by hand may lack it
        raise _no_checksum(ref)
    if os.path.isfile(target) and file_digest(target, checksum.algorithm) == checksum.hexdigest:
        return FetchedArtifact(ref.src, target, cached_sha256(target), False)
    if request.check_mode:
        sha256 = checksum.hexdigest if checksum.algorithm == "sha256" else ""
        return FetchedArtifact(ref.src, target, sha256, True)
    download(ref.src, target, checksum=checksum, attempts=request.attempts, timeout=request.timeout)
    return FetchedArtifact(ref.src, target, cached_sha256(target), True)


def fetch_artifacts(request: FetchRequest) -> FetchResult:
    """Each reference as a checked local file: a path as it is, a URL downloaded into ``dest`` unless a file
    with its checksum is already there."""
    refs = parse_refs(request.artifacts)
    names: dict[str, str] = {}
    for ref in refs:
        if ref.is_url and names.setdefault(ref.name, ref.src) != ref.src:
            raise NodePluginError(f"two URLs name the same file {excerpt(ref.name)}: {names[ref.name]} and {ref.src}",
                                  hint="fetch them into different folders")
    if any(ref.is_url for ref in refs) and not request.check_mode:
        os.makedirs(request.dest, exist_ok=True)
    fetched = [_fetch_one(ref, request.dest, request) for ref in refs]
    return FetchResult(changed=any(item.downloaded for item in fetched), artifacts=fetched)


# Publishing.

@dataclasses.dataclass
class PublishRequest:
    """Files to publish together (see the node_artifact_publish module for each option)."""

    src: list[str]
    dest: str
    base_url: str | None = None
    check_mode: bool = False


@dataclasses.dataclass
class PublishedFile:
    """One published file: where it is, its URL (None without a base URL) and sha256."""

    name: str
    path: str
    url: str | None
    sha256: str
    changed: bool


@dataclasses.dataclass
class PublishResult:
    """What publish_artifacts did; ``url`` and ``sha256`` are those of the first file (the ISO)."""

    changed: bool
    folder: str
    url: str | None
    sha256: str
    checksums_url: str | None
    files: list[PublishedFile]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "urls": [item.url for item in self.files]}


def _url(base_url: str | None, *parts: str) -> str | None:
    if not base_url:
        return None
    return base_url.rstrip("/") + "/" + "/".join(urllib.parse.quote(part) for part in parts)


def _copy_into(src: str, target: str, sha256: str) -> None:
    handle, partial = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part",
                                       dir=os.path.dirname(target))
    os.close(handle)
    try:
        shutil.copyfile(src, partial)
        os.chmod(partial, 0o644)
        if cached_sha256(partial) != sha256:
            raise NodePluginError("the published copy does not have the sha256 of its source (it changed while it "
                                  "was copied?)", path=src, hint="publish it again once nothing writes it")
        os.replace(partial, target)
        remember(target, sha256)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def publish_artifacts(request: PublishRequest) -> PublishResult:
    """Copy the files into ``<dest>/<sha256 of the first>/`` with a SHA256SUMS; unchanged files are not copied."""
    if not request.src:
        raise NodePluginError("nothing to publish", hint="give at least the ISO")
    if request.base_url and not re.match(r"^(https?|ftp)://[^\s/]+(/\S*)?$", request.base_url):
        raise NodePluginError(f"base_url {excerpt(request.base_url)} is not an http(s) or ftp URL",
                              hint="give the URL under which a web server serves dest, such as "
                                   "http://builder1.example.com/node-artifacts")
    names = [os.path.basename(path) for path in request.src]
    if len(set(names)) != len(names) or SUMS in names:
        raise NodePluginError("the files to publish must have distinct names, none of them SHA256SUMS",
                              hint="rename the report or signature")
    digests = []
    for path in request.src:
        if not os.path.isfile(path):
            raise NodePluginError("the file to publish does not exist", path=path)
        digests.append(cached_sha256(path))
    folder = os.path.join(os.path.abspath(request.dest), digests[0])
    files = []
    for path, name, sha256 in zip(request.src, names, digests):
        target = os.path.join(folder, name)
        current = cached_sha256(target) if os.path.isfile(target) else None
        files.append(PublishedFile(name, target, _url(request.base_url, digests[0], name), sha256, current != sha256))
    sums = "".join(f"{item.sha256}  {item.name}\n" for item in sorted(files, key=lambda item: item.name))
    sums_path = os.path.join(folder, SUMS)
    try:
        with open(sums_path, encoding="utf-8") as handle:
            sums_changed = handle.read() != sums
    except OSError:
        sums_changed = True
    changed = sums_changed or any(item.changed for item in files)
    if changed and not request.check_mode:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        for path, item in zip(request.src, files):
            if item.changed:
                _copy_into(path, item.path, item.sha256)
        sums_fd, partial = tempfile.mkstemp(prefix=f".{SUMS}.", dir=folder, text=True)
        with os.fdopen(sums_fd, "w", encoding="utf-8") as sums_file:
            sums_file.write(sums)
        os.chmod(partial, 0o644)
        os.replace(partial, sums_path)
    return PublishResult(changed=changed, folder=folder, url=files[0].url, sha256=digests[0],
                         checksums_url=_url(request.base_url, digests[0], SUMS), files=files)
