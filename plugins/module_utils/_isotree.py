# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every file of a rebuilt ISO's tree accounted for against its base, outside the root image.

A ``TreeReference`` describes the base: the sha256 of every file (the squashfs aside, which the
image checks cover), the text of every boot config, and the files inside each EFI boot image. The
build record carries the reference of its base, so that verify can account for the tree with the
base ISO given (the reference is then read from it) or without it (from the record).

A file of the rebuilt tree may differ from the base only where an edit of the build writes by
design: the boot configs (exactly the base's text with the recorded kernel-argument edits and
volume label applied, in the tree and inside the EFI images, whose other files stay identical), the
records of this edit (``isolinux/updateN``, the ``current-manifest`` links, the build record), the
plugin tarballs the ISO carries (``/ovirt-plugins``, each with the digest the record names; a departing
plugin's tarball leaves), the initramfs the engine rebuilt for kmod plugins (only files a boot entry
loads as its initramfs, with the recorded digest), and the files the plugins' ``%post
--nochroot``/``%pre`` scripts added to ``$LIVE_ROOT`` (recorded with their digests; scripts may never
touch the boot chain or the engine's files: apply refuses that).

The base is the ISO the last edit started from, or the origin of the history (the Node release no
plugin was applied to, whose tree reference the record carries): against the origin, every edit of
the history is accounted for in order (each one's kernel-argument edits and label, its records, its
scripts' files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from collections.abc import Set as AbstractSet

from . import _records as records
from ._bootcfg import (KernelArgEdits, edit_kernel_args, efiboot_configs, efiboot_files, read_efiboot_bytes,
                       replace_volume_label)
from ._iso import IsoReader
from ._liveos import SQUASHFS_PATH
from ._nodeiso import iso_path_of

# ISO paths the engine itself writes; scripts must not (and the build record may not list them).
ENGINE_PATHS = ("/isolinux/ovirt-plugins-build.json", "/isolinux/update", "/isolinux/current-manifest-",
                "/isolinux/manifest-", "/LiveOS/", f"{records.CARRIED_DIR}/")


@dataclasses.dataclass(frozen=True)
class TreeReference:
    """What the base ISO's tree holds (see the module docstring)."""

    files: dict[str, str]
    configs: dict[str, str]
    efi_files: dict[str, dict[str, str]]
    # El Torito images whose boot info table the digests leave out.
    placed_images: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TreeReference:
        return cls(files=dict(data.get("files", {})), configs=dict(data.get("configs", {})),
                   efi_files={image: dict(inner) for image, inner in data.get("efi_files", {}).items()},
                   placed_images=list(data.get("placed_images", [])))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _without_placement(data: bytes, catalog: bool) -> bytes:
    """The bytes xorriso rewrites when it places files anew blanked: a boot info table (8-64), or each
    catalog entry's load LBA and the validation entry's checksum."""
    if not catalog:
        return data[:8] + b"\0" * 56 + data[64:]
    entries = bytearray(data)
    for start in range(0, len(entries) - 31, 32):
        if start == 0 and entries[0] == 0x01:
            entries[28:30] = b"\0\0"
        elif entries[start] in (0x88, 0x00) and any(entries[start:start + 32]):
            entries[start + 8:start + 12] = b"\0\0\0\0"
    return bytes(entries)


def tree_digests(reader: IsoReader, placed_images: AbstractSet[str] = frozenset()) -> dict[str, str]:
    """sha256 of every file of the tree but the squashfs; a symlink as ``-> <target>``.

    The boot catalog and images with a boot info table (as xorriso finds them, or as ``placed_images``
    names them) are digested without the LBAs and sums that every rewrite of an ISO changes (whether
    those are right is the boot records check's concern).
    """
    records = reader.boot_records()
    placed = {entry.path: False for entry in records.el_torito
              if entry.path and (entry.boot_info_table or entry.path in placed_images)}
    if records.catalog_path:
        placed[records.catalog_path] = True
    digests = {}
    for entry in reader.files():
        if entry.path == SQUASHFS_PATH:
            continue
        if entry.symlink_target is not None:
            digests[entry.path] = f"-> {entry.symlink_target}"
        elif entry.path in placed:
            digests[entry.path] = _digest(_without_placement(reader.read_bytes(entry.path), placed[entry.path]))
        else:
            digests[entry.path] = reader.file_sha256(entry.path)
    return digests


def efi_image_files(local_image: str) -> dict[str, str]:
    """sha256 of every file inside a FAT image."""
    return {path: _digest(read_efiboot_bytes(local_image, path)) for path in efiboot_files(local_image)}


def tree_reference(reader: IsoReader) -> TreeReference:
    """The reference of an ISO's tree (read once; about the size of the ISO minus its squashfs)."""
    efi = {}
    for image in sorted({config.efiboot for config in reader.boot_configs() if config.efiboot}):
        efi[image] = efi_image_files(reader.efi_image(image))
    return TreeReference(files=tree_digests(reader),
                         configs={config.where: config.text for config in reader.boot_configs()},
                         efi_files=efi, placed_images=sorted(entry.path for entry in reader.boot_records().el_torito
                                                             if entry.path and entry.boot_info_table))


def is_engine_path(path: str) -> bool:
    return path.startswith(ENGINE_PATHS)


def _expected_config(text: str, fmt: str, steps: list[records.EditStep]) -> str:
    """The base's config text with each edit's kernel-argument edits and new label applied, in order."""
    for step in steps:
        text = edit_kernel_args(text, fmt, KernelArgEdits.parse(step.kernel_edits)).text
        if step.new_label and step.new_label != step.old_label:
            text = replace_volume_label(text, fmt, step.old_label, step.new_label).text
    return text


def boot_entry_files(iso: IsoReader) -> tuple[set[str], set[str]]:
    """ISO paths of the kernels and of the initramfs images that the boot entries of the tree load."""
    kernels, initrds = set(), set()
    for config in iso.boot_configs():
        if config.efiboot:
            continue
        for entry in config.entries:
            if entry.kernel and not entry.kernel.startswith(("(", "$")):
                kernels.add(iso_path_of(config.path, entry.kernel))
            for name in (entry.initrd or "").split(","):
                if name.strip() and not name.startswith(("(", "$")):
                    initrds.add(iso_path_of(config.path, name.split()[0]))
    return kernels, initrds


@dataclasses.dataclass
class TreeAccount:
    """The outcome: what matched, and every difference no edit explains."""

    evidence: list[str] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)


def account(iso: IsoReader, reference: TreeReference, record: records.BuildRecord, boot_files: list[str], *,
            from_origin: bool = False) -> TreeAccount:
    """Compare the rebuilt ISO's tree with the base's reference (see the module docstring); ``from_origin``:
    the reference is the origin's, and every edit of the history is accounted for."""
    result = TreeAccount()
    current = tree_digests(iso, set(reference.placed_images))
    configs = {config.where: config for config in iso.boot_configs()}
    steps = record.edit_steps() if from_origin else record.edit_steps()[-1:]
    update_dirs = tuple(f"/isolinux/update{step.update}/" for step in steps)
    live_files: dict[str, str] = {}
    for step in steps:
        live_files.update(step.live_files)
    links = {f"/isolinux/{link}": f"-> {target}" for link, target in records.current_manifest_links(record.update).items()}
    carried = {plugin.carried: plugin.sha256 for plugin in record.plugins
               if plugin.carried and records.is_carried_path(plugin.carried)}
    initramfs = record.initramfs if isinstance(record.initramfs.get("sha256"), str) else {}
    claimed_files = initramfs.get("files")
    rebuilt = {path for path in (claimed_files if isinstance(claimed_files, list) else [])
               if isinstance(path, str)} & boot_entry_files(iso)[1]
    boot = set(boot_files)
    explained = {"config": 0, "efi": 0, "records": 0, "scripts": 0, "carried": 0, "initramfs": 0}
    for path in sorted(set(current) | set(reference.files)):
        before, after = reference.files.get(path), current.get(path)
        if before == after:
            continue
        if after is None:
            if path.startswith(f"{records.CARRIED_DIR}/") and path not in carried:
                explained["carried"] += 1  # the tarball of a plugin the edit removed or upgraded
            else:
                result.violations.append(f"{path} of the base ISO is missing")
            continue
        if path == f"/{records.BUILD_RECORD_ISO_PATH}" or path.startswith(update_dirs) or links.get(path) == after:
            explained["records"] += 1
            continue
        if path in carried:
            if carried[path] == after:
                explained["carried"] += 1
            else:
                result.violations.append(f"the plugin tarball {path} is not the one the build record names")
            continue
        if path in rebuilt:
            if after == initramfs["sha256"]:
                explained["initramfs"] += 1
            else:
                result.violations.append(f"the initramfs {path} is not the one the build rebuilt (the build record "
                                         f"names sha256 {initramfs['sha256'][:16]}...)")
            continue
        if path in live_files and path not in boot:
            if live_files[path] == after:
                explained["scripts"] += 1
            else:
                result.violations.append(f"{path} differs from what the plugins' scripts wrote at build time")
            continue
        if path in reference.configs and path in configs:
            config = configs[path]
            if config.text == _expected_config(reference.configs[path], config.fmt, steps):
                explained["config"] += 1
            else:
                result.violations.append(f"the boot config {path} differs from the base's beyond the recorded "
                                         "kernel-argument and label edits")
            continue
        if path in reference.efi_files and path in {config.efiboot for config in configs.values()}:
            problems = _account_efi_image(iso, path, reference, steps, initramfs)
            result.violations += problems
            explained["efi"] += 0 if problems else 1
            continue
        what = "added to" if before is None else "changed in"
        kind = "boot file" if path in boot else "file"
        result.violations.append(f"{kind} {path} was {what} the ISO, and no edit of the build explains it")
    unchanged_boot = sorted(path for path in boot if reference.files.get(path) == current.get(path))
    result.evidence.append(f"{len(current)} files of the ISO tree accounted for against the base "
                           f"(LiveOS/squashfs.img by the image checks)")
    result.evidence.append(f"boot files identical to the base by sha256: {', '.join(unchanged_boot) or 'none'}")
    updates = ", ".join(str(step.update) for step in steps)
    result.evidence.append(f"changed by design: {explained['config']} boot configs and {explained['efi']} EFI images "
                           f"as recorded, {explained['records']} record files of update {updates}, "
                           f"{explained['scripts']} files the plugins' scripts added, {explained['carried']} plugin "
                           f"tarballs carried or taken out, {explained['initramfs']} initramfs files the build rebuilt")
    return result


def _account_efi_image(iso: IsoReader, image: str, reference: TreeReference, steps: list[records.EditStep],
                       initramfs: dict) -> list[str]:
    local = iso.efi_image(image)
    now = efi_image_files(local)
    base = reference.efi_files[image]
    problems = []
    configs = {path: path for path in efiboot_configs(local)}
    for inner in sorted(set(now) | set(base)):
        if inner in configs:
            where = f"{image}:{inner}"
            text = next((c.text for c in iso.boot_configs() if c.where == where), None)
            fmt = next((c.fmt for c in iso.boot_configs() if c.where == where), None)
            if where not in reference.configs or text is None or fmt is None or \
                    text != _expected_config(reference.configs[where], fmt, steps):
                problems.append(f"the boot config {inner} inside {image} differs from the base's beyond the recorded "
                                "edits")
            continue
        claimed_efi = initramfs.get("efi_files")
        in_image = claimed_efi.get(image) if isinstance(claimed_efi, dict) else None
        rebuilt = isinstance(in_image, list) and inner in in_image and inner in base
        if now.get(inner) != base.get(inner) and not (rebuilt and now.get(inner) == initramfs.get("sha256")):
            problems.append(f"{inner} inside {image} differs from the base's (boot loader file changed)")
    return problems


def scripts_may_write(path: str, boot_files: list[str]) -> bool:
    """Whether a nochroot/pre script may add or change this ISO path: never the boot chain or the engine's files."""
    normal = posixpath.normpath("/" + path.lstrip("/"))
    return normal not in boot_files and not is_engine_path(normal)
