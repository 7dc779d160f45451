# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ISO -> facts, and optionally the ISO tree and the root image on disk (module node_iso_extract).

Facts come from reading the ISO in place (pycdlib, xorriso reports, unsquashfs and debugfs).
Extractions are idempotent: each destination holds a stamp naming the ISO's sha256 and what was
written; a destination whose stamp and files match is left alone. New content is written into a
temporary folder next to the destination and renamed into place; nothing is written through a
symlink, and a destination that was not made by this code is never replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile

from ._errors import NodePluginError
from ._iso import BootConfig, IsoReader
from ._isomd5 import check as check_md5_sum
from ._isomd5 import read_field
from ._liveos import extract_root_image, inspect_live_os
from ._nodeinfo import node_info
from ._nodeiso import NodeIso
from ._outputs import read_small_json, run_dir
from ._rpmdb import installed_plugins, rpm_database_of
from ._run import StageTimer

STAMP = ".node_iso_extract.json"


@dataclasses.dataclass(frozen=True)
class ExtractRequest:
    """What node_iso_extract was asked to do."""

    src: str
    dest: str | None = None
    rootfs_dest: str | None = None
    packages: bool = False
    check_md5: bool = False
    check_mode: bool = False


def _entry_dict(config: BootConfig) -> list[dict]:
    return [{"config": config.path, "efiboot_image": config.efiboot, "label": entry.label, "title": entry.title,
             "kernel": entry.kernel, "initrd": entry.initrd, "kernel_args": list(entry.kernel_args),
             "default": entry.default} for entry in config.entries]


def _boot_entries(iso: IsoReader) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {"isolinux": [], "grub": [], "efiboot": []}
    for config in iso.boot_configs():
        grouped[config.loader].extend(_entry_dict(config))
    return grouped


def _md5_state(iso: str, verify: bool) -> dict:
    if verify:
        result = check_md5_sum(iso)
        return {"implanted": result.implanted, "valid": result.valid, "md5": result.md5}
    field = read_field(iso)
    implanted = b"ISO MD5SUM = " in field.raw
    match = re.search(rb"ISO MD5SUM = ([0-9a-fA-F]{32})", field.raw)
    return {"implanted": implanted, "valid": None, "md5": match.group(1).decode() if match else None}


def _read_stamp(folder: str) -> dict | None:
    return read_small_json(os.path.join(folder, STAMP))


def _check_destination(folder: str, option: str) -> None:
    """A destination may be absent, an empty folder, or a folder this code made (it has our stamp)."""
    if os.path.islink(folder):
        raise NodePluginError(f"{option} is a symlink; refusing to write through it", path=folder,
                              hint=f"give the real folder as {option}")
    if os.path.exists(folder):
        if not os.path.isdir(folder):
            raise NodePluginError(f"{option} exists and is not a folder", path=folder, hint="choose another path")
        if os.listdir(folder) and _read_stamp(folder) is None:
            raise NodePluginError(f"{option} is a non-empty folder not made by node_iso_extract; refusing to replace it",
                                  path=folder, hint="remove it or choose an empty or new folder")


def _up_to_date(folder: str, stamp: dict) -> bool:
    """True when the folder's stamp equals ``stamp`` and every recorded file is there with its size."""
    current = _read_stamp(folder)
    if current != stamp:
        return False
    for path, size in stamp.get("files", {}).items():
        local = os.path.join(folder, path.lstrip("/"))
        if os.path.islink(local) or not os.path.isfile(local) or os.path.getsize(local) != size:
            return False
    return True


def _write_stamp(folder: str, stamp: dict) -> None:
    with open(os.path.join(folder, STAMP), "w", encoding="utf-8") as handle:
        json.dump(stamp, handle, indent=1, sort_keys=True)
        handle.write("\n")


def _swap_into_place(staging: str, folder: str) -> None:
    """Replace ``folder`` (absent, empty, or ours) by ``staging`` with renames."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp made it 0700
    old = None
    if os.path.exists(folder):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.old-", dir=os.path.dirname(folder))
        os.rmdir(old)
        os.rename(folder, old)
    os.rename(staging, folder)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _inside(root: str, relative: str) -> str:
    """Join ``relative`` under ``root``, refusing anything that would leave it."""
    target = os.path.normpath(os.path.join(root, relative.lstrip("/")))
    if os.path.commonpath([root, target]) != root or target == root:
        raise NodePluginError(f"refusing the ISO path {relative!r}: it points outside the destination")
    return target


def _extract_tree(reader: IsoReader, folder: str, stamp: dict) -> None:
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.new-", dir=parent)
    try:
        links = []
        for entry in reader.walk():
            target = _inside(staging, entry.path)
            if entry.is_dir:
                os.makedirs(target, exist_ok=True)
            elif entry.symlink_target is not None:
                links.append((entry.symlink_target, target))
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                # O_NOFOLLOW|O_EXCL: a file is only ever created fresh, never written through a link.
                descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(descriptor, "wb") as handle:
                    reader.extract(entry.path, handle)
        # Links last, so no file is ever written through one (they are kept as links, never followed).
        for link_target, target in links:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(link_target, target)
        _write_stamp(staging, stamp)
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _extract_rootfs(iso: IsoReader, folder: str, stamp: dict) -> str:
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.new-", dir=parent)
    try:
        image = extract_root_image(iso, staging)
        _write_stamp(staging, stamp)
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return os.path.join(folder, os.path.basename(image))


def extract_iso(request: ExtractRequest) -> dict:
    """Facts of a Node ISO and the requested extractions; the dict node_iso_extract returns."""
    src = os.path.abspath(request.src)
    if not os.path.isfile(src):
        what = "is a folder, not an ISO file" if os.path.isdir(src) else "does not exist or is not a regular file"
        raise NodePluginError(f"the ISO {what}", path=src, hint="check src")
    dest = os.path.abspath(request.dest) if request.dest else None
    rootfs_dest = os.path.abspath(request.rootfs_dest) if request.rootfs_dest else None
    for folder, option in ((dest, "dest"), (rootfs_dest, "rootfs_dest")):
        if folder:
            _check_destination(folder, option)
    if dest and rootfs_dest and (dest == rootfs_dest or os.path.commonpath([dest, rootfs_dest]) in (dest, rootfs_dest)):
        raise NodePluginError("dest and rootfs_dest must not contain each other", hint="give two separate folders")
    with NodeIso(src) as iso:
        return _extract(request, iso, dest, rootfs_dest)


def _extract(request: ExtractRequest, iso: NodeIso, dest: str | None, rootfs_dest: str | None) -> dict:
    timer = StageTimer()
    src = iso.path
    with timer.stage("read ISO"):
        files = [entry for entry in iso.walk() if not entry.is_dir]
        updates = iso.updates()
        records = iso.boot_records()
        hybrid = iso.hybrid()
    with timer.stage("boot configs"):
        entries = _boot_entries(iso)
    with timer.stage("LiveOS"):
        live = inspect_live_os(iso)
    with timer.stage("md5"):
        md5 = _md5_state(src, request.check_md5)
    with timer.stage("sha256"):
        iso_sha256 = iso.sha256
    changed = False
    result: dict = {"dest": dest, "rootfs_dest": rootfs_dest, "root_image_path": None, "packages": None,
                    "plugins": None, "rpmdb": None}
    info = None
    scratch = tempfile.mkdtemp(prefix="node-iso-extract-", dir=run_dir())
    try:
        if rootfs_dest:
            stamp = {"iso_sha256": iso_sha256, "files": {live.root_image_name: live.root_image_size}}
            if not _up_to_date(rootfs_dest, stamp):
                changed = True
                if not request.check_mode:
                    with timer.stage("extract root image"):
                        _extract_rootfs(iso, rootfs_dest, stamp)
            result["root_image_path"] = os.path.join(rootfs_dest, live.root_image_name)
        with timer.stage("version"):
            info = iso.node
            if info.source == "volume id":
                info = node_info(iso, root=iso.root_filesystem())
        if request.packages:
            with timer.stage("packages"):
                # Read in place: only the blocks of /var/lib/rpm and the records are decompressed.
                database = rpm_database_of(iso.root_filesystem(), scratch)
                result["packages"] = [package.nevra for package in database.packages]
                result["rpmdb"] = database.facts()
                result["plugins"] = [{"name": plugin.name, "version": plugin.version,
                                      "install_date": plugin.install_date}
                                     for plugin in installed_plugins(iso.root_filesystem())]
        if dest:
            stamp = {"iso_sha256": iso_sha256, "files": {entry.path: entry.size for entry in files
                                                         if entry.symlink_target is None}}
            if not _up_to_date(dest, stamp):
                changed = True
                if not request.check_mode:
                    with timer.stage("extract tree"):
                        _extract_tree(iso, dest, stamp)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.update({
        "changed": changed,
        "src": src,
        "sha256": iso_sha256,
        "volume_id": iso.volume_id,
        "volume_size": iso.volume_size,
        "product": info.product,
        "version": info.version,
        "release": info.release,
        "version_source": info.source,
        "boot_entries": entries,
        "el_torito": [dataclasses.asdict(entry) for entry in records.el_torito],
        "hybrid": {"mbr": hybrid.mbr, "gpt": hybrid.gpt, "mbr_partitions": hybrid.mbr_partitions},
        "md5": md5,
        "squashfs": {"compressor": live.superblock.compressor, "block_size": live.superblock.block_size,
                     "size": live.squashfs_size},
        "root_image": {"name": live.root_image_name, "size": live.root_image_size},
        "osmin": live.osmin,
        "updates": updates,
        "durations": timer.durations,
    })
    return result
