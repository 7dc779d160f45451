# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Node an ISO holds: product, version and release, and where that answer came from.

Sources in order of trust: ``isolinux/version`` on the ISO (key=value, written at build time),
``/etc/default/version`` in the root image (its copy), ``/etc/system-release`` in the root image
(``<PRODUCT> release <VERSION> (<RELEASE>)``), and last the volume id
(``ovirt-node-iso-<version>-<release>``).
"""

from __future__ import annotations

import dataclasses
import re
import shlex

from ._errors import NodePluginError, quote
from ._iso import IsoReader, opened
from ._versions import parse_range
from ._extfs import ExtFilesystem

ISO_VERSION_FILE = "/isolinux/version"
ROOT_VERSION_FILE = "/etc/default/version"
SYSTEM_RELEASE = "/etc/system-release"
SOURCE_ISO_VERSION = "isolinux/version"
SOURCE_ROOT_VERSION = "/etc/default/version"
SOURCE_SYSTEM_RELEASE = "/etc/system-release"
SOURCE_VOLUME_ID = "volume id"

_RELEASE_LINE = re.compile(r"^(?P<product>.+?) release (?P<version>\S+) \((?P<release>[^)]*)\)(?P<rest>.*)$")
# A version file is a few hundred bytes; a bigger one is not read whole.
_MAX_VERSION_FILE = 64 * 1024
_VOLUME_ID = re.compile(r"^(?P<prefix>.+?)-iso-(?P<version>\d[^-]*)-(?P<release>.+)$")


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """Product, version and release of a Node image; ``source`` names the file (or volume id) used."""

    product: str | None
    version: str
    release: str
    source: str
    edited: bool = False
    fields: dict[str, str] = dataclasses.field(default_factory=dict)

    def incompatibility(self, product: str, versions: str) -> str | None:
        """Why a plugin made for ``product`` and Node ``versions`` (a range) does not fit this Node, or None."""
        if product and self.product and not self.is_product(product):
            return f"is for '{product}', not '{quote(self.product, 100)}'"
        if not parse_range(versions).admits(self.version, self.release):
            return f"needs Node {versions}, not {quote(self.version, 60)}-{quote(self.release, 60)}"
        return None

    def is_product(self, wanted: str) -> bool:
        """Whether a plugin's Node product names this Node: its PRODUCT, PRODUCT_SHORT, PRODUCT_CODE or PACKAGE."""
        names = {self.product or ""} | {self.fields.get(key, "") for key in ("PRODUCT_SHORT", "PRODUCT_CODE", "PACKAGE")}
        return wanted.lower() in {name.lower() for name in names if name}


def parse_version_file(text: str) -> dict[str, str]:
    """KEY=value lines (shell quoting allowed) of isolinux/version or /etc/default/version."""
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        try:
            words = shlex.split(value)
            value = " ".join(words)
        except ValueError:
            value = value.strip().strip("'\"")
        fields[key.strip()] = value
    return fields


def _from_fields(fields: dict[str, str], source: str) -> NodeInfo | None:
    if fields.get("VERSION") and fields.get("RELEASE"):
        return NodeInfo(product=fields.get("PRODUCT"), version=fields["VERSION"], release=fields["RELEASE"],
                        source=source, fields=fields)
    return None


def parse_system_release(text: str) -> NodeInfo | None:
    """``<PRODUCT> release <VERSION> (<RELEASE>)``, possibly followed by `` (Edited)``."""
    match = _RELEASE_LINE.match(text.strip().splitlines()[0] if text.strip() else "")
    if not match:
        return None
    return NodeInfo(product=match.group("product"), version=match.group("version"), release=match.group("release"),
                    source=SOURCE_SYSTEM_RELEASE, edited="Edited" in match.group("rest"))


def parse_volume_id(volume_id: str) -> NodeInfo | None:
    """``ovirt-node-iso-2.5.0-1.0.fc17`` -> version 2.5.0, release 1.0.fc17 (product: the prefix)."""
    match = _VOLUME_ID.match(volume_id)
    if not match:
        return None
    return NodeInfo(product=match.group("prefix"), version=match.group("version"), release=match.group("release"),
                    source=SOURCE_VOLUME_ID)


def _root_text(root: ExtFilesystem, path: str) -> str | None:
    try:
        return root.read_file(path, limit=_MAX_VERSION_FILE).decode("utf-8", "replace")
    except NodePluginError:
        return None


def node_info_from_root(root: ExtFilesystem) -> NodeInfo | None:
    """Version facts from the root file system alone (/etc/default/version, then /etc/system-release)."""
    text = _root_text(root, ROOT_VERSION_FILE)
    info = _from_fields(parse_version_file(text), SOURCE_ROOT_VERSION) if text else None
    if info:
        return info
    text = _root_text(root, SYSTEM_RELEASE)
    return parse_system_release(text) if text else None


def iso_version_fields(iso: str | IsoReader) -> dict[str, str] | None:
    """The fields of isolinux/version, or None when the ISO has none."""
    with opened(iso) as reader:
        if not reader.exists(ISO_VERSION_FILE):
            return None
        return parse_version_file(reader.read_bytes(ISO_VERSION_FILE, _MAX_VERSION_FILE).decode("utf-8", "replace"))


def node_info(iso: str | IsoReader, *, root: ExtFilesystem | None = None) -> NodeInfo:
    """Product/version/release of a Node ISO from the most trusted source available.

    The root file system is consulted only when isolinux/version lacks the facts and ``root`` (the
    image's ext3fs.img/rootfs.img, e.g. NodeIso.root_filesystem()) is given.
    """
    fields = iso_version_fields(iso)
    info = _from_fields(fields, SOURCE_ISO_VERSION) if fields else None
    if info:
        return info
    if root is not None:
        info = node_info_from_root(root)
        if info:
            return info
    with opened(iso) as reader:
        volume_id = reader.volume_id
    info = parse_volume_id(volume_id)
    if info:
        return info
    raise NodePluginError(f"cannot tell which Node this is: no isolinux/version, no version in the root image, and "
                          f"the volume id {volume_id!r} is not ovirt-node-iso-<version>-<release>", path=reader.path,
                          hint="is this an oVirt Node ISO?")
