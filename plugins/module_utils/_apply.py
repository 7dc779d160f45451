# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rebuild engine: a base Node ISO + plugins -> a customized ISO, the way edit-node did it.

One readable sequence of named stages (each timed):
  prepare   read the base ISO's facts and open every plugin without trusting it; check
            compatibility, signatures and allowed paths before any work starts
  plan      the output's name, the inputs' digest (a rerun with the same digest is a no-op), the
            kernel arguments before/after for every boot entry (check and diff mode stop here)
  extract   the squashfs out of the ISO, the root image out of the squashfs, the plugins' members
  image     one libguestfs appliance: resize, %pre, rpm install with the image's own rpm, %post,
            records, manifests, (Edited), SELinux relabel; vendor code never runs on the host
  squashfs  repacked with the base's compressor and block size
  iso       boot configs edited everywhere (BIOS, UEFI tree, inside efiboot.img); written with
            xorriso boot replay; md5 implanted; moved into place atomically
The work directory sits next to the output and is removed on success and on failure alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import filecmp
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

from . import _records as records
from ._bootcfg import BootEntry, list_entries, read_efiboot_file
from ._digests import cached_sha256, is_cached
from ._errors import NodePluginError
from ._iso import (BootConfig, BootConfigEdits, IsoReader, boot_configs, check_complete, check_replayable,
                   edit_boot_configs, rewrite_iso)
from ._isomd5 import check as check_md5
from ._liveos import SquashfsSuperblock, find_root_image, list_squashfs, squashfs_superblock, stream_squashfs
from ._nodeinfo import NodeInfo, node_info
from ._plugin import PluginArchive, open_plugin, source_date_epoch
from ._rootfs import INSTALL_ROOT, LIVE_ROOT, RootImageSession, make_scratch_disk
from ._rpmhdr import allowed_paths, check_paths, read_header
from ._run import StageTimer, run
from ._versions import parse_range

SQUASHFS_ISO_PATH = "LiveOS/squashfs.img"
SELINUX_CHOICES = ("auto", "always", "never")
COMPRESSORS = ("gzip", "xz", "zstd", "lzo", "lz4", "lzma")
ProgressCallback = Callable[[str], None]


@dataclasses.dataclass
class ApplyRequest:
    """Everything that determines a rebuild (see the node_plugin_apply module for each option)."""

    src: str
    plugins: list[str]
    dest: str
    volume_id: str | None = None
    extra_kernel_args: list[str] = dataclasses.field(default_factory=list)
    remove_kernel_args: list[str] = dataclasses.field(default_factory=list)
    require_signed: bool = False
    keyring: str | None = None
    allow_unlisted_paths: bool = False
    nodeps: bool = False
    keep_workdir: bool = False
    selinux_relabel: str = "auto"
    compression: str | None = None
    force: bool = False
    check_mode: bool = False

    def options_for_digest(self) -> dict:
        """The options that change the output's bytes (paths and debugging switches do not)."""
        return {"volume_id": self.volume_id, "extra_kernel_args": list(self.extra_kernel_args),
                "remove_kernel_args": list(self.remove_kernel_args), "nodeps": self.nodeps,
                "allow_unlisted_paths": self.allow_unlisted_paths, "selinux_relabel": self.selinux_relabel,
                "compression": self.compression, "source_date_epoch": source_date_epoch()}


@dataclasses.dataclass
class StepLog:
    """Output of one step that ran vendor code inside the appliance."""

    plugin: str
    step: str
    exit_status: int
    output: str


@dataclasses.dataclass
class ApplyResult:
    """What apply did (or, in check mode, would do)."""

    changed: bool
    path: str
    reason: str
    base: dict
    plugins: list[dict]
    kernel_args_before: dict[str, list[str]]
    kernel_args: dict[str, list[str]]
    packages: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    packages_before: list[str] = dataclasses.field(default_factory=list)
    packages_after: list[str] = dataclasses.field(default_factory=list)
    update: int | None = None
    sha256: str | None = None
    size: int | None = None
    scriptlet_logs: list[StepLog] = dataclasses.field(default_factory=list)
    selinux: str | None = None
    durations: dict[str, float] = dataclasses.field(default_factory=dict)
    workdir: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Prepared:
    base_sha256: str
    node: NodeInfo
    volume_id: str
    archives: list[PluginArchive]
    unsigned: bool
    dest: str
    digest: str
    kernel_words: list[str]
    squashfs: SquashfsSuperblock


def apply_plugins(request: ApplyRequest, *, progress: ProgressCallback | None = None) -> ApplyResult:
    """Rebuild request.src with request.plugins into request.dest; see the module docstring."""
    timer = StageTimer()
    say = progress or (lambda _stage: None)
    say("prepare")
    with timer.stage("prepare"):
        prepared = _prepare(request)
    workdir = tempfile.mkdtemp(prefix=f".{os.path.basename(prepared.dest)}.work-", dir=os.path.dirname(prepared.dest))
    try:
        say("plan")
        with timer.stage("plan"):
            result, edits = _plan(request, prepared, workdir)
        if _up_to_date(prepared, request):
            result.changed, result.reason = False, "up to date: the output's build record matches the inputs"
            result.sha256, result.size = cached_sha256(prepared.dest), os.path.getsize(prepared.dest)
        elif request.check_mode:
            result.changed, result.reason = True, "would build"
        else:
            _build(request, prepared, result, edits, workdir, timer, say)
            result.changed, result.reason = True, "built"
    finally:
        if request.keep_workdir and not request.check_mode:
            result_workdir = workdir
        else:
            result_workdir = None
            shutil.rmtree(workdir, ignore_errors=True)
    result.workdir = result_workdir
    result.durations = timer.durations
    return result


# -- prepare ---------------------------------------------------------------------------------------

def _prepare(request: ApplyRequest) -> _Prepared:
    if not request.plugins:
        raise NodePluginError("no plugins given", hint="name at least one plugin tarball")
    if request.selinux_relabel not in SELINUX_CHOICES:
        raise NodePluginError(f"selinux_relabel={request.selinux_relabel!r} is not valid",
                              hint=f"use one of {', '.join(SELINUX_CHOICES)}")
    if request.compression is not None and request.compression not in COMPRESSORS:
        raise NodePluginError(f"compression={request.compression!r} is not supported",
                              hint=f"use one of {', '.join(COMPRESSORS)}, or leave it unset to keep the base's")
    if not os.path.isfile(request.src):
        raise NodePluginError("the base ISO does not exist", path=request.src)
    check_complete(request.src)
    check_replayable(request.src)
    superblock = squashfs_superblock(request.src)
    node = node_info(request.src)
    with IsoReader(request.src) as reader:
        volume_id = reader.volume_id
    archives = [open_plugin(path, keyring=request.keyring, require_signature=request.require_signed)
                for path in request.plugins]
    _check_compatibility(archives, node, request.src)
    unsigned = any(not package.signed for archive in archives for package in archive.manifest.packages)
    if request.require_signed and unsigned:
        names = [f"{archive.manifest.name}: {package.nevra}" for archive in archives
                 for package in archive.manifest.packages if not package.signed]
        raise NodePluginError("signed packages are required, but these are unsigned: " + ", ".join(names),
                              hint="ask the vendor for signed RPMs, or set require_signed=false "
                                   "(the image is then marked '(Edited, Unsigned)')")
    _check_unique_names(archives)
    words = _kernel_words(request, archives)
    dest = _output_path(request.dest, request.src, archives)
    base_sha256 = cached_sha256(request.src)
    digest = records.inputs_digest(base_sha256, [archive.sha256 for archive in archives], request.options_for_digest())
    return _Prepared(base_sha256=base_sha256, node=node, volume_id=volume_id, archives=archives, unsigned=unsigned,
                     dest=dest, digest=digest, kernel_words=words, squashfs=superblock)


def _check_compatibility(archives: Sequence[PluginArchive], node: NodeInfo, src: str) -> None:
    problems = []
    for archive in archives:
        compat = archive.manifest.node
        if compat.product and node.product and compat.product.lower() != node.product.lower():
            problems.append(f"plugin {archive.manifest.name} {archive.manifest.version} is for "
                            f"'{compat.product}', the ISO is '{node.product}'")
            continue
        if not parse_range(compat.versions).admits(node.version, node.release):
            problems.append(f"plugin {archive.manifest.name} {archive.manifest.version} needs Node "
                            f"{compat.versions}, the ISO is {node.version}-{node.release}")
    if problems:
        raise NodePluginError("incompatible plugins: " + "; ".join(problems), path=src,
                              hint=f"the ISO's version was read from {node.source}; use a plugin release made for it")


def _check_unique_names(archives: Sequence[PluginArchive]) -> None:
    seen = set()
    for archive in archives:
        if archive.manifest.name in seen:
            raise NodePluginError(f"the plugin {archive.manifest.name} is given twice", path=archive.path,
                                  hint="apply each plugin once; a newer version upgrades the older")
        seen.add(archive.manifest.name)


def _kernel_words(request: ApplyRequest, archives: Sequence[PluginArchive]) -> list[str]:
    """Kernel argument edits in order: each plugin's bootloader --append, then the request's."""
    words: list[str] = []
    for archive in archives:
        words += archive.recipe.kernel_args_add + [f"!{name}" for name in archive.recipe.kernel_args_remove]
    words += list(request.extra_kernel_args)
    words += [word if word.startswith("!") else f"!{word}" for word in request.remove_kernel_args]
    return words


def _output_path(dest: str, src: str, archives: Sequence[PluginArchive]) -> str:
    """dest itself, or in a folder, edit-node's name: <base>-<plugin1>_<plugin2>.iso."""
    dest = os.path.abspath(dest)
    if os.path.isdir(dest):
        base = os.path.basename(src)
        stem = base[:-4] if base.lower().endswith(".iso") else base
        name = f"{stem}-{'_'.join(archive.manifest.name for archive in archives)}.iso"
        dest = os.path.join(dest, name)
    if os.path.abspath(src) == dest:
        raise NodePluginError("the output would overwrite the base ISO", path=dest, hint="choose another dest")
    if not os.path.isdir(os.path.dirname(dest)):
        raise NodePluginError("the output's folder does not exist", path=os.path.dirname(dest))
    return dest


# -- plan ------------------------------------------------------------------------------------------

def _entry_key(config: BootConfig, entry: BootEntry) -> str:
    where = f"{config.efiboot}:{config.path}" if config.efiboot else config.path
    return f"{where}#{entry.label}"


def _plan(request: ApplyRequest, prepared: _Prepared, workdir: str) -> tuple[ApplyResult, BootConfigEdits]:
    """Edit the boot configs (into workdir) and report every entry's kernel arguments before/after."""
    edits = edit_boot_configs(request.src, os.path.join(workdir, "bootcfg"), kernel_args=prepared.kernel_words,
                              volume_id=request.volume_id)
    before, after = {}, {}
    for config in boot_configs(request.src):
        edited = edits.replace_files.get(config.efiboot or config.path)
        entries = config.entries
        if edited is not None:
            text = read_efiboot_file(edited, config.path) if config.efiboot else _read_text(edited)
            entries = list_entries(text, config.fmt)
        for entry in config.entries:
            before[_entry_key(config, entry)] = list(entry.kernel_args)
        for entry in entries:
            after[_entry_key(config, entry)] = list(entry.kernel_args)
    plugins = [{"name": a.manifest.name, "version": a.manifest.version, "sha256": a.sha256, "path": a.path,
                "packages": [p.nevra for p in a.manifest.packages]} for a in prepared.archives]
    result = ApplyResult(changed=False, path=prepared.dest, reason="", plugins=plugins,
                         base={"path": request.src, "sha256": prepared.base_sha256, "volume_id": prepared.volume_id,
                               "product": prepared.node.product, "version": prepared.node.version,
                               "release": prepared.node.release},
                         kernel_args_before=before, kernel_args=after)
    return result, edits


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return handle.read()


def _up_to_date(prepared: _Prepared, request: ApplyRequest) -> bool:
    if request.force or not os.path.isfile(prepared.dest):
        return False
    try:
        with IsoReader(prepared.dest) as reader:
            if not reader.exists(records.BUILD_RECORD_ISO_PATH):
                return False
            record = records.BuildRecord.from_json(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
    except NodePluginError:
        return False
    if record.inputs_digest != prepared.digest:
        return False
    # The record says how the output was built, not that it is intact: unless the output still has
    # the identity we saw when we wrote or last hashed it, its implanted md5 must hold.
    return is_cached(prepared.dest) or bool(check_md5(prepared.dest).valid)


# -- build -----------------------------------------------------------------------------------------

def _build(request: ApplyRequest, prepared: _Prepared, result: ApplyResult, edits: BootConfigEdits, workdir: str,
           timer: StageTimer, say: ProgressCallback) -> None:
    say("extract")
    with timer.stage("extract"):
        squashfs_root, root_image = _extract_root(request.src, workdir)
        plugin_dirs = _extract_plugins(prepared.archives, workdir)
        install_sets = _install_sets(prepared.archives, plugin_dirs, request)
        live_tree = _stage_live_tree(request.src, workdir) if _needs_live_root(prepared.archives) else None
    say("image")
    with timer.stage("image"):
        update, live_changes = _edit_image(request, prepared, result, workdir, root_image, install_sets, live_tree)
    say("squashfs")
    with timer.stage("squashfs"):
        squashfs = _repack(squashfs_root, prepared, request, workdir)
    say("iso")
    with timer.stage("iso"):
        _write_iso(request, prepared, result, edits, workdir, squashfs, update, live_changes)


def _extract_root(src: str, workdir: str) -> tuple[str, str]:
    """The whole squashfs unpacked (it is repacked whole), and the root image inside it."""
    squashfs = stream_squashfs(src, os.path.join(workdir, "squashfs.img"))
    name, _size = find_root_image(list_squashfs(squashfs), source=f"{src}:{SQUASHFS_ISO_PATH}")
    squashfs_root = os.path.join(workdir, "squashfs-root")
    run(["unsquashfs", "-no-progress", "-quiet", "-d", squashfs_root, squashfs])
    os.unlink(squashfs)
    return squashfs_root, os.path.join(squashfs_root, "LiveOS", name)


def _extract_plugins(archives: Sequence[PluginArchive], workdir: str) -> list[str]:
    dirs = []
    for index, archive in enumerate(archives):
        target = os.path.join(workdir, "plugins", f"{index:02d}-{archive.manifest.name}")
        os.makedirs(target)
        archive.extract(target)
        dirs.append(target)
    return dirs


def _install_sets(archives: Sequence[PluginArchive], plugin_dirs: Sequence[str],
                  request: ApplyRequest) -> list[list[str]]:
    """The RPM files to install per plugin: %packages names and their shipped dependencies,
    minus '-name' exclusions; every file of them checked against the allowed paths first."""
    sets = []
    for archive, folder in zip(archives, plugin_dirs):
        recipe, manifest = archive.recipe, archive.manifest
        wanted = set(recipe.packages) or {package.name for package in manifest.plugin_packages}
        unknown = sorted(wanted - {package.name for package in manifest.packages})
        if unknown:
            raise NodePluginError(f"%packages names {', '.join(unknown)}, which the plugin does not ship",
                                  path=archive.path, hint="every package of the recipe must be under rpms/")
        chosen = [package for package in manifest.packages
                  if (package.name in wanted or package.role == "dependency") and package.name not in recipe.excluded]
        files = [os.path.join(folder, package.file) for package in chosen]
        if not request.allow_unlisted_paths:
            prefixes = allowed_paths(manifest.kind, manifest.allowed_path_overrides)
            try:
                check_paths([read_header(path) for path in files], prefixes)
            except NodePluginError as exc:
                raise NodePluginError(f"plugin {manifest.name}: {exc.message}", path=archive.path, hint=exc.hint,
                                      details=exc.details) from exc
        sets.append(files)
    return sets


def _needs_live_root(archives: Sequence[PluginArchive]) -> bool:
    return any(script.nochroot or script.kind == "pre" for archive in archives for script in archive.recipe.scripts)


def _stage_live_tree(src: str, workdir: str) -> str:
    """The ISO tree without the squashfs (the big file nochroot scripts have no business in)."""
    live = os.path.join(workdir, "live")
    with IsoReader(src) as reader:
        for entry in reader.files():
            relative = entry.path.strip("/")
            if relative.startswith("LiveOS/") or entry.symlink_target is not None:
                continue
            local = os.path.join(live, relative)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            reader.extract(entry.path, local)
    os.makedirs(live, exist_ok=True)
    return live


def _edit_image(request: ApplyRequest, prepared: _Prepared, result: ApplyResult, workdir: str, root_image: str,
                install_sets: list[list[str]], live_tree: str | None) -> tuple[tuple[int, dict[str, bytes]], dict]:
    sizes = [archive.recipe.root_size_mib for archive in prepared.archives if archive.recipe.root_size_mib]
    grow = max(sizes) if sizes else None
    if grow and grow * 1024 * 1024 <= os.path.getsize(root_image):
        grow = None  # already large enough; edit-livecd never shrinks either
    scratch = None
    if live_tree is not None:
        scratch = os.path.join(workdir, "scratch.img")
        make_scratch_disk(scratch, live_tree)
    nochroot_env = {"INSTALL_ROOT": INSTALL_ROOT, "LIVE_ROOT": LIVE_ROOT}
    with RootImageSession(root_image, scratch_disk=scratch, grow_to_mib=grow) as session:
        before = _query_manifests(session)
        result.packages_before = records.nevras_of(before["rpm"])
        for archive, rpm_files in zip(prepared.archives, install_sets):
            name = archive.manifest.name
            for script in [s for s in archive.recipe.scripts if s.kind == "pre"]:
                _vendor_step(result, name, f"%pre (line {script.lineno})", session.run_script(
                    script.body, interpreter=script.interpreter, view="nochroot", env=nochroot_env))
            _vendor_step(result, name, "rpm install", session.install_rpms(rpm_files, nodeps=request.nodeps))
            for script in [s for s in archive.recipe.scripts if s.kind == "post"]:
                view = "nochroot" if script.nochroot else "chroot"
                label = f"%post{' --nochroot' if script.nochroot else ''} (line {script.lineno})"
                _vendor_step(result, name, label, session.run_script(
                    script.body, interpreter=script.interpreter, view=view,
                    env=nochroot_env if script.nochroot else None))
            result.packages[name] = _write_plugin_records(session, archive)
        after = _query_manifests(session)
        result.packages_after = records.nevras_of(after["rpm"])
        update = _write_update_records(session, request, prepared, before, after)
        release = session.read("/etc/system-release").decode("utf-8", "replace")
        session.write("/etc/system-release",
                      records.edited_system_release(release, unsigned=prepared.unsigned).encode("utf-8"))
        result.selinux = _relabel(session, request)
        live_changes = _live_changes(session, live_tree, workdir) if live_tree else {}
    result.update = update[0]
    return update, live_changes


def _vendor_step(result: ApplyResult, plugin: str, step: str, outcome) -> None:
    result.scriptlet_logs.append(StepLog(plugin=plugin, step=step, exit_status=outcome.exit_status,
                                         output=outcome.output))
    if not outcome.ok:
        raise NodePluginError(f"plugin {plugin}: {step} failed with exit status {outcome.exit_status}",
                              details=outcome.output.strip()[-4000:],
                              hint="the output above is what the step printed inside the image")


def _query_manifests(session: RootImageSession) -> dict[str, list[str]]:
    outcome = session.run([session.rpm_binary(), "-qa", "--qf", records.combined_query()])
    # rpm reports a bad query format per package on stderr and still exits 0.
    if not outcome.ok or any(line.startswith("error:") for line in outcome.output.splitlines()):
        raise NodePluginError("the image's rpm could not list its packages", details=outcome.output[-4000:])
    return records.split_combined(outcome.output)


def _write_plugin_records(session: RootImageSession, archive: PluginArchive) -> list[str]:
    """/etc/ovirt-plugins.d/<rpm name> for each of the plugin's own packages; their NEVRAs."""
    wanted = [package.name for package in archive.manifest.plugin_packages if package.name not in archive.recipe.excluded]
    if not wanted:
        return []
    outcome = session.run([session.rpm_binary(), "-q", "--qf",
                           "%{NAME}\t%{VERSION}-%{RELEASE}.%{ARCH}\t%{INSTALLTIME:date}\n", *wanted])
    found = {}
    for line in outcome.output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            found[fields[0]] = fields
    missing = [name for name in wanted if name not in found]
    if missing:
        raise NodePluginError(f"plugin {archive.manifest.name}: {', '.join(missing)} not installed after the "
                              "install step", details=outcome.output[-4000:])
    installed = []
    for name in wanted:
        _name, evra, date = found[name]
        session.write(f"{records.RECORDS_DIR}/{name}", records.plugin_record(name, evra, date).encode("utf-8"))
        installed.append(f"{name}-{evra}")
    return installed


def _write_update_records(session: RootImageSession, request: ApplyRequest, prepared: _Prepared,
                          before: dict, after: dict) -> tuple[int, dict[str, bytes]]:
    with IsoReader(request.src) as reader:
        # files() lists files only: the update folders are the parents of isolinux/updateN/*.
        names = {parts[1] for parts in (entry.path.strip("/").split("/") for entry in reader.files())
                 if len(parts) > 2 and parts[0] == "isolinux"}
    number = records.next_update_number(names)
    installed = []
    for archive in prepared.archives:
        for package in archive.manifest.plugin_packages:
            installed.append(f"{archive.manifest.name} {archive.manifest.version} {package.nevra}")
    files = records.update_files(number, before, after, installed)
    for name, content in files.items():
        session.write(f"{records.IMAGE_MANIFESTS_DIR}/update{number}/{name}", content)
    return number, files


def _relabel(session: RootImageSession, request: ApplyRequest) -> str:
    if request.selinux_relabel == "never":
        return "skipped: selinux_relabel=never"
    state = session.selinux_state()
    if not state.enabled and request.selinux_relabel == "always":
        raise NodePluginError("selinux_relabel=always, but the image has no enforced SELinux policy",
                              hint="use selinux_relabel=auto")
    return session.relabel()


def _live_changes(session: RootImageSession, live_tree: str, workdir: str) -> dict[str, str]:
    """Files that nochroot scripts added or changed in LIVE_ROOT: ISO path -> local file."""
    session.use_view("nochroot")
    after = os.path.join(workdir, "live-after")
    session.download_tree(LIVE_ROOT, after)
    session.use_view("chroot")
    changes = {}
    for folder, _dirs, files in os.walk(after):
        for name in files:
            local = os.path.join(folder, name)
            relative = os.path.relpath(local, after)
            if os.path.islink(local):
                continue
            original = os.path.join(live_tree, relative)
            if not os.path.isfile(original) or not filecmp.cmp(original, local, shallow=False):
                changes[relative] = local
    return changes


def _repack(squashfs_root: str, prepared: _Prepared, request: ApplyRequest, workdir: str) -> str:
    """mksquashfs with the base's compressor and block size (or the requested compressor)."""
    output = os.path.join(workdir, "squashfs.img")
    compressor = request.compression or prepared.squashfs.compressor
    argv = ["mksquashfs", squashfs_root, output, "-noappend", "-no-progress", "-quiet",
            "-comp", compressor, "-b", str(prepared.squashfs.block_size)]
    epoch = source_date_epoch()
    if epoch is not None:
        argv += ["-mkfs-time", str(epoch), "-all-time", str(epoch)]
    run(argv)
    shutil.rmtree(squashfs_root)
    return output


def _write_iso(request: ApplyRequest, prepared: _Prepared, result: ApplyResult, edits: BootConfigEdits, workdir: str,
               squashfs: str, update: tuple[int, dict[str, bytes]], live_changes: dict[str, str]) -> None:
    number, files = update
    replace = {SQUASHFS_ISO_PATH: squashfs, **edits.replace_files}
    add: dict[str, str] = {}
    staging = os.path.join(workdir, "iso-add")
    update_dir = os.path.join(staging, f"update{number}")
    os.makedirs(update_dir)
    for name, content in files.items():
        with open(os.path.join(update_dir, name), "wb") as handle:
            handle.write(content)
    record = _build_record(request, prepared, result, number)
    record_file = os.path.join(staging, "ovirt-plugins-build.json")
    with open(record_file, "wb") as handle:
        handle.write(record.to_json())
    with IsoReader(request.src) as reader:
        def place(iso_path: str, local: str) -> None:
            (replace if reader.exists(iso_path) else add)[iso_path] = local
        place(f"isolinux/update{number}", update_dir)
        place(records.BUILD_RECORD_ISO_PATH, record_file)
        for link, target in records.current_manifest_links(number).items():
            local = os.path.join(staging, link)
            os.symlink(target, local)
            place(f"isolinux/{link}", local)
        for relative, local in live_changes.items():
            if relative in (path.strip("/") for path in replace):
                continue  # configs edited by the engine win over a script's copy
            place(relative, local)
    written = rewrite_iso(request.src, prepared.dest, replace_files=replace, add_files=add,
                          volume_id=request.volume_id, implant=True)
    result.sha256 = cached_sha256(written.path)
    result.size = os.path.getsize(written.path)


def _build_record(request: ApplyRequest, prepared: _Prepared, result: ApplyResult, number: int) -> records.BuildRecord:
    history: list[dict] = []
    with IsoReader(request.src) as reader:
        if reader.exists(records.BUILD_RECORD_ISO_PATH):
            earlier = records.BuildRecord.from_json(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
            earlier_entry = dataclasses.asdict(earlier)
            history = earlier_entry.pop("history", []) + [earlier_entry]
    epoch = source_date_epoch()
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch is not None \
        else datetime.datetime.now(datetime.timezone.utc)
    return records.BuildRecord(
        base_sha256=prepared.base_sha256, base_volume_id=prepared.volume_id,
        plugins=[{"name": a.manifest.name, "version": a.manifest.version, "sha256": a.sha256,
                  "manifest": a.manifest.to_dict(), "signer": a.signer} for a in prepared.archives],
        options=request.options_for_digest(), inputs_digest=prepared.digest, update=number,
        packages=dict(result.packages), kernel_args=dict(result.kernel_args),
        created=moment.strftime("%Y-%m-%dT%H:%M:%SZ"), history=history)
