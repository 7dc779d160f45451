# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plugin format (version 1): manifest, reproducible tarball writing, and safe reading.

A plugin is ``<name>-<version>.plugin.tar.gz`` holding ``manifest.json``, an optional detached
signature ``manifest.json.asc``, ``recipe.ks`` and ``rpms/*.rpm`` (docs/plugin-format.md).

Reading never trusts the tarball: it is read as a stream, each member is checked before anything
is written (name, type, duplicates, listed in the manifest, size bounds, digest counted from the
bytes actually read, RPM header NEVRA), and each refusal is one line naming the member and the rule.
"""

from __future__ import annotations

import collections
import datetime
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import stat
import tarfile
import tempfile
import zlib
from dataclasses import asdict, dataclass, field

from ._digests import file_sha256
from ._errors import NodePluginError
from ._plugin_schema import SCHEMA
from ._recipe import MAX_RECIPE_BYTES, Recipe, bounded, decode_recipe, excerpt, parse_recipe
from ._reproducible import source_date_epoch, utc_timestamp  # noqa: F401 re-exported; pylint: disable=unused-import
from ._rpmhdr import RpmHeader, TemporaryKeyring, allowed_paths, check_paths, read_header, read_header_bytes
from ._versions import parse_range

try:
    import jsonschema
    HAS_JSONSCHEMA = True
except ImportError:  # pragma: no cover - reported by validate_manifest
    HAS_JSONSCHEMA = False

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
RECIPE = "recipe.ks"
RPMS_DIR = "rpms"
SUFFIX = ".plugin.tar.gz"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds a plugin must respect when read (protection against tar and gzip bombs)."""

    max_members: int = 4096
    max_member_bytes: int = 2 * 1024 ** 3
    max_total_bytes: int = 8 * 1024 ** 3
    max_manifest_bytes: int = 1024 ** 2
    max_recipe_bytes: int = MAX_RECIPE_BYTES
    max_signature_bytes: int = 64 * 1024
    max_rpm_header_bytes: int = 64 * 1024 ** 2


@dataclass(frozen=True)
class NodeCompat:
    """Which Node images a plugin is made for."""

    product: str = ""
    versions: str = "*"


@dataclass(frozen=True)
class PackageEntry:
    """One RPM of the plugin, as listed in the manifest."""

    file: str
    name: str
    nevra: str
    size: int
    sha256: str
    role: str
    signed: bool = False
    key_id: str | None = None


@dataclass(frozen=True)
class RecipeEntry:
    file: str
    sha256: str


@dataclass(frozen=True)
class PluginManifest:
    """manifest.json of a plugin (format 1)."""

    name: str
    version: str
    vendor: str
    summary: str
    node: NodeCompat
    packages: tuple[PackageEntry, ...]
    recipe: RecipeEntry
    created: str
    kind: str = "standard"
    persist: tuple[str, ...] = ()
    allowed_path_overrides: tuple[str, ...] = ()
    format: int = FORMAT

    def to_dict(self) -> dict:
        data = asdict(self)
        data["packages"] = [asdict(package) for package in self.packages]
        data["persist"] = list(self.persist)
        data["allowed_path_overrides"] = list(self.allowed_path_overrides)
        return data

    def to_bytes(self) -> bytes:
        """The canonical form: sorted keys, two-space indent, UTF-8, one final newline."""
        return canonical_json(self.to_dict())

    @property
    def file_name(self) -> str:
        return plugin_file_name(self.name, self.version)

    @property
    def plugin_packages(self) -> list[PackageEntry]:
        return [package for package in self.packages if package.role == "plugin"]


def canonical_json(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def plugin_file_name(name: str, version: str) -> str:
    return f"{name}-{version}{SUFFIX}"


def created_now() -> str:
    """RFC 3339 UTC time of SOURCE_DATE_EPOCH when set, else of now (seconds precision)."""
    return utc_timestamp()


MAX_MANIFEST_DEPTH = 8  # a manifest nests 3 deep (object, packages, package); the bound keeps parsers flat
MAX_MANIFEST_INTEGER_DIGITS = 18
_JSON_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# Keys and values print in records, file names and messages: no control characters, no lone surrogates.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class _NotStrictJson(ValueError):
    """JSON that json.loads would take but a manifest must not hold (raised by the hooks below)."""


def _json_depth(raw: bytes, limit: int) -> int:
    """How deep arrays and objects nest, counting no further than limit + 1 (strings are skipped)."""
    depth = deepest = 0
    for token in _JSON_STRING_OR_BRACKET.finditer(raw):
        bracket = token.group()[:1]
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif bracket in (b"]", b"}"):
            depth -= 1
    return deepest


def _unique_keys(pairs: list) -> dict:
    keys = [key for key, _value in pairs]
    if len(set(keys)) != len(keys):
        twice = next(key for index, key in enumerate(keys) if key in keys[:index])
        raise _NotStrictJson(f"the key {excerpt(twice, 60)} appears twice in one object")
    return dict(pairs)


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_MANIFEST_INTEGER_DIGITS:
        raise _NotStrictJson(f"a number has more than {MAX_MANIFEST_INTEGER_DIGITS} digits")
    return int(text)


def _no_float(text: str) -> float:
    raise _NotStrictJson(f"{excerpt(text, 40)} is not an integer (a manifest's numbers are whole numbers)")


def _no_constant(text: str) -> float:
    raise _NotStrictJson(f"{text} is not a number JSON allows")


def _check_strings(value: object, location: str) -> None:
    """No key or string of the manifest holds a control character or a lone surrogate."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{location}/{key}" if location else str(key)
        for text in (key, item):
            found = _CONTROL_CHARACTER.search(text) if isinstance(text, str) else None
            if found:
                raise _NotStrictJson(f"{bounded(where, 80)}: control character U+{ord(found.group()):04X} "
                                     "in a key or string")
        _check_strings(item, where)


def load_manifest_json(raw: bytes, where: str = MANIFEST) -> object:
    """Strict JSON of manifest bytes: UTF-8, nesting at most MAX_MANIFEST_DEPTH, no duplicate keys, integers of
    at most 18 digits, no fractions, NaN or Infinity, no control characters in strings; else NodePluginError."""
    hint = "the manifest is damaged or was not written by ovirt-plugin-build; get the plugin again from the vendor"
    if _json_depth(raw, MAX_MANIFEST_DEPTH) > MAX_MANIFEST_DEPTH:
        raise NodePluginError(f"manifest nests arrays or objects more than {MAX_MANIFEST_DEPTH} deep",
                              path=where, hint=hint)
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_int=_integer,
                          parse_float=_no_float, parse_constant=_no_constant)
        _check_strings(data, "")
    except UnicodeDecodeError as exc:
        raise NodePluginError(f"manifest is not UTF-8 JSON (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                              path=where, hint=hint) from exc
    except json.JSONDecodeError as exc:
        raise NodePluginError(f"manifest is not UTF-8 JSON ({bounded(str(exc))})", path=where, hint=hint) from exc
    except _NotStrictJson as exc:
        raise NodePluginError(f"manifest is not strict JSON: {exc}", path=where, hint=hint) from exc
    return data


def _check_created(created: str, where: str) -> None:
    try:
        datetime.datetime.strptime(created, _CREATED_FORMAT)
    except ValueError as exc:
        raise NodePluginError(f"created: {excerpt(created, 40)} is not a valid RFC 3339 UTC time", path=where,
                              hint="ovirt-plugin-build writes YYYY-MM-DDTHH:MM:SSZ; rebuild the plugin") from exc


def validate_manifest(data: object, where: str = MANIFEST) -> PluginManifest:
    """Check manifest data against the JSON Schema and the format's rules; return the dataclass."""
    if not HAS_JSONSCHEMA:
        raise NodePluginError("the Python package jsonschema is not installed",
                              hint="pip install jsonschema (make setup does it)")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    # The first errors are enough to report one; a huge manifest must not cost a report of all.
    errors = sorted(itertools.islice(validator.iter_errors(data), 64), key=lambda error: list(error.absolute_path))
    if errors:
        first = errors[0]
        location = "/".join(str(part) for part in first.absolute_path) or "(top)"
        raise NodePluginError(f"manifest does not match the plugin format {FORMAT} schema at {bounded(location, 80)}: "
                              f"{bounded(first.message)}", path=where,
                              hint="see docs/plugin-format.md; rebuild the plugin with ovirt-plugin-build")
    if not isinstance(data, dict):  # the schema says object; this keeps type checkers informed
        raise NodePluginError("manifest is not a JSON object", path=where)
    _check_created(data["created"], where)
    try:
        parse_range(data["node"]["versions"])
    except NodePluginError as exc:
        raise NodePluginError(f"node/versions: {exc.message}", path=where, hint=exc.hint) from exc
    files = collections.Counter(package["file"] for package in data["packages"])
    duplicates = sorted(name for name, count in files.items() if count > 1)
    if duplicates:
        raise NodePluginError(f"packages: {duplicates[0]} is listed twice", path=where)
    if not any(package["role"] == "plugin" for package in data["packages"]):
        raise NodePluginError("packages: no package has the role 'plugin'", path=where)
    if "/" in data["persist"]:
        raise NodePluginError("persist: '/' cannot be persisted", path=where, hint="list files or folders")
    packages = tuple(PackageEntry(**package) for package in data["packages"])
    return PluginManifest(
        name=data["name"], version=data["version"], vendor=data["vendor"], summary=data["summary"],
        node=NodeCompat(**data["node"]), packages=packages, recipe=RecipeEntry(**data["recipe"]),
        created=data["created"], kind=data["kind"], persist=tuple(data["persist"]),
        allowed_path_overrides=tuple(data["allowed_path_overrides"]), format=data["format"])


def parse_manifest(raw: bytes, where: str = MANIFEST) -> PluginManifest:
    """Decode (strictly, see load_manifest_json) and validate manifest.json bytes."""
    return validate_manifest(load_manifest_json(raw, where), where)


# ----------------------------------------------------------------------------------------------
# Writing


class _HashingSink(io.RawIOBase):
    """A write-only stream that hashes and counts what passes, optionally into a file."""

    def __init__(self, target=None) -> None:
        super().__init__()
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += len(view)
        if self.target is not None:
            self.target.write(view)
        return len(view)


@dataclass(frozen=True)
class Member:
    """One member to write: its name and either its bytes or the file it comes from."""

    name: str
    data: bytes | None = None
    source: str | None = None


@dataclass(frozen=True)
class WriteResult:
    path: str
    sha256: str
    size: int
    changed: bool


def _tarinfo(name: str, size: int, mtime: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = mtime
    return info


def _write_tar(sink: io.RawIOBase, members: list[Member], mtime: int) -> None:
    buffered = io.BufferedWriter(sink, buffer_size=_CHUNK)
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffered, mtime=0, compresslevel=9) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            directories = sorted({member.name.rsplit("/", 1)[0] for member in members if "/" in member.name})
            entries = [(name, None) for name in directories] + [(member.name, member) for member in members]
            for name, member in sorted(entries, key=lambda entry: entry[0]):
                if member is None:
                    archive.addfile(_tarinfo(name, 0, mtime, directory=True))
                elif member.data is not None:
                    archive.addfile(_tarinfo(name, len(member.data), mtime), io.BytesIO(member.data))
                elif member.source is None:
                    raise NodePluginError(f"member {excerpt(name)} has neither bytes nor a source file",
                                          hint="give each Member its data or its source")
                else:
                    with open(member.source, "rb") as handle:
                        size = os.fstat(handle.fileno()).st_size
                        archive.addfile(_tarinfo(name, size, mtime), handle)
    buffered.flush()


def tarball_digest(members: list[Member], mtime: int) -> tuple[str, int]:
    """sha256 and size the tarball of these members would have, writing nothing."""
    sink = _HashingSink()
    _write_tar(sink, members, mtime)
    return sink.digest.hexdigest(), sink.size


def write_tarball(dest: str, members: list[Member], mtime: int) -> WriteResult:
    """Write a reproducible tarball next to ``dest`` and rename it into place.

    An existing file with the same bytes is left alone (changed false).
    """
    folder = os.path.dirname(os.path.abspath(dest))
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{os.path.basename(dest)}.", delete=False)
    try:
        with handle:
            sink = _HashingSink(handle)
            _write_tar(sink, members, mtime)
        sha256 = sink.digest.hexdigest()
        if os.path.isfile(dest) and file_sha256(dest) == sha256:
            os.unlink(handle.name)
            return WriteResult(dest, sha256, sink.size, False)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, dest)
    except BaseException:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
        raise
    return WriteResult(dest, sha256, sink.size, True)


# ----------------------------------------------------------------------------------------------
# Reading


def _refuse(path: str, member: str, rule: str, hint: str | None = None) -> NodePluginError:
    return NodePluginError(f"member {excerpt(member)} refused: {rule}", path=path,
                           hint=hint or "the plugin is damaged or was tampered with; get it again from the vendor")


# tarfile turns it into ReadError, which _scan reports. typeshed's tarfile lacks this (undocumented) class.
_HEADER_ERROR = tarfile.SubsequentHeaderError  # type: ignore[attr-defined]
_SPARSE = tarfile.GNUTYPE_SPARSE
_EXTENDED_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                     tarfile.SOLARIS_XHDTYPE)
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
MAX_EXTENDED_HEADERS_IN_A_ROW = 4


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member header, refusing what tarfile would read without a bound before any rule of ours runs:
    a large or endless chain of extended (pax, GNU long name) headers, and sparse maps (GNU and pax)."""

    def _proc_member(self, tarfile):  # tarfile's own parameter name; pylint: disable=redefined-outer-name
        if self.type in _EXTENDED_HEADERS:
            in_a_row = getattr(tarfile, "_extended_headers_in_a_row", 0) + 1
            tarfile._extended_headers_in_a_row = in_a_row
            if in_a_row > MAX_EXTENDED_HEADERS_IN_A_ROW:
                raise _HEADER_ERROR(f"more than {MAX_EXTENDED_HEADERS_IN_A_ROW} extended headers in a row")
            if self.size > MAX_EXTENDED_HEADER_BYTES:
                raise _HEADER_ERROR(f"an extended header of {self.size} bytes (at most {MAX_EXTENDED_HEADER_BYTES})")
        elif self.type == _SPARSE:
            raise _HEADER_ERROR("a sparse member")
        else:
            tarfile._extended_headers_in_a_row = 0
        return super()._proc_member(tarfile)

    def _proc_gnusparse_00(self, *args):
        raise _HEADER_ERROR("a sparse member")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


def _check_name(path: str, name: str) -> None:
    if name.startswith("/"):
        raise _refuse(path, name, "absolute name")
    parts = name.split("/")
    if ".." in parts:
        raise _refuse(path, name, "'..' in name")
    if any(part in ("", ".") for part in parts) or "\\" in name or "\x00" in name:
        raise _refuse(path, name, "name is not in canonical form (empty or '.' component, or backslash)")


def _check_type(path: str, info: tarfile.TarInfo) -> None:
    if info.issym():
        raise _refuse(path, info.name, f"symbolic link (to {excerpt(info.linkname)})")
    if info.islnk():
        raise _refuse(path, info.name, f"hard link (to {excerpt(info.linkname)})")
    if info.ischr() or info.isblk():
        raise _refuse(path, info.name, "device file")
    if info.isfifo():
        raise _refuse(path, info.name, "fifo")
    if info.issparse() or not (info.isreg() or info.isdir()):
        raise _refuse(path, info.name, f"unsupported member type {info.type!r}")


@dataclass
class _ScanState:
    manifest: PluginManifest | None = None
    manifest_bytes: bytes = b""
    signature: bytes | None = None
    recipe_text: str = ""
    seen: set = field(default_factory=set)
    total: int = 0
    written: list = field(default_factory=list)
    mtimes: set = field(default_factory=set)


class _Extractor:
    """Writes verified members under a folder, never following links, never overwriting."""

    def __init__(self, dest_dir: str) -> None:
        self.dest_dir = dest_dir
        os.makedirs(dest_dir, exist_ok=True)
        self.dir_fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.written: list[str] = []
        self.made_dirs: list[str] = []

    def open(self, name: str):
        parent_fd, base = self.dir_fd, name
        if "/" in name:
            directory, base = name.split("/", 1)
            try:
                os.mkdir(directory, 0o755, dir_fd=self.dir_fd)
                self.made_dirs.append(directory)
            except FileExistsError:
                pass
            parent_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.dir_fd)
        try:
            descriptor = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=parent_fd)
        finally:
            if parent_fd != self.dir_fd:
                os.close(parent_fd)
        self.written.append(name)
        return os.fdopen(descriptor, "wb")

    def path(self, name: str) -> str:
        return os.path.join(self.dest_dir, name)

    def discard(self) -> None:
        for name in reversed(self.written):
            try:
                os.unlink(name, dir_fd=self.dir_fd)
            except OSError:
                pass
        for directory in reversed(self.made_dirs):
            try:
                os.rmdir(directory, dir_fd=self.dir_fd)
            except OSError:
                pass

    def close(self) -> None:
        os.close(self.dir_fd)


def _read_member(path: str, archive: tarfile.TarFile, info: tarfile.TarInfo, expected_size: int,
                 sink=None, keep_prefix: int = 0) -> tuple[str, int, bytes]:
    """Stream a member: sha256 and size counted from the bytes read; the first keep_prefix bytes kept."""
    stream = archive.extractfile(info)
    if stream is None:  # _check_type lets through only regular files, which tarfile always opens
        raise _refuse(path, info.name, "not a regular file")
    digest, count, prefix = hashlib.sha256(), 0, bytearray()
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        count += len(chunk)
        if count > expected_size:
            raise _refuse(path, info.name, f"larger than the {expected_size} bytes the manifest lists")
        digest.update(chunk)
        if len(prefix) < keep_prefix:
            prefix += chunk[:keep_prefix - len(prefix)]
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), count, bytes(prefix)


def _check_rpm_header(path: str, name: str, package: PackageEntry, rpm_file: str | None, prefix: bytes) -> None:
    """The RPM's header (read from the extracted file, or else from the member's first bytes) names the package."""
    try:
        header = read_header(rpm_file) if rpm_file else read_header_bytes(prefix, f"{path}: {name}")
    except NodePluginError as exc:
        raise _refuse(path, name, f"not a readable RPM ({bounded(exc.message)})") from exc
    if header.nevra != package.nevra or header.name != package.name:
        raise _refuse(path, name, f"RPM header says {excerpt(header.nevra)}, the manifest says {package.nevra}")


def _scan(path: str, limits: Limits, extractor: _Extractor | None) -> tuple[_ScanState, PluginManifest]:
    """Every member checked (and written by the extractor, if any); the state of the scan and its manifest."""
    state = _ScanState()
    expected: dict[str, PackageEntry] = {}
    try:
        archive = tarfile.open(path, mode="r|gz", tarinfo=_BoundedTarInfo)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise NodePluginError(f"not a gzip'd tar plugin ({bounded(str(exc))})", path=path) from exc
    with archive:
        try:
            for count, info in enumerate(archive, start=1):
                _scan_member(path, archive, info, count, limits, state, expected, extractor)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise NodePluginError(f"the tarball is damaged ({bounded(str(exc))})", path=path,
                                  hint="get the plugin again from the vendor") from exc
    manifest = state.manifest
    if manifest is None:
        raise NodePluginError("no manifest.json: not a plugin", path=path)
    missing = sorted((set(expected) | {manifest.recipe.file}) - state.seen)
    if missing:
        raise _refuse(path, missing[0], "listed in manifest.json but missing from the tarball")
    return state, manifest


def _scan_member(path: str, archive: tarfile.TarFile, info: tarfile.TarInfo, count: int, limits: Limits,
                 state: _ScanState, expected: dict[str, PackageEntry], extractor: _Extractor | None) -> None:
    name = info.name
    _check_name(path, name)
    _check_type(path, info)
    if name in state.seen:
        raise _refuse(path, name, "appears twice")
    state.seen.add(name)
    state.mtimes.add(int(info.mtime))
    if count > limits.max_members:
        raise _refuse(path, name, f"more than {limits.max_members} members")
    if count == 1 and name != MANIFEST:
        raise _refuse(path, name, "manifest.json must be the first member")
    if info.isdir():
        if name != RPMS_DIR:
            raise _refuse(path, name, "not listed in manifest.json (the only folder is rpms/)")
        return
    manifest = state.manifest  # None only while the first member, manifest.json, is read
    recipe_sha256 = None
    if name == MANIFEST:
        bound = limits.max_manifest_bytes
    elif manifest is None:
        raise _refuse(path, name, "manifest.json must be the first member")
    elif name == SIGNATURE:
        bound = limits.max_signature_bytes
    elif name == manifest.recipe.file:
        bound = limits.max_recipe_bytes
        recipe_sha256 = manifest.recipe.sha256
    elif name in expected:
        bound = expected[name].size
    else:
        raise _refuse(path, name, "not listed in manifest.json")
    if info.size > min(bound, limits.max_member_bytes):
        raise _refuse(path, name, f"oversize: {info.size} bytes, at most {min(bound, limits.max_member_bytes)}"
                      " allowed", hint="raise the limit only for a plugin you trust")
    state.total += info.size
    if state.total > limits.max_total_bytes:
        raise _refuse(path, name, f"the members add up to more than {limits.max_total_bytes} bytes")
    if name in expected:
        package = expected[name]
        sink = extractor.open(name) if extractor else None
        try:
            digest, size, prefix = _read_member(path, archive, info, package.size, sink,
                                                0 if extractor else limits.max_rpm_header_bytes)
        finally:
            if sink:
                sink.close()
        if size != package.size or digest != package.sha256:
            raise _refuse(path, name, "digest mismatch: its size or sha256 differs from manifest.json")
        _check_rpm_header(path, name, package, extractor.path(name) if extractor else None, prefix)
        return
    _digest, size, content = _read_member(path, archive, info, bound, None, bound)
    if size != info.size:
        raise _refuse(path, name, f"holds {size} bytes, its tar header says {info.size}")
    if name == MANIFEST:
        state.manifest_bytes = content
        state.manifest = parse_manifest(content, where=f"{path}: {MANIFEST}")
        expected.update({package.file: package for package in state.manifest.packages})
    elif name == SIGNATURE:
        state.signature = content
    else:
        if hashlib.sha256(content).hexdigest() != recipe_sha256:
            raise _refuse(path, name, "digest mismatch: its sha256 differs from manifest.json")
        state.recipe_text = decode_recipe(content, f"{path}: {name}", limits.max_recipe_bytes)
    if extractor:
        with extractor.open(name) as handle:
            handle.write(content)


def check_recipe_repos(recipe: Recipe, where: str) -> None:
    """A plugin's recipe may only name its own rpms/ folder as a repository."""
    for repo in recipe.repos:
        if repo.path.rstrip("/") != RPMS_DIR:
            raise NodePluginError(f"line {repo.lineno}: repo '{repo.name}' points at '{repo.baseurl}'",
                                  path=where, hint=f"a plugin's recipe may only use --baseurl=file://{RPMS_DIR}")


@dataclass
class PluginArchive:
    """A plugin that passed every reading rule; extract() writes its verified members."""

    path: str
    sha256: str
    size: int
    manifest: PluginManifest
    manifest_bytes: bytes
    recipe: Recipe
    recipe_text: str
    signature: bytes | None
    signer: str | None
    limits: Limits = field(default_factory=Limits)
    members_mtime: int | None = None

    def extract(self, dest_dir: str) -> list[str]:
        """Write manifest, signature, recipe and RPMs under dest_dir (verified again while writing).

        The members must not exist yet; on any refusal, what was written is removed.
        """
        try:
            extractor = _Extractor(dest_dir)
        except OSError as exc:
            raise NodePluginError(f"cannot extract the plugin: {exc.strerror}", path=dest_dir) from exc
        try:
            state, _manifest = _scan(self.path, self.limits, extractor)
            if state.manifest_bytes != self.manifest_bytes:
                raise NodePluginError("the plugin changed since it was opened", path=self.path)
        except BaseException as exc:
            extractor.discard()
            if isinstance(exc, OSError):
                raise NodePluginError(f"cannot extract {self.path} here: {exc.strerror}", path=dest_dir,
                                      hint="extract into an empty folder on a writable file system with room") from exc
            raise
        finally:
            extractor.close()
        return [os.path.join(dest_dir, name) for name in sorted(extractor.written)]


def install_set(archive: PluginArchive, folder: str, *, allow_unlisted_paths: bool = False) -> list[RpmHeader]:
    """The RPMs (extracted under ``folder``) that the recipe installs: its %packages, or the plugin's own
    packages, with the shipped dependencies, minus exclusions; each file checked against the allowed paths
    (the plugin's kind and its vendor's overrides) unless ``allow_unlisted_paths``."""
    recipe, manifest = archive.recipe, archive.manifest
    wanted = set(recipe.packages) or {package.name for package in manifest.plugin_packages}
    unknown = sorted(wanted - {package.name for package in manifest.packages})
    if unknown:
        raise NodePluginError(f"%packages names {', '.join(unknown)}, which the plugin does not ship",
                              path=archive.path, hint="every package of the recipe must be under rpms/")
    chosen = [package for package in manifest.packages
              if (package.name in wanted or package.role == "dependency") and package.name not in recipe.excluded]
    headers = [read_header(os.path.join(folder, package.file)) for package in chosen]
    if not allow_unlisted_paths:
        try:
            check_paths(headers, allowed_paths(manifest.kind, manifest.allowed_path_overrides))
        except NodePluginError as exc:
            raise NodePluginError(f"plugin {manifest.name}: {exc.message}", path=archive.path, hint=exc.hint,
                                  details=exc.details) from exc
    return headers


def unsigned_packages(archives: list[PluginArchive]) -> list[str]:
    """``<plugin>: <nevra>`` of every package the plugins ship unsigned."""
    return [f"{archive.manifest.name}: {package.nevra}" for archive in archives
            for package in archive.manifest.packages if not package.signed]


def require_signed_packages(archives: list[PluginArchive], where: str) -> None:
    """The policy require_signed: refuse plugins that ship unsigned packages, naming each."""
    unsigned = unsigned_packages(archives)
    if unsigned:
        raise NodePluginError("signed packages are required, but these are unsigned: " + ", ".join(unsigned),
                              path=where, hint="ask the vendor for signed RPMs, or set require_signed=false "
                                               "(a rebuilt image is then marked '(Edited, Unsigned)')")


def open_plugin(path: str, *, keyring: str | None = None, require_signature: bool = False,
                limits: Limits | None = None) -> PluginArchive:
    """Read and check a plugin tarball (nothing is written); raise NodePluginError on any refusal.

    With a keyring, manifest.json.asc must exist and verify with one of its keys.
    """
    limits = limits or Limits()
    try:
        info = os.stat(path)
    except OSError as exc:
        raise NodePluginError(f"cannot read the plugin: {exc.strerror}", path=path) from exc
    if not stat.S_ISREG(info.st_mode):
        raise NodePluginError("not a regular file", path=path)
    if require_signature and not keyring:
        raise NodePluginError("a signature is required but no keyring was given", path=path,
                              hint="give the vendor's public key as the keyring")
    # The keyring first: a missing or useless keyring is the user's problem to hear about, not "not signed".
    keys = TemporaryKeyring(keyring) if keyring else None
    try:
        try:
            state, manifest = _scan(path, limits, None)
        except OSError as exc:
            raise NodePluginError(f"cannot read the plugin: {exc.strerror}", path=path) from exc
        recipe = parse_recipe(state.recipe_text, source=f"{path}: {RECIPE}", max_bytes=limits.max_recipe_bytes)
        check_recipe_repos(recipe, f"{path}: {RECIPE}")
        signer = None
        if keys is not None:
            if state.signature is None:
                raise _refuse(path, SIGNATURE, "missing: the plugin is not signed, and a keyring was given",
                              hint="ask the vendor for a signed plugin, or read it without a keyring")
            try:
                signer = keys.verify_detached(state.signature, state.manifest_bytes, f"{path}: {SIGNATURE}")
            except NodePluginError as exc:
                raise _refuse(path, SIGNATURE, exc.message, hint=exc.hint) from exc
    finally:
        if keys is not None:
            keys.close()
    return PluginArchive(path=path, sha256=file_sha256(path), size=info.st_size, manifest=manifest,
                         manifest_bytes=state.manifest_bytes, recipe=recipe, recipe_text=state.recipe_text,
                         signature=state.signature, signer=signer, limits=limits,
                         members_mtime=next(iter(state.mtimes)) if len(state.mtimes) == 1 else None)
