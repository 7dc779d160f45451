# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What changed between a base Node image and its rebuild, found from blocks, not by reading every file.

1. squashfs: the root image's blocks whose stored (compressed) bytes are identical in both images
   are identical by construction; only the others are decompressed (_squashfs.changed_file_blocks).
2. ext: those blocks are compared file-system block by file-system block, and each changed block is
   mapped to what owns it in the rebuilt file system (_extfs.owners): a file's data or block map,
   a directory, an inode-table block (narrowed to the inodes whose records differ), or metadata
   (superblock, group descriptors, bitmaps, the journal).
3. The changed inodes become paths: a file added, removed, or whose content or metadata changed; a
   directory whose entries changed is compared entry by entry, so a rename or a removal is seen too.

The certification then asks, for each changed path only, whether an edit of the build explains it.
"""

from __future__ import annotations

import dataclasses
import time

from ._errors import NodePluginError
from ._extfs import BlockKind, ExtFilesystem, changed_inodes
from ._liveos import SQUASHFS_PATH, find_root_image_path
from ._nodeiso import NodeIso
from ._squashfs import changed_file_blocks

# Inode fields that change when a file is only read or its links counted: never a modification by themselves.
_TIME_ONLY = frozenset(("atime", "ctime"))
# A directory whose entries changed has new times, size and blocks; its entries are compared apart.
_DIRECTORY_BOOKKEEPING = frozenset(("atime", "ctime", "mtime", "size", "blocks", "map_blocks", "links"))
_METADATA_KINDS = frozenset(BlockKind.STATIC) | {BlockKind.JOURNAL, BlockKind.SYSTEM, BlockKind.UNUSED,
                                                 BlockKind.BEYOND_END}
# At most this many changed inodes are narrowed one by one: beyond that the edit is not a plugin's.
_MAX_CHANGED_INODES = 200_000


@dataclasses.dataclass(frozen=True)
class FileChange:
    """One path of the root file system that differs: ``added``, ``removed``, ``content`` or ``metadata``."""

    path: str
    what: str
    fields: tuple[str, ...] = ()
    kind: str = "file"


@dataclasses.dataclass
class RootImageDiff:
    """The differences between two root images, and what finding them cost."""

    squashfs_blocks: int
    squashfs_blocks_changed: int
    ext_blocks_changed: int
    metadata_blocks: int
    changes: list[FileChange]
    bytes_decompressed: int
    seconds: float

    def paths(self) -> dict[str, FileChange]:
        return {change.path: change for change in self.changes}


def _changed_ext_blocks(base_root, new_root, indices: list[int], block_size: int, ext_block: int) -> set[int]:
    changed: set[int] = set()
    for index in indices:
        offset = index * block_size
        new = new_root.read(offset, block_size)
        old = base_root.read(offset, block_size) if offset < base_root.size else b""
        for start in range(0, max(len(new), len(old)), ext_block):
            if new[start:start + ext_block] != old[start:start + ext_block]:
                changed.add((offset + start) // ext_block)
    return changed


def compare_root_images(base: NodeIso, new: NodeIso) -> RootImageDiff:
    """The files that differ between the base's root file system and the rebuilt one (see the module docstring)."""
    started = time.monotonic()
    base_squashfs, new_squashfs = base.squashfs_image(), new.squashfs_image()
    path = find_root_image_path(new_squashfs, source=f"{new.path}:{SQUASHFS_PATH}")
    if find_root_image_path(base_squashfs, source=f"{base.path}:{SQUASHFS_PATH}") != path:
        raise NodePluginError(f"the root image is {path} in the rebuilt ISO but not in the base", path=new.path)
    decompressed_before = base_squashfs.bytes_decompressed + new_squashfs.bytes_decompressed
    indices = changed_file_blocks(base_squashfs, new_squashfs, path)
    block_size = new_squashfs.superblock.block_size
    base_fs, new_fs = base.root_filesystem(), new.root_filesystem()
    if base_fs.block_size != new_fs.block_size:
        raise NodePluginError("the root file systems have different block sizes: the image was rebuilt, not edited",
                              path=new.path)
    ext_blocks = _changed_ext_blocks(base_squashfs.open_file(path), new_squashfs.open_file(path), indices,
                                     block_size, new_fs.block_size)
    owners = new_fs.owners(ext_blocks)
    inodes: set[int] = set()
    directories: set[int] = set()
    table_inodes: set[int] = set()
    metadata = 0
    for owner in owners.values():
        if owner.kind == BlockKind.INODE_TABLE and owner.table_inodes is not None:
            table_inodes.update(owner.table_inodes)
        elif owner.kind == BlockKind.DIRECTORY:
            directories.update(owner.inodes)
        elif owner.kind in (BlockKind.FILE_DATA, BlockKind.BLOCK_MAP, BlockKind.XATTR):
            inodes.update(owner.inodes)
        if owner.kind in _METADATA_KINDS:
            metadata += 1
    if len(table_inodes) > _MAX_CHANGED_INODES:
        raise NodePluginError(f"{len(table_inodes)} inodes may have changed: more than an edit by plugins makes",
                              path=new.path, hint="certify it with deep=true (every file compared)")
    record_changes = changed_inodes(base_fs, new_fs, table_inodes | inodes | directories)
    changes: dict[str, FileChange] = {}
    for ino, fields in sorted(record_changes.items()):
        _add_inode_change(changes, base_fs, new_fs, ino, set(fields), directories)
    for ino in sorted(inodes - set(record_changes)):  # data rewritten in place, record untouched
        for name in new_fs.paths(ino):
            changes.setdefault(name, FileChange(name, "content", ("data",), new_fs.stat(ino).kind))
    for ino in sorted(directories):
        _add_entry_changes(changes, base_fs, new_fs, ino)
    return RootImageDiff(squashfs_blocks=-(-new_fs.superblock.blocks_count * new_fs.block_size // block_size),
                         squashfs_blocks_changed=len(indices), ext_blocks_changed=len(ext_blocks),
                         metadata_blocks=metadata, changes=sorted(changes.values(), key=lambda c: c.path),
                         bytes_decompressed=base_squashfs.bytes_decompressed + new_squashfs.bytes_decompressed
                         - decompressed_before, seconds=round(time.monotonic() - started, 3))


def _in_use(fs: ExtFilesystem, ino: int) -> bool:
    return fs.inode_record(ino).in_use


def _add_inode_change(changes: dict[str, FileChange], base_fs: ExtFilesystem, new_fs: ExtFilesystem, ino: int,
                      fields: set[str], directories: set[int]) -> None:
    was, now = _in_use(base_fs, ino), _in_use(new_fs, ino)
    if not was and not now:
        return
    if not was:
        for name in new_fs.paths(ino):
            changes[name] = FileChange(name, "added", (), new_fs.stat(ino).kind)
        return
    if not now:
        for name in base_fs.paths(ino):
            changes[name] = FileChange(name, "removed", (), base_fs.stat(ino).kind)
        return
    kind = new_fs.stat(ino).kind
    ignored = _DIRECTORY_BOOKKEEPING if kind == "dir" else _TIME_ONLY
    significant = fields - ignored
    if not significant:
        return
    what = "content" if significant & {"size", "blocks", "map_blocks"} else "metadata"
    for name in new_fs.paths(ino) or base_fs.paths(ino):
        changes[name] = FileChange(name, what, tuple(sorted(significant)), kind)
    if kind == "dir":
        directories.add(ino)


def _add_entry_changes(changes: dict[str, FileChange], base_fs: ExtFilesystem, new_fs: ExtFilesystem,
                       ino: int) -> None:
    """Entries a directory gained or lost: new names, renames and removals show here."""
    names = new_fs.paths(ino)
    if not names or not _in_use(base_fs, ino):
        return
    folder = names[0]
    try:
        before = {entry.name: entry.ino for entry in base_fs.listdir(folder)}
    except NodePluginError:
        before = {}
    after = {entry.name: entry.ino for entry in new_fs.listdir(folder)}
    prefix = folder.rstrip("/") + "/"
    for name in sorted(set(before) | set(after)):
        path = prefix + name
        if before.get(name) == after.get(name) or path in changes:
            continue
        if name not in after:
            changes[path] = FileChange(path, "removed", (), base_fs.stat(before[name]).kind)
        elif name not in before:
            changes[path] = FileChange(path, "added", (), new_fs.stat(after[name]).kind)
        else:
            changes[path] = FileChange(path, "content", ("replaced",), new_fs.stat(after[name]).kind)
