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
digests, plugin manifests, options, tool version) that makes reruns and verification cheap, and
``/ovirt-plugins/<name>-<version>.plugin.tar.gz``, the plugins the ISO holds as they were given.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence

from typing import TYPE_CHECKING, Any, TypeGuard

from ._errors import NodePluginError

if TYPE_CHECKING:  # the plugin reader (jsonschema, pykickstart) is loaded only when a record is parsed
    from ._plugin import PluginManifest

TOOL_NAME = "ovirt.node_plugins"
TOOL_VERSION = "1.0.0-dev0"
RECORDS_DIR = "/etc/ovirt-plugins.d"
IMAGE_MANIFESTS_DIR = "/etc/ovirt-plugins-manifests.d"
BUILD_RECORD_ISO_PATH = "isolinux/ovirt-plugins-build.json"
# ISO folder of the plugin tarballs an ISO was built with, as given (a rebase applies them again).
CARRIED_DIR = "/ovirt-plugins"
_CARRIED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}\.plugin\.tar\.gz$")
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
                 installed_plugins: list[str], removed_plugins: Sequence[str] = ()) -> dict[str, bytes]:
    """Files of isolinux/updateN/, by name: manifests, deltas, installed_plugins (and removed_plugins, the
    'name version' of each plugin the edit removed, when it removed any)."""
    if number < 1:
        raise ValueError("update numbers start at 1")
    files = {}
    for kind in MANIFEST_KINDS:
        files[f"manifest-{kind}.txt"] = encode_manifest(kind, list(after.get(kind, [])))
        files[f"delta-manifest-{kind}.txt"] = encode_manifest(
            kind, delta(list(before.get(kind, [])), list(after.get(kind, []))))
    files["installed_plugins"] = "".join(line + "\n" for line in installed_plugins).encode("utf-8")
    if removed_plugins:
        files["removed_plugins"] = "".join(line + "\n" for line in removed_plugins).encode("utf-8")
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
    """One plugin an ISO holds, as its build record names it: digest, full manifest, who signed it, and
    what an upgrade, a removal or a rebase needs to know later."""

    name: str
    version: str
    sha256: str
    manifest: PluginManifest
    signer: str | None = None
    # The recipe's kernel-argument words (edit-livecd notation, !x removes): taken back when the plugin goes.
    kernel_args: tuple[str, ...] = ()
    # Names of the packages the plugin brought into the image (its install set, the origin's packages aside);
    # None in records of builds that did not say (then the manifest's packages stand in).
    brought: tuple[str, ...] | None = None
    # ISO path of the plugin's tarball as it was given (its signature inside), carried for a rebase.
    carried: str | None = None

    def brought_names(self) -> list[str]:
        """The packages this plugin brought (what removing it erases, unless another plugin needs them)."""
        if self.brought is not None:
            return sorted(self.brought)
        return sorted(package.name for package in self.manifest.packages)

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "manifest": self.manifest.to_dict(), "signer": self.signer, "kernel_args": list(self.kernel_args),
                "brought": None if self.brought is None else list(self.brought), "carried": self.carried}

    @classmethod
    def from_dict(cls, item: object, source: str) -> RecordedPlugin:
        """One plugin entry of a record (hostile input: every field checked)."""
        from ._plugin import validate_manifest  # pylint: disable=import-outside-toplevel
        if not isinstance(item, dict):
            raise TypeError("a plugin entry is not an object")
        kernel_args, brought, carried = item.get("kernel_args", []), item.get("brought"), item.get("carried")
        if not _strings(kernel_args) or (brought is not None and not _strings(brought)) or \
                (carried is not None and not isinstance(carried, str)) or \
                not all(isinstance(item.get(key), str) for key in ("name", "version", "sha256")):
            raise TypeError(f"plugin entry {str(item.get('name'))[:60]!r} has fields of the wrong type")
        return cls(name=item["name"], version=item["version"], sha256=item["sha256"],
                   manifest=validate_manifest(item["manifest"], where=f"{source}: plugins"), signer=item.get("signer"),
                   kernel_args=tuple(kernel_args), brought=None if brought is None else tuple(brought), carried=carried)


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@dataclasses.dataclass(frozen=True)
class EditStep:
    """One edit of an ISO's history, as far as its tree is concerned (see BuildRecord.edit_steps)."""

    update: int
    kernel_edits: tuple[str, ...]
    old_label: str
    new_label: str | None
    live_files: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Origin:
    """The Node release an ISO's history starts from: the ISO no plugin was applied to."""

    sha256: str
    volume_id: str
    tree: dict
    # Its packages (NEVRAs); None when the records do not say (builds of older versions).
    packages: list[str] | None


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
    # The Node release the history starts from: sha256, volume_id, packages (NEVRAs), tree (TreeReference),
    # product, version, release. Carried from edit to edit; a rebase starts a new history.
    origin: dict = dataclasses.field(default_factory=dict)
    # The plugins this edit removed: name, version, sha256, and the packages it erased.
    removed: list[dict] = dataclasses.field(default_factory=list)
    # Packages this edit erased (what departing plugins brought that nothing needs any more).
    erased: list[str] = dataclasses.field(default_factory=list)
    # The initramfs the engine last rebuilt inside the image (kernel_version, sha256, files, efi_files,
    # drivers, update); carried from edit to edit; empty while the ISO has its base's initramfs.
    initramfs: dict = dataclasses.field(default_factory=dict)
    # The customized ISO a rebase took its plugins from: sha256, volume_id, version, release.
    rebased_from: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["plugins"] = [plugin.to_dict() for plugin in self.plugins]
        return data

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, content: bytes, source: str = BUILD_RECORD_ISO_PATH) -> BuildRecord:
        """Parse and check a build record; it comes from an ISO, so it is checked like any input."""
        try:
            data = json.loads(content)
        except (ValueError, RecursionError) as exc:
            raise NodePluginError(f"the build record is not valid JSON: {str(exc)[:200]}", path=source) from exc
        if not isinstance(data, dict) or data.get("format") != BUILD_RECORD_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise NodePluginError(f"unsupported build record format {str(found)[:40]!r}",
                                  path=source, hint="it was written by another version of ovirt.node_plugins")
        try:
            plugins = [RecordedPlugin.from_dict(item, source) for item in data.get("plugins", [])]
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
                not isinstance(record.live_files, dict) or not isinstance(record.options, dict) or \
                not isinstance(record.origin, dict) or not isinstance(record.removed, list) or \
                not _strings(record.erased) or not isinstance(record.initramfs, dict) or \
                not isinstance(record.rebased_from, dict):
            raise NodePluginError("the build record has fields of the wrong type", path=source,
                                  hint="the ISO's build record is damaged; rebuild the ISO")
        return record

    def package_names(self) -> list[str]:
        """Names of the plugin packages of the plugins the ISO holds (those with an /etc/ovirt-plugins.d record)."""
        return sorted({nevra.rsplit("-", 2)[0] for nevras in self.packages.values() for nevra in nevras})

    def origin_info(self) -> Origin:
        """The Node release this ISO's history starts from (see Origin)."""
        if self.origin:
            packages, origin_tree = self.origin.get("packages"), self.origin.get("tree")
            return Origin(sha256=str(self.origin.get("sha256", "")), volume_id=str(self.origin.get("volume_id", "")),
                          tree=origin_tree if isinstance(origin_tree, dict) else {},
                          packages=packages if _strings(packages) else None)
        first = self.history[0] if self.history and isinstance(self.history[0], dict) else \
            {"base_sha256": self.base_sha256, "base_volume_id": self.base_volume_id, "base_tree": self.base_tree}
        tree = first.get("base_tree")
        return Origin(sha256=str(first.get("base_sha256", "")), volume_id=str(first.get("base_volume_id", "")),
                      tree=tree if isinstance(tree, dict) else {}, packages=None)

    def edit_steps(self) -> list[EditStep]:
        """Every edit from the origin to this ISO, in order (the history's, then this one).

        Raises NodePluginError when the history is not what records hold (it comes from an ISO).
        """
        steps = []
        for entry in [*self.history, self.to_dict()]:
            entry = entry if isinstance(entry, dict) else {}
            options, edits, live = entry.get("options"), entry.get("kernel_edits", []), entry.get("live_files", {})
            label = options.get("volume_id") if isinstance(options, dict) else None
            if not isinstance(options, dict) or not isinstance(entry.get("update"), int) or not _strings(edits) or \
                    not isinstance(live, dict) or not all(isinstance(value, str) for value in live.values()) or \
                    not isinstance(entry.get("base_volume_id"), str) or not isinstance(label, (str, type(None))):
                raise NodePluginError("the build record's history has entries of the wrong form",
                                      hint="the ISO's build record is damaged; rebuild the ISO")
            steps.append(EditStep(update=entry["update"], kernel_edits=tuple(edits), old_label=entry["base_volume_id"],
                                  new_label=label, live_files=dict(live)))
        return steps

    def plugin_packages_ever(self) -> set[str]:
        """Names of every package a plugin of this ISO's history brought: the ones held now, the upgraded and
        the removed ones (certification does not count them as the base's, whichever ISO is the base)."""
        names = {name for plugin in self.plugins for name in plugin.brought_names()}
        for entry in [*self.history, {"removed": self.removed, "erased": self.erased}]:
            if not isinstance(entry, dict):
                continue
            names.update(name for name in entry.get("erased", []) if isinstance(name, str))
            for item in [*entry.get("plugins", []), *entry.get("removed", [])]:
                if not isinstance(item, dict):
                    continue
                brought, manifest = item.get("brought"), item.get("manifest")
                if not isinstance(manifest, dict):
                    manifest = {}
                listed: list[Any] = brought if _strings(brought) else [
                    package.get("name") for package in manifest.get("packages", []) if isinstance(package, dict)]
                names.update(name for name in listed if isinstance(name, str))
        return names


def is_carried_path(path: str) -> bool:
    """Whether an ISO path is where a build carries a plugin tarball (/ovirt-plugins/<name>-<version>.plugin.tar.gz):
    a record may name no other path for one (it comes from an ISO)."""
    folder, _sep, name = path.rpartition("/")
    return folder == CARRIED_DIR and bool(_CARRIED_NAME.match(name))


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
