# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an edit leaves behind for Node users and for the tools: records, manifests, build record.

Formats users expect (edit-node, see docs/field-facts.md):
- ``/etc/ovirt-plugins.d/<rpm name>``: ``Name:<name>``, ``Version:<version>-<release>.<arch>``,
  ``Install Date:<date>`` (no space after the colons); the Node's text UI lists plugins from them.
- ``isolinux/updateN/`` (N = earlier updates + 1): ``manifest-<kind>.txt``,
  ``delta-manifest-<kind>.txt`` (the change against the state before this edit) and
  ``installed_plugins``; ``isolinux/current-manifest-<kind>.txt`` are relative links to the newest.
  The same files go to ``/etc/ovirt-plugins-manifests.d/updateN/`` in the root filesystem.
- `` (Edited)`` or `` (Edited, Unsigned)`` appended to ``/etc/system-release``.
Ours on top: ``isolinux/ovirt-plugins-build.json``, the machine-readable build record (inputs'
digests, plugin manifests, options, tool version) that makes reruns and verification cheap.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from typing import TYPE_CHECKING

from ._errors import NodePluginError

if TYPE_CHECKING:  # the plugin reader (jsonschema, pykickstart) is loaded only when a record is parsed
    from ._plugin import PluginManifest

TOOL_NAME = "ovirt.node_plugins"
TOOL_VERSION = "1.0.0-dev0"
RECORDS_DIR = "/etc/ovirt-plugins.d"
IMAGE_MANIFESTS_DIR = "/etc/ovirt-plugins-manifests.d"
BUILD_RECORD_ISO_PATH = "isolinux/ovirt-plugins-build.json"
BUILD_RECORD_FORMAT = 1

# Manifest kinds in the order a Node ISO lists them; the last four are bzip2 content in a .txt name.
MANIFEST_KINDS = ("rpm", "srpm", "license", "file", "dir", "owns", "deps")
COMPRESSED_KINDS = frozenset(("file", "dir", "owns", "deps"))
_SIGNATURE = ("%|RSAHEADER?{%{RSAHEADER:pgpsig}}:{%|DSAHEADER?{%{DSAHEADER:pgpsig}}:"
              "{%|SIGPGP?{%{SIGPGP:pgpsig}}:{none}|}|}|")
# One rpm query for every manifest kind, run with the image's own rpm: each line is tagged with
# its kind, because under software emulation each rpm start costs about a second.
QUERY_FORMATS = {
    "rpm": "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} (" + _SIGNATURE + ")\\n",
    "srpm": "%{SOURCERPM}\\n",
    "license": "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} (%{LICENSE})\\n",
    "file": "[%{FILENAMES}\\n]",
    "dir": "[%{FILEMODES:perms} %{FILENAMES}\\n]",
    "owns": "[%{FILENAMES} %{=NAME}\\n]",
    "deps": "[%{=NAME}: %{REQUIRENAME}\\n]",
}


def combined_query() -> str:
    """An rpm --queryformat that prints every manifest kind at once, each line as '<kind>\\t<line>'."""
    parts = []
    for kind, query in QUERY_FORMATS.items():
        if query.startswith("["):
            parts.append("[" + kind + "\\t" + query[1:])
        else:
            parts.append(kind + "\\t" + query)
    return "".join(parts)


def split_combined(output: str) -> dict[str, list[str]]:
    """The manifests, by kind, from the output of combined_query() (normalized)."""
    raw: dict[str, list[str]] = {kind: [] for kind in MANIFEST_KINDS}
    for line in output.splitlines():
        kind, sep, rest = line.partition("\t")
        if sep and kind in raw:
            raw[kind].append(rest)
    return {kind: normalize_manifest(kind, lines) for kind, lines in raw.items()}


def nevras_of(rpm_manifest: list[str]) -> list[str]:
    """NEVRAs from manifest-rpm.txt lines ('name-version-release.arch (signature)')."""
    return sorted(line.split(" (", 1)[0] for line in rpm_manifest)


_UPDATE_DIR = re.compile(r"^update(\d+)$")


def plugin_record(name: str, evra: str, install_date: str) -> str:
    """The three-line record of one installed plugin package, as the Node's UI reads it."""
    return f"Name:{name}\nVersion:{evra}\nInstall Date:{install_date}\n"


def parse_plugin_record(text: str) -> dict[str, str] | None:
    """Fields of a record file, or None when it is not a plugin record (e.g. a .firewall file)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version", "Install Date"):
            fields[key] = value.strip()
    return fields if "Name" in fields else None


def normalize_manifest(kind: str, lines: Iterable[str]) -> list[str]:
    """Sorted, unique, non-empty lines; 'dir' keeps only directories, without their mode."""
    cleaned = set()
    for line in lines:
        line = line.rstrip()
        if not line or line.startswith("(none)"):
            continue
        if kind == "dir":
            perms, _sep, path = line.partition(" ")
            if not perms.startswith("d"):
                continue
            line = path
        cleaned.add(line)
    return sorted(cleaned)


def encode_manifest(kind: str, lines: list[str]) -> bytes:
    """File content of a manifest: text, bzip2-compressed for the large kinds."""
    text = "".join(line + "\n" for line in lines).encode("utf-8")
    return bz2.compress(text, 9) if kind in COMPRESSED_KINDS else text


def decode_manifest(kind: str, content: bytes) -> list[str]:
    """Lines of a manifest file as written by encode_manifest (or by a Node ISO build)."""
    if kind in COMPRESSED_KINDS and content[:3] == b"BZh":
        content = bz2.decompress(content)
    return [line for line in content.decode("utf-8", "replace").splitlines() if line]


def delta(before: list[str], after: list[str]) -> list[str]:
    """The change between two manifests: '- line' for removed, '+ line' for added, sorted by line."""
    old, new = set(before), set(after)
    changes = [(line, "-") for line in old - new] + [(line, "+") for line in new - old]
    return [f"{sign} {line}" for line, sign in sorted(changes)]


def next_update_number(existing_names: Iterable[str]) -> int:
    """N for the new isolinux/updateN: one more than the highest existing update."""
    numbers = [int(match.group(1)) for name in existing_names if (match := _UPDATE_DIR.match(name))]
    return max(numbers, default=0) + 1


def update_files(number: int, before: Mapping[str, list[str]], after: Mapping[str, list[str]],
                 installed_plugins: list[str]) -> dict[str, bytes]:
    """Files of isolinux/updateN/, by name: manifests, deltas and installed_plugins."""
    if number < 1:
        raise ValueError("update numbers start at 1")
    files = {}
    for kind in MANIFEST_KINDS:
        files[f"manifest-{kind}.txt"] = encode_manifest(kind, list(after.get(kind, [])))
        files[f"delta-manifest-{kind}.txt"] = encode_manifest(
            kind, delta(list(before.get(kind, [])), list(after.get(kind, []))))
    files["installed_plugins"] = "".join(line + "\n" for line in installed_plugins).encode("utf-8")
    return files


def current_manifest_links(number: int) -> dict[str, str]:
    """isolinux/current-manifest-<kind>.txt -> relative target in updateN."""
    return {f"current-manifest-{kind}.txt": f"update{number}/manifest-{kind}.txt" for kind in MANIFEST_KINDS}


def edited_system_release(text: str, *, unsigned: bool) -> str:
    """/etc/system-release with the edit-node mark: ' (Edited)' or ' (Edited, Unsigned)', once."""
    line = text.rstrip("\n")
    mark = re.search(r" \(Edited(, Unsigned)?\)$", line)
    was_unsigned = bool(mark and mark.group(1))
    if mark:
        line = line[:mark.start()]
    suffix = " (Edited, Unsigned)" if unsigned or was_unsigned else " (Edited)"
    return line + suffix + "\n"


@dataclasses.dataclass(frozen=True)
class RecordedPlugin:
    """One plugin as the build record names it: digest, full manifest, and who signed it."""

    name: str
    version: str
    sha256: str
    manifest: PluginManifest
    signer: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "manifest": self.manifest.to_dict(), "signer": self.signer}


@dataclasses.dataclass
class BuildRecord:
    """The machine-readable record of how an ISO was built, stored in the ISO itself."""

    base_sha256: str
    base_volume_id: str
    plugins: list[RecordedPlugin]
    options: dict
    inputs_digest: str
    update: int
    packages: dict[str, list[str]]
    kernel_args: dict[str, list[str]]
    created: str
    tool: str = f"{TOOL_NAME} {TOOL_VERSION}"
    format: int = BUILD_RECORD_FORMAT
    history: list[dict] = dataclasses.field(default_factory=list)
    # The kernel-argument edits applied to every boot entry, in edit-livecd's notation (!x removes).
    kernel_edits: list[str] = dataclasses.field(default_factory=list)
    # The base ISO's tree (_isotree.TreeReference as a dict): file digests, boot configs, EFI image files.
    base_tree: dict = dataclasses.field(default_factory=dict)
    # ISO path -> sha256 of the files the plugins' %pre/%post --nochroot scripts added or changed.
    live_files: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["plugins"] = [plugin.to_dict() for plugin in self.plugins]
        return data

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, content: bytes, source: str = BUILD_RECORD_ISO_PATH) -> BuildRecord:
        """Parse and check a build record; it comes from an ISO, so it is checked like any input."""
        from ._plugin import validate_manifest  # pylint: disable=import-outside-toplevel
        try:
            data = json.loads(content)
        except (ValueError, RecursionError) as exc:
            raise NodePluginError(f"the build record is not valid JSON: {str(exc)[:200]}", path=source) from exc
        if not isinstance(data, dict) or data.get("format") != BUILD_RECORD_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise NodePluginError(f"unsupported build record format {str(found)[:40]!r}",
                                  path=source, hint="it was written by another version of ovirt.node_plugins")
        try:
            plugins = [RecordedPlugin(name=str(item["name"]), version=str(item["version"]), sha256=str(item["sha256"]),
                                      manifest=validate_manifest(item["manifest"], where=f"{source}: plugins"),
                                      signer=item.get("signer"))
                       for item in data.get("plugins", [])]
            known = {field.name for field in dataclasses.fields(cls)}
            fields = {key: value for key, value in data.items() if key in known}
            fields["plugins"] = plugins
            record = cls(**fields)
        except (KeyError, TypeError, AttributeError) as exc:
            raise NodePluginError(f"the build record lacks or misstates a field ({str(exc)[:100]})", path=source,
                                  hint="the ISO's build record is damaged; rebuild the ISO") from exc
        if not isinstance(record.update, int) or not isinstance(record.packages, dict) or \
                not isinstance(record.kernel_args, dict) or not isinstance(record.history, list) or \
                not isinstance(record.kernel_edits, list) or not isinstance(record.base_tree, dict) or \
                not isinstance(record.live_files, dict) or not isinstance(record.options, dict):
            raise NodePluginError("the build record has fields of the wrong type", path=source,
                                  hint="the ISO's build record is damaged; rebuild the ISO")
        return record

    def package_names(self) -> list[str]:
        """Names of the packages this build installed for its plugins."""
        return sorted({nevra.rsplit("-", 2)[0] for nevras in self.packages.values() for nevra in nevras})


def recorded_inputs_digest(content: bytes) -> str | None:
    """The inputs digest a build record names, read without checking the rest (None when there is none).

    Enough to tell whether an output was built from given inputs; anything else a record says must be
    read with BuildRecord.from_json, which checks it.
    """
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    digest = data.get("inputs_digest") if isinstance(data, dict) and data.get("format") == BUILD_RECORD_FORMAT else None
    return digest if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) else None


def inputs_digest(base_sha256: str, plugin_sha256s: list[str], options: Mapping[str, object]) -> str:
    """One digest of everything that determines an output: base, plugins in order, options."""
    canonical = json.dumps({"base": base_sha256, "plugins": plugin_sha256s, "options": options,
                            "tool": TOOL_VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
