# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The packages and plugins installed in a Node image, read without booting it and without libguestfs.

The image's rpm database folder is copied out of the root file system (read with _extfs: from the
ISO that is a lazy read of the squashfs, no unpacking) and queried with the host's rpm bindings: rpm's
sqlite backend, or for Fedora 17, EL6 and EL7 images their Berkeley DB ``Packages`` through rpm's
read-only ``bdb_ro`` backend. Each package is read with its file list, as
rpm itself uses it to meet file requirements. Plugin records are the edit-node files
``/etc/ovirt-plugins.d/<name>``. rpmdb_write_problem tells, from the image's own rpm configuration,
whether the image's rpm can write its database (a build installs packages with it).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable

from ._blockio import FileRegion
from ._errors import NodePluginError
from ._outputs import run_dir
from ._extfs import ExtFilesystem
from ._nodeiso import NodeIso
from ._records import parse_plugin_record as records_parse
from ._rpmdeps import InstalledPackage

try:
    import rpm
    HAS_RPM = True
except ImportError:  # pragma: no cover - reported when used
    HAS_RPM = False

RPMDB_PATH = "/var/lib/rpm"
PLUGIN_RECORDS = "/etc/ovirt-plugins.d"
# Files of the records folder that plugins ship and that are not records of installed packages.
PLUGIN_SIDE_FILES = (".firewall", ".minimize", ".logs")
# The file that tells each database format apart, in the order rpm >= 4.16 looks for them, and the
# rpm backend that reads it on the host (Berkeley DB only read-only: rpm >= 4.16 cannot write it).
RPMDB_FORMATS = (("rpmdb.sqlite", "sqlite", "sqlite"), ("Packages", "bdb", "bdb_ro"), ("Packages.db", "ndb", "ndb"))
_FORMAT_TEXT = {"sqlite": "sqlite (rpmdb.sqlite)", "bdb": "Berkeley DB (Packages)", "ndb": "ndb (Packages.db)"}
# Where an image's rpm reads its macros, in rpm's order (a later definition wins). Platform and
# user macro files are left out: a distribution does not set the database backend there.
RPM_MACRO_FILES = ("/usr/lib/rpm/macros", "/usr/lib/rpm/macros.d/macros.*", "/usr/lib/rpm/redhat/macros",
                   "/etc/rpm/macros.*", "/etc/rpm/macros")
_DB_BACKEND = re.compile(rb"^[ \t]*%_db_backend[ \t]+(\S[^\n]*?)[ \t]*$", re.MULTILINE)
_MACRO_FILE_LIMIT = 4 << 20
_RECORD_LIMIT = 64 << 10


@dataclasses.dataclass(frozen=True)
class InstalledPlugin:
    """An edit-node record: ``Name:``, ``Version:<version>-<release>.<arch>``, ``Install Date:``."""

    name: str
    version: str
    install_date: str
    record: str


@dataclasses.dataclass(frozen=True)
class RpmDatabase:
    """What was read from an image's rpm database: its format, and every package with its files."""

    format: str  # "sqlite", "bdb" (Berkeley DB) or "ndb"
    packages: tuple[InstalledPackage, ...]
    package_count: int
    file_count: int

    @classmethod
    def of(cls, database_format: str, packages: Iterable[InstalledPackage]) -> RpmDatabase:
        ordered = tuple(sorted(packages, key=lambda package: package.nevra))
        return cls(database_format, ordered, len(ordered), sum(len(package.files) for package in ordered))

    def facts(self) -> dict:
        """The summary for facts and reports: format and counts, without the package list."""
        return {"format": self.format, "packages": self.package_count, "files": self.file_count}


def _text(value) -> str:
    """Valid text: rpm hands undecodable bytes over as surrogates, which are replaced here."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def rpmdb_format_from_names(names: Iterable[str]) -> str | None:
    """The database format ("sqlite", "bdb", "ndb") that a listing of /var/lib/rpm shows, or None."""
    present = set(names)
    return next((database_format for file_name, database_format, _backend in RPMDB_FORMATS
                 if file_name in present), None)


def read_rpm_database(dbpath: str) -> RpmDatabase:
    """The installed packages, with their provides and file lists, of the rpm database in folder ``dbpath``."""
    if not HAS_RPM:
        raise NodePluginError("the rpm Python bindings are not installed",
                              hint="install python3-rpm (make setup does it) and use the system Python")
    database_format = rpmdb_format_from_names(os.listdir(dbpath)) if os.path.isdir(dbpath) else None
    if database_format is None:
        raise NodePluginError("no rpm database in this folder (neither rpmdb.sqlite nor Packages)", path=dbpath,
                              hint="the image has no /var/lib/rpm database; it cannot be inspected")
    backend = next(backend for _file, known, backend in RPMDB_FORMATS if known == database_format)
    rpm.addMacro("_dbpath", dbpath)
    rpm.addMacro("_db_backend", backend)
    try:
        transaction = rpm.TransactionSet()
        transaction.setVSFlags(getattr(rpm, "RPMVSF_MASK_NOSIGNATURES", 0) | getattr(rpm, "_RPMVSF_NOSIGNATURES", 0))
        if transaction.openDB() != 0:
            raise NodePluginError(f"rpm cannot open the image's {_FORMAT_TEXT[database_format]} database",
                                  path=dbpath, hint="the host's rpm must be >= 4.16 for sqlite and built with "
                                                    "bdb_ro for Berkeley DB")
        packages = []
        for header in transaction.dbMatch():
            if _text(header[rpm.RPMTAG_NAME]) == "gpg-pubkey":
                continue
            provides = [_text(dep.DNEVR())[2:] for dep in rpm.ds(header, "providename")]
            epoch = header[rpm.RPMTAG_EPOCH]
            packages.append(InstalledPackage(
                name=_text(header[rpm.RPMTAG_NAME]), epoch=int(epoch) if epoch is not None else None,
                version=_text(header[rpm.RPMTAG_VERSION]), release=_text(header[rpm.RPMTAG_RELEASE]),
                arch=_text(header[rpm.RPMTAG_ARCH] or "noarch"), provides=tuple(provides),
                install_time=header[rpm.RPMTAG_INSTALLTIME],
                files=tuple(_text(name) for name in header[rpm.RPMTAG_FILENAMES])))
        transaction.closeDB()
    finally:
        rpm.delMacro("_db_backend")
        rpm.delMacro("_dbpath")
    return RpmDatabase.of(database_format, packages)


def rpm_database_of(root: ExtFilesystem, workdir: str) -> RpmDatabase:
    """The rpm database of a root file system (its /var/lib/rpm copied to ``workdir``, read, then removed)."""
    if not root.exists(RPMDB_PATH) or root.stat(RPMDB_PATH).kind != "dir":
        raise NodePluginError(f"the root image has no {RPMDB_PATH}", path=root.name,
                              hint="this image carries no rpm database to inspect")
    dbdir = os.path.join(tempfile.mkdtemp(prefix="rpmdb-", dir=workdir), "rpm")
    try:
        root.copy_tree(RPMDB_PATH, dbdir)
        return read_rpm_database(dbdir)
    finally:
        shutil.rmtree(os.path.dirname(dbdir), ignore_errors=True)


def rpm_database_from_root_image(root_image: str, workdir: str) -> RpmDatabase:
    """The rpm database of an ext root image file."""
    with FileRegion(root_image) as source:
        return rpm_database_of(ExtFilesystem(source, name=root_image), workdir)


def image_packages_from_root_image(root_image: str, workdir: str) -> list[InstalledPackage]:
    """Installed packages of an ext root image, sorted by NEVRA (rpm_database_from_root_image's packages)."""
    return list(rpm_database_from_root_image(root_image, workdir).packages)


def rpm_database_from_iso(iso: str, workdir: str) -> RpmDatabase:
    """The rpm database of a Node ISO's image, read in place (only the blocks of /var/lib/rpm are decompressed)."""
    with NodeIso(iso) as node:
        return rpm_database_of(node.root_filesystem(), workdir)


def _is_iso(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(16 * 2048 + 1)
        return handle.read(5) == b"CD001"


def rpm_database(image: str, workdir: str | None = None) -> RpmDatabase:
    """The rpm database of a Node ISO or of its ext root image (told apart by their signatures)."""
    if not os.path.isfile(image):
        raise NodePluginError("no such ISO or root image", path=image, hint="check the path")
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="image-packages-", dir=run_dir())
    try:
        if _is_iso(image):
            return rpm_database_from_iso(image, workdir)
        return rpm_database_from_root_image(image, workdir)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def image_packages(image: str, workdir: str | None = None) -> list[InstalledPackage]:
    """Installed packages of a Node ISO or of its ext root image, sorted by NEVRA."""
    return list(rpm_database(image, workdir).packages)


def parse_plugin_record(text: str, *, record: str) -> InstalledPlugin:
    """Parse one edit-node record (three ``Key:value`` lines, no space after the colon)."""
    fields = records_parse(text) or {}
    name = fields.get("Name") or os.path.basename(record)
    return InstalledPlugin(name=name, version=fields.get("Version", ""), install_date=fields.get("Install Date", ""),
                           record=record)


def installed_plugins(root: ExtFilesystem) -> list[InstalledPlugin]:
    """Plugins recorded in /etc/ovirt-plugins.d of a root file system (side files of plugins ignored)."""
    if not root.exists(PLUGIN_RECORDS):
        return []
    plugins = []
    for entry in sorted(root.listdir(PLUGIN_RECORDS), key=lambda item: item.name):
        if entry.kind != "file" or entry.name.endswith(PLUGIN_SIDE_FILES) or entry.name.startswith("."):
            continue
        record = f"{PLUGIN_RECORDS}/{entry.name}"
        text = root.read_file(record, limit=_RECORD_LIMIT).decode("utf-8", "replace")
        plugins.append(parse_plugin_record(text, record=record))
    return plugins


def image_file_reader(root: ExtFilesystem) -> Callable[[str], bytes | None]:
    """An image path -> bytes reader for rpmdb_write_problem (None for what is absent or not a file)."""
    def read(path: str) -> bytes | None:
        if not root.exists(path) or root.stat(path).kind != "file":
            return None
        return root.read_file(path, limit=_MACRO_FILE_LIMIT)
    return read


def image_dir_lister(root: ExtFilesystem) -> Callable[[str], list[str] | None]:
    """An image folder -> names lister for rpmdb_write_problem (None when the folder is absent)."""
    def listdir(path: str) -> list[str] | None:
        if not root.exists(path) or root.stat(path).kind != "dir":
            return None
        return [entry.name for entry in root.listdir(path)]
    return listdir


def _macro_file_paths(list_image_dir: Callable[[str], Iterable[str] | None] | None) -> list[str]:
    """RPM_MACRO_FILES with their globs expanded through list_image_dir (skipped without it), in rpm's order."""
    paths = []
    for pattern in RPM_MACRO_FILES:
        folder, _sep, name = pattern.rpartition("/")
        if not name.endswith("*"):
            paths.append(pattern)
        elif list_image_dir is not None:
            prefix = name[:-1]
            # rpm skips package manager leftovers when it expands a macro glob.
            paths.extend(f"{folder}/{entry}" for entry in sorted(list_image_dir(folder) or ())
                         if entry.startswith(prefix) and entry != prefix and "/" not in entry
                         and not entry.endswith((".rpmnew", ".rpmsave", ".rpmorig", "~")))
    return paths


def rpmdb_write_problem(database_format: str, read_image_file: Callable[[str], bytes | None],
                        list_image_dir: Callable[[str], Iterable[str] | None] | None = None) -> str | None:
    """Why the image's own rpm cannot write its rpm database (a build installs with it), or None when it can.

    Decided from the image's files alone: ``database_format`` is RpmDatabase.format (or
    rpmdb_format_from_names of /var/lib/rpm); the image's rpm macros are read with ``read_image_file``
    (image path -> bytes, None when absent), and ``list_image_dir`` (image folder -> names, None when
    absent), when given, adds the macros.d and /etc/rpm/macros.* files. The last ``%_db_backend`` wins;
    none at all means an rpm older than 4.14, which writes Berkeley DB only.
    """
    if database_format not in _FORMAT_TEXT:
        raise ValueError(f"unknown rpm database format {database_format!r}")
    backend, found_macros = None, False
    for path in _macro_file_paths(list_image_dir):
        content = read_image_file(path)
        if content is None:
            continue
        found_macros = True
        for match in _DB_BACKEND.finditer(content[:_MACRO_FILE_LIMIT]):
            backend = match.group(1).decode("utf-8", "replace")
    database = _FORMAT_TEXT[database_format]
    if not found_macros:
        return (f"the image keeps its rpm database as {database}, but it has no {RPM_MACRO_FILES[0]}: no rpm of its "
                f"own to install plugin packages with. Needed: an image with a working rpm")
    writes = {None: "bdb", "bdb": "bdb", "sqlite": "sqlite", "ndb": "ndb"}
    if backend is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,32}", backend):
        return (f"cannot tell which database backend the image's rpm uses (%_db_backend is {backend[:40]!r}); its "
                f"rpm database is {database}. Needed: a plain %_db_backend in the image's rpm macros")
    if writes.get(backend) == database_format:
        return None
    if backend is None:
        rpm_text = "its rpm defines no %_db_backend (rpm older than 4.14), so it writes Berkeley DB only"
    elif backend in writes:
        rpm_text = f"its rpm is set up with %_db_backend {backend}, so it writes {_FORMAT_TEXT[writes[backend]]}"
        if database_format == "bdb":
            rpm_text += " and reads Berkeley DB only through the read-only bdb_ro backend (rpm 4.16 or later)"
    else:
        rpm_text = f"its rpm is set up with %_db_backend {backend}, which does not write a database"
    target = _FORMAT_TEXT[writes.get(backend, "sqlite")]
    return (f"the image keeps its rpm database as {database}, but {rpm_text}; a build installs plugin packages "
            f"with the image's own rpm, so it cannot add them to this image. Needed: an image whose own rpm writes "
            f"{database} (the rpm its release shipped), or its database converted to {target} inside the image "
            f"(rpmdb --rebuilddb with that rpm) before plugins are added")
