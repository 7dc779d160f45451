# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The packages and plugins installed in a Node image, read without booting it and without libguestfs.

The image's rpm database folder is copied out of the ext root image with debugfs and queried with
the host's rpm bindings (the database is rpm's sqlite backend; old images' Berkeley DB ``Packages``
is read with the read-only ``bdb_ro`` backend where the host's rpm has it). Plugin records are the
edit-node files ``/etc/ovirt-plugins.d/<name>``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

from ._errors import NodePluginError
from ._liveos import dump_root_tree, extract_root_image, list_root_dir, read_root_file
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


@dataclasses.dataclass(frozen=True)
class InstalledPlugin:
    """An edit-node record: ``Name:``, ``Version:<version>-<release>.<arch>``, ``Install Date:``."""

    name: str
    version: str
    install_date: str
    record: str


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_rpmdb(dbpath: str) -> list[InstalledPackage]:
    """Installed packages of the rpm database in folder ``dbpath``, sorted by NEVRA."""
    if not HAS_RPM:
        raise NodePluginError("the rpm Python bindings are not installed",
                              hint="install python3-rpm (make setup does it) and use the system Python")
    if os.path.isfile(os.path.join(dbpath, "rpmdb.sqlite")):
        backend = "sqlite"
    elif os.path.isfile(os.path.join(dbpath, "Packages")):
        backend = "bdb_ro"
    else:
        raise NodePluginError("no rpm database in this folder (neither rpmdb.sqlite nor Packages)", path=dbpath,
                              hint="the image has no /var/lib/rpm database; it cannot be inspected")
    rpm.addMacro("_dbpath", dbpath)
    rpm.addMacro("_db_backend", backend)
    try:
        transaction = rpm.TransactionSet()
        transaction.setVSFlags(getattr(rpm, "RPMVSF_MASK_NOSIGNATURES", 0) | getattr(rpm, "_RPMVSF_NOSIGNATURES", 0))
        if transaction.openDB() != 0:
            raise NodePluginError(f"rpm cannot open the image's {backend} database", path=dbpath,
                                  hint="the host's rpm must be >= 4.16 for sqlite and built with bdb_ro for old images")
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
                install_time=header[rpm.RPMTAG_INSTALLTIME]))
        transaction.closeDB()
    finally:
        rpm.delMacro("_db_backend")
        rpm.delMacro("_dbpath")
    return sorted(packages, key=lambda package: package.nevra)


def image_packages_from_root_image(root_image: str, workdir: str) -> list[InstalledPackage]:
    """Installed packages of an ext root image (its /var/lib/rpm copied to ``workdir`` with debugfs)."""
    if list_root_dir(root_image, RPMDB_PATH) is None:
        raise NodePluginError(f"the root image has no {RPMDB_PATH}", path=root_image,
                              hint="this image carries no rpm database to inspect")
    dbdir = tempfile.mkdtemp(prefix="rpmdb-", dir=workdir)
    try:
        return read_rpmdb(dump_root_tree(root_image, RPMDB_PATH, dbdir))
    finally:
        shutil.rmtree(dbdir, ignore_errors=True)


def image_packages_from_iso(iso: str, workdir: str) -> list[InstalledPackage]:
    """Installed packages of a Node ISO: the root image is unpacked into ``workdir`` (then removed)."""
    scratch = tempfile.mkdtemp(prefix="image-packages-", dir=workdir)
    try:
        root_image = extract_root_image(iso, scratch)
        return image_packages_from_root_image(root_image, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _is_iso(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(16 * 2048 + 1)
        return handle.read(5) == b"CD001"


def image_packages(image: str, workdir: str | None = None) -> list[InstalledPackage]:
    """Installed packages of a Node ISO or of its ext root image (told apart by their signatures)."""
    if not os.path.isfile(image):
        raise NodePluginError("no such ISO or root image", path=image, hint="check the path")
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="image-packages-")
    try:
        if _is_iso(image):
            return image_packages_from_iso(image, workdir)
        return image_packages_from_root_image(image, workdir)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_plugin_record(text: str, *, record: str) -> InstalledPlugin:
    """Parse one edit-node record (three ``Key:value`` lines, no space after the colon)."""
    fields = records_parse(text) or {}
    name = fields.get("Name") or os.path.basename(record)
    return InstalledPlugin(name=name, version=fields.get("Version", ""), install_date=fields.get("Install Date", ""),
                           record=record)


def installed_plugins(root_image: str) -> list[InstalledPlugin]:
    """Plugins recorded in /etc/ovirt-plugins.d of the root image (side files of plugins ignored)."""
    entries = list_root_dir(root_image, PLUGIN_RECORDS)
    if entries is None:
        return []
    plugins = []
    for entry in sorted(entries, key=lambda item: item.name):
        if not entry.is_file or entry.name.endswith(PLUGIN_SIDE_FILES) or entry.name.startswith("."):
            continue
        record = f"{PLUGIN_RECORDS}/{entry.name}"
        text = read_root_file(root_image, record).decode("utf-8", "replace")
        plugins.append(parse_plugin_record(text, record=record))
    return plugins
