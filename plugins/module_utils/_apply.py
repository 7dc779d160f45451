# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rebuild engine: a base Node ISO + plugins -> a customized ISO, the way edit-node did it.

Named stages, each ``stage(inputs) -> output`` with a typed output, timed, in this order:
  prepare   -> Prepared     the base ISO opened once (NodeIso), every plugin opened without trusting
                            it (for a rebase: the tarballs the old ISO carries); compatibility,
                            signatures and names checked before any work; what the edit changes in
                            the plugins the base holds (_lifecycle: upgrades, removals, kernel
                            arguments taken back, the initramfs of kmod plugins)
  plan      -> Plan         the output's path, the inputs' digest, the update number, the boot
                            configs edited (BIOS, UEFI tree, inside efiboot.img) and every entry's
                            kernel arguments before/after; check and diff mode stop here
  extract   -> Extracted    the root image as a lazily read file of the base's squashfs (nothing is
                            unpacked), the plugins' verified members, the RPMs each plugin installs
                            (allowed paths checked), the ISO tree for nochroot scripts
  image     -> ImageEdit    one libguestfs appliance on the root image served over NBD under a qcow2
                            overlay (every write lands there, one cluster per squashfs block): resize,
                            %pre, rpm install with the image's own rpm, %post, records, erase of what
                            departing plugins brought, depmod and dracut for kmod plugins, manifests,
                            (Edited), SELinux relabel; vendor code never runs on the host
  squashfs  -> Repacked     the base's compressed blocks copied, only the blocks the overlay holds
                            compressed (with the base's compressor and options); a full mksquashfs
                            when that cannot be done, with the reason
  iso       -> WrittenIso   written with xorriso boot replay (the plugins' tarballs carried in
                            /ovirt-plugins, a rebuilt initramfs wherever the base had its one), md5
                            implanted, renamed into place
ApplyResult is assembled from those outputs at the end. The work directory sits next to the output
and is removed on success and on failure alike.
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

from . import _records as records
from . import _lifecycle as lifecycle
from ._bootcfg import KernelArgEdits, write_efiboot_file
from ._choices import COMPRESSORS, SELINUX_RELABEL
from ._digests import cached_sha256, file_sha256, is_cached
from ._errors import NodePluginError
from ._iso import BootConfig, BootConfigEdits, IsoReader, check_replayable, edit_boot_configs, rewrite_iso
from ._isotree import scripts_may_write, tree_reference
from ._isomd5 import check as check_md5
from ._liveos import SQUASHFS_PATH, find_root_image_path
from ._nodeinfo import NodeInfo
from ._nodeiso import NodeIso
from ._outputs import OutputLock, check_distinct, check_tmpdir, clean_stale, clean_stale_runs, work_dir
from ._overlay import ImageChanges
from ._persist import BOOT_HOOK, PERSIST_LISTS_DIR, image_files
from ._plugin import PluginArchive, PluginManifest, install_set, open_plugin, require_signed_packages, unsigned_packages
from ._reproducible import source_date_epoch, utc_timestamp
from ._request import ApplyRequest, ApplyResult, StepLog, output_path
from ._rootfs import INSTALL_ROOT, LIVE_ROOT, RootImageSession, make_scratch_disk
from ._rpmhdr import RpmHeader
from ._rpmdb import RPMDB_PATH, image_dir_lister, image_file_reader, rpmdb_format_from_names, rpmdb_write_problem
from ._run import StageTimer, run
from ._squashfs import BlocksFromSource, IncrementalUnsupported, SquashfsFile, SquashfsImage, rewrite_squashfs

SQUASHFS_ISO_PATH = SQUASHFS_PATH.lstrip("/")
ProgressCallback = Callable[[str], None]
SessionFactory = Callable[..., RootImageSession]


# -- stage outputs ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Prepared:
    """The checked inputs: the base ISO (open), the plugins, and the digest that identifies the output;
    what the edit changes in the plugins the base holds. Use as a context manager (closes the base,
    removes the carried tarballs a rebase extracted)."""

    base: NodeIso
    archives: list[PluginArchive]
    unsigned: bool
    dest: str
    digest: str
    kernel_edits: KernelArgEdits
    change: lifecycle.PluginChange = lifecycle.PluginChange(held=(), applied=(), removed=())
    initramfs: lifecycle.InitramfsPlan | None = None
    # The base's TreeReference as a dict, when prepare needed it (kmod plugins); else build_record reads it.
    base_tree: dict | None = None
    notes: tuple[str, ...] = ()
    # A rebase: the old ISO's identity, the carried plugins left out, the folder of the extracted tarballs.
    rebased_from: dict = dataclasses.field(default_factory=dict)
    skipped: tuple[dict, ...] = ()
    scratch: str | None = None

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.base.close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the build will write, known before any image work (check and diff mode report it)."""

    dest: str
    digest: str
    update: int
    boot_edits: BootConfigEdits
    kernel_args_before: dict[str, list[str]]
    kernel_args_after: dict[str, list[str]]
    up_to_date: bool


@dataclasses.dataclass(frozen=True)
class Extracted:
    """The pieces the image stage works on: the root image read lazily, files in the work directory."""

    squashfs: SquashfsImage
    root_path: str
    root_image: SquashfsFile
    install_sets: list[list[str]]
    live_tree: str | None
    # The package names of each install set (what each plugin brings, the origin's packages aside).
    install_names: list[list[str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ImageEdit:
    """What the appliance did to the root image."""

    packages: dict[str, list[str]]
    packages_before: list[str]
    packages_after: list[str]
    update_files: dict[str, bytes]
    live_changes: dict[str, str]
    scriptlet_logs: list[StepLog]
    selinux: str
    changes: ImageChanges
    launch_seconds: float = 0.0
    # Package names each applied plugin brought; what the departing plugins' erase did.
    brought: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    erased: list[str] = dataclasses.field(default_factory=list)
    kept: dict[str, str] = dataclasses.field(default_factory=dict)
    initramfs: lifecycle.RebuiltInitramfs | None = None


@dataclasses.dataclass(frozen=True)
class Repacked:
    """The new squashfs, and how it was made: ``incremental`` (blocks reused) or ``full`` (and why)."""

    path: str
    path_taken: str
    reason: str
    report: dict


@dataclasses.dataclass(frozen=True)
class WrittenIso:
    """The output ISO in place."""

    path: str
    sha256: str
    size: int


# -- the pipeline ----------------------------------------------------------------------------------

def apply_plugins(request: ApplyRequest, *, progress: ProgressCallback | None = None,
                  session_factory: SessionFactory = RootImageSession) -> ApplyResult:
    """Rebuild request.src with request.plugins into request.dest; see the module docstring.

    The output is locked for the run (a second writer is refused), and what a killed earlier run
    left beside it is removed first. ``session_factory`` opens the image session (tests of the
    orchestration pass a fake one).
    """
    timer = StageTimer()
    say = progress or (lambda _stage: None)
    say("prepare")
    with timer.stage("prepare"):
        prepared = prepare(request)
    with prepared:
        if request.check_mode:
            return run_apply(request, prepared, timer, say, session_factory)
        with OutputLock(prepared.dest):
            clean_stale(prepared.dest)
            return run_apply(request, prepared, timer, say, session_factory)


def run_apply(request: ApplyRequest, prepared: Prepared, timer: StageTimer, say: ProgressCallback,
              session_factory: SessionFactory = RootImageSession) -> ApplyResult:
    """Plan, then build unless up to date or in check mode, into ``prepared.dest`` (the caller holds its lock)."""
    workdir = work_dir(prepared.dest)
    kept_workdir = None
    try:
        say("plan")
        with timer.stage("plan"):
            planned = plan(request, prepared, workdir)
        result = _result(request, prepared, planned)
        if planned.up_to_date:
            result.reason = "up to date: the output's build record matches the inputs"
            result.sha256, result.size = cached_sha256(planned.dest), os.path.getsize(planned.dest)
        elif request.check_mode:
            result.changed, result.reason = True, "would build"
        else:
            image, written, repacked = _build(request, prepared, planned, workdir, timer, say, session_factory)
            result.changed, result.reason = True, "built"
            _record_build(result, prepared, image, written, repacked)
        if request.keep_workdir and not request.check_mode:
            kept_workdir = workdir
    finally:
        if kept_workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result.workdir = kept_workdir
    result.durations = timer.durations
    return result


def _build(request: ApplyRequest, prepared: Prepared, planned: Plan, workdir: str, timer: StageTimer,
           say: ProgressCallback, session_factory: SessionFactory) -> tuple[ImageEdit, WrittenIso, Repacked]:
    say("extract")
    with timer.stage("extract"):
        extracted = extract(request, prepared, workdir)
    say("image")
    with timer.stage("image"):
        image = edit_image(request, prepared, planned, extracted, workdir, session_factory)
    timer.durations["image: appliance launch"] = image.launch_seconds  # a part of "image", shown apart
    say("squashfs")
    with timer.stage("squashfs"):
        repacked = repack(request, prepared, extracted, image, workdir)
    say("iso")
    with timer.stage("iso"):
        written = write_iso(request, prepared, planned, image, repacked.path, workdir)
    return image, written, repacked


def _result(request: ApplyRequest, prepared: Prepared, planned: Plan) -> ApplyResult:
    node: NodeInfo = prepared.base.node
    plugins = [{"name": a.manifest.name, "version": a.manifest.version, "sha256": a.sha256, "path": a.path,
                "packages": [p.nevra for p in a.manifest.packages]} for a in prepared.archives]
    change = prepared.change
    return ApplyResult(changed=False, path=planned.dest, reason="", plugins=plugins, update=planned.update,
                       base={"path": request.src, "sha256": prepared.base.sha256,
                             "volume_id": prepared.base.volume_id, "product": node.product,
                             "version": node.version, "release": node.release},
                       kernel_args_before=planned.kernel_args_before, kernel_args=planned.kernel_args_after,
                       removed=[{"name": plugin.name, "version": plugin.version, "brought": plugin.brought_names()}
                                for plugin in change.removed],
                       upgraded=change.upgrades(prepared.archives), skipped_plugins=list(prepared.skipped),
                       initramfs=prepared.initramfs.to_dict() if prepared.initramfs else {},
                       notes=list(prepared.notes), erased=_expected_erase(prepared) if request.check_mode else [])


def _expected_erase(prepared: Prepared) -> list[str]:
    """What check mode says the build would erase: what departing plugins brought and no staying plugin ships
    (the build asks the image's rpm, and keeps what installed packages still need)."""
    record = prepared.base.build_record.record
    origin = record.origin_info().packages if record else None
    staying = {package.name for archive in prepared.archives for package in archive.manifest.packages} | \
        {name for plugin in prepared.change.kept for name in plugin.brought_names()}
    return lifecycle.erase_candidates(prepared.change, staying, {nevra.rsplit("-", 2)[0] for nevra in origin or ()})


def _record_build(result: ApplyResult, prepared: Prepared, image: ImageEdit, written: WrittenIso,
                  repacked: Repacked) -> None:
    result.squashfs = {"path_taken": repacked.path_taken, "reason": repacked.reason, **repacked.report}
    result.packages = dict(image.packages)
    result.packages_before = list(image.packages_before)
    result.packages_after = list(image.packages_after)
    result.scriptlet_logs = list(image.scriptlet_logs)
    result.selinux = image.selinux
    result.sha256, result.size = written.sha256, written.size
    result.erased, result.kept = list(image.erased), dict(image.kept)
    if image.initramfs is not None and prepared.initramfs is not None:
        result.initramfs = {**prepared.initramfs.to_dict(), "sha256": image.initramfs.sha256}


# -- prepare ---------------------------------------------------------------------------------------

def _check_options(request: ApplyRequest) -> None:
    if not request.plugins and not request.remove and not request.rebase_from:
        raise NodePluginError("no plugins given", hint="name at least one plugin tarball, a plugin to remove, or "
                                                       "the customized ISO to rebase from")
    if request.selinux_relabel not in SELINUX_RELABEL:
        raise NodePluginError(f"selinux_relabel={request.selinux_relabel!r} is not valid",
                              hint=f"use one of {', '.join(SELINUX_RELABEL)}")
    if request.compression is not None and request.compression not in COMPRESSORS:
        raise NodePluginError(f"compression={request.compression!r} is not supported",
                              hint=f"use one of {', '.join(COMPRESSORS)}, or leave it unset to keep the base's")
    request.kernel_arg_edits()  # refuses a malformed argument before any work


def prepare(request: ApplyRequest) -> Prepared:
    """Open the base ISO and the plugins and check everything that can be checked without work."""
    _check_options(request)
    check_tmpdir()
    clean_stale_runs()
    if not os.path.isfile(request.src):
        raise NodePluginError("the base ISO does not exist", path=request.src)
    base = NodeIso(request.src)
    scratch = None
    try:
        check_replayable(base)
        _check_image_rpm(base)
        archives = [open_plugin(path, keyring=request.keyring, require_signature=request.require_signed)
                    for path in request.plugins]
        carried: lifecycle.Carried | None = None
        rebased_from: dict = {}
        if request.rebase_from:
            scratch = tempfile.mkdtemp(prefix="ovirt-node-plugins-rebase-")
            carried, rebased_from = _carried(request, request.rebase_from, base, archives, scratch)
            archives = [open_plugin(path, keyring=request.keyring, require_signature=request.require_signed)
                        for path in carried.paths] + archives
        _check_compatibility(archives, base)
        unsigned = bool(unsigned_packages(archives))
        if request.require_signed:
            require_signed_packages(archives, request.src)
        _check_unique_names(archives)
        # A rebase starts from a Node without plugins: its removals were the carried plugins left out.
        change = lifecycle.plan_change(base, archives, [] if carried else request.remove)
        record = base.build_record.record
        takeback = lifecycle.take_back_kernel_args(
            change, [word for plugin in change.kept for word in plugin.kernel_args] + _recipe_words(archives) +
            lifecycle.user_kernel_words(record) + request.kernel_arg_edits().words(),
            record.origin_info().tree if record else {})
        kernel_edits = takeback.edits.then(_kernel_edits(request, archives))
        base_tree = tree_reference(base).to_dict() if lifecycle.touches_kmod(change, archives) else None
        initramfs = lifecycle.plan_initramfs(base, base_tree or {}, archives, change, change.kept)
        dest = output_path(request.dest, request.src, [archive.manifest.name for archive in archives],
                           [] if carried else request.remove)
        check_distinct({"output ISO": dest}, {"base ISO": request.src, "keyring": request.keyring,
                                              "ISO to rebase from": request.rebase_from,
                                              **{f"plugin {path}": path for path in request.plugins}})
        options = {**request.options_for_digest(), **({"rebase_from": rebased_from["sha256"]} if carried else {})}
        digest = records.inputs_digest(base.sha256, [archive.sha256 for archive in archives], options)
    except BaseException:
        base.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Prepared(base=base, archives=archives, unsigned=unsigned, dest=dest, digest=digest,
                    kernel_edits=kernel_edits, change=change, initramfs=initramfs, base_tree=base_tree,
                    notes=tuple(takeback.notes), rebased_from=rebased_from,
                    skipped=tuple(carried.skipped) if carried else (), scratch=scratch)


def _carried(request: ApplyRequest, source: str, base: NodeIso, given: Sequence[PluginArchive],
             folder: str) -> tuple[lifecycle.Carried, dict]:
    """The plugin tarballs the ISO to rebase from carries, extracted into folder (given ones and removed ones
    left out), and that ISO's identity for the record."""
    if not os.path.isfile(source):
        raise NodePluginError("the ISO to rebase from does not exist", path=source)
    with NodeIso(source) as old:
        leave_out = [archive.manifest.name for archive in given] + list(request.remove)
        carried = lifecycle.carried_plugins(old, base, folder, skip_incompatible=request.skip_incompatible,
                                            leave_out=leave_out)
        node = old.node
        return carried, {"sha256": old.sha256, "volume_id": old.volume_id, "product": node.product,
                         "version": node.version, "release": node.release,
                         "plugins": [f"{plugin.name} {plugin.version}" for plugin in carried.record.plugins]}


def _recipe_words(archives: Sequence[PluginArchive]) -> list[str]:
    """The applied plugins' recipe kernel-argument words (edit-livecd notation)."""
    return [word for archive in archives for word in KernelArgEdits(
        tuple(archive.recipe.kernel_args_add), tuple(archive.recipe.kernel_args_remove)).words()]


def _check_image_rpm(base: NodeIso) -> None:
    """Refuse, before any work, an image whose own rpm cannot write its database (plugins are installed with it).

    Read in place from the root file system: /var/lib/rpm's listing and the image's rpm macros.
    """
    root = base.root_filesystem()
    names = image_dir_lister(root)(RPMDB_PATH)
    database_format = rpmdb_format_from_names(names or ())
    if database_format is None:
        raise NodePluginError(f"the image has no rpm database in {RPMDB_PATH}", path=base.path,
                              hint="plugins are installed with the image's own rpm; this image cannot take them")
    problem = rpmdb_write_problem(database_format, image_file_reader(root), image_dir_lister(root))
    if problem:
        raise NodePluginError(problem, path=base.path)


def _check_compatibility(archives: Sequence[PluginArchive], base: NodeIso) -> None:
    node = base.node
    problems = [f"plugin {archive.manifest.name} {archive.manifest.version} {problem}" for archive in archives
                if (problem := node.incompatibility(archive.manifest.node.product, archive.manifest.node.versions))]
    if problems:
        raise NodePluginError("incompatible plugins: " + "; ".join(problems), path=base.path,
                              hint=f"the ISO's version was read from {node.source}; use a plugin release made for it")


def _check_unique_names(archives: Sequence[PluginArchive]) -> None:
    seen = set()
    for archive in archives:
        if archive.manifest.name in seen:
            raise NodePluginError(f"the plugin {archive.manifest.name} is given twice", path=archive.path,
                                  hint="apply each plugin once; a newer version upgrades the older")
        seen.add(archive.manifest.name)


def _kernel_edits(request: ApplyRequest, archives: Sequence[PluginArchive]) -> KernelArgEdits:
    """Kernel-argument edits in order: each plugin's bootloader --append, then the request's."""
    edits = KernelArgEdits()
    for archive in archives:
        edits = edits.then(KernelArgEdits(tuple(archive.recipe.kernel_args_add),
                                          tuple(archive.recipe.kernel_args_remove)))
    return edits.then(request.kernel_arg_edits())


# -- plan ------------------------------------------------------------------------------------------

def entry_key(config: BootConfig, label: str) -> str:
    """How results name a boot entry: ``<config>#<label>`` (``<efi image>:<config>#<label>`` inside one)."""
    return f"{config.where}#{label}"


def plan(request: ApplyRequest, prepared: Prepared, workdir: str) -> Plan:
    """Edit the boot configs (into workdir), fix the update number, and decide whether work is needed."""
    base = prepared.base
    edits = edit_boot_configs(base, os.path.join(workdir, "bootcfg"), prepared.kernel_edits,
                              volume_id=request.volume_id)
    before = {entry_key(config, entry.label): list(entry.kernel_args)
              for config in base.boot_configs() for entry in config.entries}
    after = {entry_key(config, entry.label): list(entry.kernel_args)
             for config in edits.configs for entry in config.entries}
    return Plan(dest=prepared.dest, digest=prepared.digest, update=base.next_update_number(), boot_edits=edits,
                kernel_args_before=before, kernel_args_after=after,
                up_to_date=_up_to_date(prepared.dest, prepared.digest, force=request.force))


def _up_to_date(dest: str, digest: str, *, force: bool) -> bool:
    """The output exists, its build record names these inputs, and it is intact."""
    if force or not os.path.isfile(dest):
        return False
    try:
        with IsoReader(dest) as reader:
            if not reader.exists(records.BUILD_RECORD_ISO_PATH):
                return False
            record = records.BuildRecord.from_json(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
    except NodePluginError:
        return False
    if record.inputs_digest != digest:
        return False
    # The record says how the output was built, not that it is intact: unless the output still has
    # the identity we saw when we wrote or last hashed it, its implanted md5 must hold.
    return is_cached(dest) or bool(check_md5(dest).valid)


# -- extract ---------------------------------------------------------------------------------------

def extract(request: ApplyRequest, prepared: Prepared, workdir: str) -> Extracted:
    """The root image as a lazily read file of the base's squashfs, the plugins, install sets, ISO tree."""
    squashfs = prepared.base.squashfs_image()
    root_path = find_root_image_path(squashfs, source=f"{prepared.base.path}:{SQUASHFS_PATH}")
    plugin_dirs = _extract_plugins(prepared.archives, workdir)
    headers = _install_sets(prepared.archives, plugin_dirs, request)
    live_tree = _stage_live_tree(prepared.base, workdir) if _needs_live_root(prepared.archives) else None
    return Extracted(squashfs=squashfs, root_path=root_path, root_image=squashfs.open_file(root_path),
                     install_sets=[[header.path for header in chosen] for chosen in headers], live_tree=live_tree,
                     install_names=[[header.name for header in chosen] for chosen in headers])


def _extract_plugins(archives: Sequence[PluginArchive], workdir: str) -> list[str]:
    dirs = []
    for index, archive in enumerate(archives):
        target = os.path.join(workdir, "plugins", f"{index:02d}-{archive.manifest.name}")
        os.makedirs(target)
        archive.extract(target)
        dirs.append(target)
    return dirs


def _install_sets(archives: Sequence[PluginArchive], plugin_dirs: Sequence[str],
                  request: ApplyRequest) -> list[list[RpmHeader]]:
    """The RPMs to install per plugin (_plugin.install_set: allowed paths checked first)."""
    return [install_set(archive, folder, allow_unlisted_paths=request.allow_unlisted_paths)
            for archive, folder in zip(archives, plugin_dirs)]


def _needs_live_root(archives: Sequence[PluginArchive]) -> bool:
    return any(script.nochroot or script.kind == "pre" for archive in archives for script in archive.recipe.scripts)


def _stage_live_tree(base: NodeIso, workdir: str) -> str:
    """The ISO tree without the squashfs (the big file nochroot scripts have no business in)."""
    live = os.path.join(workdir, "live")
    for entry in base.files():
        relative = entry.path.strip("/")
        if relative.startswith("LiveOS/") or entry.symlink_target is not None:
            continue
        local = os.path.join(live, relative)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        base.extract(entry.path, local)
    os.makedirs(live, exist_ok=True)
    return live


# -- image -----------------------------------------------------------------------------------------

def edit_image(request: ApplyRequest, prepared: Prepared, planned: Plan, extracted: Extracted, workdir: str,
               session_factory: SessionFactory = RootImageSession) -> ImageEdit:
    """Everything done inside the root image, in one appliance."""
    sizes = [archive.recipe.root_size_mib for archive in prepared.archives if archive.recipe.root_size_mib]
    grow = max(sizes) if sizes else None
    if grow and grow * 1024 * 1024 <= extracted.root_image.size:
        grow = None  # already large enough; edit-livecd never shrinks either
    scratch = None
    if extracted.live_tree is not None:
        scratch = os.path.join(workdir, "scratch.img")
        make_scratch_disk(scratch, extracted.live_tree)
    nochroot_env = {"INSTALL_ROOT": INSTALL_ROOT, "LIVE_ROOT": LIVE_ROOT}
    logs: list[StepLog] = []
    packages: dict[str, list[str]] = {}
    overlay = os.path.join(workdir, "root-overlay.qcow2")
    with session_factory(extracted.root_image, overlay=overlay, block_size=extracted.squashfs.superblock.block_size,
                         label=f"the root image {extracted.root_path.lstrip('/')}", scratch_disk=scratch,
                         grow_to_mib=grow) as session:
        before, _installed = _query_manifests(session)
        for archive, rpm_files in zip(prepared.archives, extracted.install_sets):
            name = archive.manifest.name
            for script in [s for s in archive.recipe.scripts if s.kind == "pre"]:
                _vendor_step(logs, name, f"%pre (line {script.lineno})", session.run_script(
                    script.body, interpreter=script.interpreter, view="nochroot", env=nochroot_env))
            _vendor_step(logs, name, "rpm install", session.install_rpms(rpm_files, nodeps=request.nodeps))
            for script in [s for s in archive.recipe.scripts if s.kind == "post"]:
                view = "nochroot" if script.nochroot else "chroot"
                label = f"%post{' --nochroot' if script.nochroot else ''} (line {script.lineno})"
                _vendor_step(logs, name, label, session.run_script(
                    script.body, interpreter=script.interpreter, view=view,
                    env=nochroot_env if script.nochroot else None))
        brought, erased = _take_back(session, prepared, extracted, records.nevras_of(before["rpm"]), logs)
        initramfs = None
        if prepared.initramfs is not None and prepared.initramfs.kernel_version:
            initramfs = lifecycle.rebuild_initramfs(session, prepared.initramfs, workdir)
            kmod = sorted({*prepared.change.applied, *(plugin.name for plugin in prepared.change.departing)})
            _vendor_step(logs, ", ".join(kmod), "depmod and initramfs (the image's dracut)"
                         if prepared.initramfs.rebuild else "depmod", initramfs.outcome)
        after, installed = _query_manifests(session)
        for archive in prepared.archives:
            packages[archive.manifest.name] = _write_plugin_records(session, archive, installed)
        update_files = _write_update_records(session, prepared, planned.update, before, after)
        release = session.read("/etc/system-release").decode("utf-8", "replace")
        session.write("/etc/system-release",
                      records.edited_system_release(release, unsigned=prepared.unsigned).encode("utf-8"))
        _write_persist_files(session, prepared)
        selinux = _relabel(session, request)
        live_changes = _live_changes(session, extracted.live_tree, workdir) if extracted.live_tree else {}
    if session.changes is None:  # a writable session notes its changes when it closes
        raise NodePluginError("the root image's session ended without noting what it changed",
                              path=f"{prepared.base.path}:{extracted.root_path}")
    _check_live_changes(prepared, live_changes)
    return ImageEdit(packages=packages, packages_before=records.nevras_of(before["rpm"]),
                     packages_after=records.nevras_of(after["rpm"]), update_files=update_files,
                     live_changes=live_changes, scriptlet_logs=logs, selinux=selinux, changes=session.changes,
                     launch_seconds=round(getattr(session, "launch_seconds", 0.0), 3), brought=brought,
                     erased=erased.erased, kept=erased.kept, initramfs=initramfs)


def _protected_packages(prepared: Prepared, packages_before: Sequence[str]) -> set[str]:
    """Names of the origin's packages, which no removal or upgrade erases (whatever a plugin says it brought)."""
    record = prepared.base.build_record.record
    if record is None:
        return {nevra.rsplit("-", 2)[0] for nevra in packages_before}
    origin = record.origin_info().packages
    if origin is not None:
        return {nevra.rsplit("-", 2)[0] for nevra in origin}
    # Recorded by an older build: what the base holds that no plugin of its history ever brought.
    return {nevra.rsplit("-", 2)[0] for nevra in packages_before} - record.plugin_packages_ever()


def _take_back(session: RootImageSession, prepared: Prepared, extracted: Extracted, packages_before: Sequence[str],
               logs: list[StepLog]) -> tuple[dict[str, list[str]], lifecycle.Erased]:
    """What each applied plugin brought; erase what the departing plugins brought and nothing needs any more,
    and delete their stale records and persist lists."""
    change = prepared.change
    protected = _protected_packages(prepared, packages_before)
    brought = {archive.manifest.name: sorted(set(names) - protected)
               for archive, names in zip(prepared.archives, extracted.install_names)}
    staying = {name for names in brought.values() for name in names} | \
        {name for plugin in change.kept for name in plugin.brought_names()}
    erased = lifecycle.erase_unneeded(session, lifecycle.erase_candidates(change, staying, protected))
    if erased.outcome is not None:
        _vendor_step(logs, ", ".join(plugin.name for plugin in change.departing), "rpm erase", erased.outcome)
    # What an upgraded plugin's older version brought and installed packages still need: the new version's now.
    for plugin in change.superseded:
        brought[plugin.name] = sorted(set(brought[plugin.name]) | (set(erased.kept) & set(plugin.brought_names())))
    applied = set(change.applied)
    stale = [f"{records.RECORDS_DIR}/{name}" for name in lifecycle.stale_records(
        change, [archive.manifest for archive in prepared.archives] + [plugin.manifest for plugin in change.kept])]
    stale += [f"{PERSIST_LISTS_DIR}/{plugin.name}" for plugin in change.departing if plugin.name not in applied]
    if change.departing and not image_files(_held_manifests(prepared)):
        stale.append(BOOT_HOOK)
    session.remove(stale)
    return brought, erased


def _held_manifests(prepared: Prepared) -> list[PluginManifest]:
    """The manifests of the plugins the ISO holds after the edit."""
    return [plugin.manifest for plugin in prepared.change.kept] + [archive.manifest for archive in prepared.archives]


def _write_persist_files(session: RootImageSession, prepared: Prepared) -> None:
    """Declared persist paths: a boot hook keeps them through the Node's own mechanism (stateful Nodes).
    The applied plugins' lists are written; the hook when some plugin declares paths."""
    applied = {archive.manifest.name for archive in prepared.archives}
    for path, image_file in image_files(_held_manifests(prepared)).items():
        if path == BOOT_HOOK or path.rsplit("/", 1)[-1] in applied:
            session.write(path, image_file.content, mode=image_file.mode)


def _vendor_step(logs: list[StepLog], plugin: str, step: str, outcome) -> None:
    logs.append(StepLog(plugin=plugin, step=step, exit_status=outcome.exit_status, output=outcome.output))
    if not outcome.ok:
        raise NodePluginError(f"plugin {plugin}: {step} failed with exit status {outcome.exit_status}",
                              details=outcome.output.strip()[-4000:],
                              hint="the output below is what the step printed inside the image")


# Besides the manifests, each package's name, version and install date: the plugins' records are written from the
# same query (one command in the appliance, not one more per plugin).
_INSTALLED = "installed"
_INSTALLED_QUERY = f"{_INSTALLED}\\t%{{NAME}}\\t%{{VERSION}}-%{{RELEASE}}.%{{ARCH}}\\t%{{INSTALLTIME:date}}\\n"


def _query_manifests(session: RootImageSession) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]]]:
    """The image's manifests (records.split_combined) and, by package name, (version-release.arch, install date)."""
    outcome = session.run_rpm(["-qa", "--qf", records.combined_query() + _INSTALLED_QUERY])
    # rpm reports a bad query format per package on stderr and still exits 0.
    if not outcome.ok or any(line.startswith("error:") for line in outcome.output.splitlines()):
        raise NodePluginError("the image's rpm could not list its packages", details=outcome.output[-4000:])
    installed = {}
    for line in outcome.output.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == _INSTALLED:
            installed[fields[1]] = (fields[2], fields[3])
    return records.split_combined(outcome.output), installed


def _write_plugin_records(session: RootImageSession, archive: PluginArchive,
                          installed: dict[str, tuple[str, str]]) -> list[str]:
    """/etc/ovirt-plugins.d/<rpm name> for each of the plugin's own packages; their NEVRAs."""
    wanted = [package.name for package in archive.manifest.plugin_packages if package.name not in archive.recipe.excluded]
    missing = [name for name in wanted if name not in installed]
    if missing:
        raise NodePluginError(f"plugin {archive.manifest.name}: {', '.join(missing)} not installed after the edit",
                              hint="a %post script or another plugin's step may have erased it; the scriptlet "
                                   "logs in the build record say what each step did")
    records_written = []
    for name in wanted:
        evra, date = installed[name]
        session.write(f"{records.RECORDS_DIR}/{name}", records.plugin_record(name, evra, date).encode("utf-8"))
        records_written.append(f"{name}-{evra}")
    return records_written


def _write_update_records(session: RootImageSession, prepared: Prepared, number: int,
                          before: dict, after: dict) -> dict[str, bytes]:
    installed = [f"{archive.manifest.name} {archive.manifest.version} {package.nevra}"
                 for archive in prepared.archives for package in archive.manifest.plugin_packages]
    removed = [f"{plugin.name} {plugin.version}" for plugin in prepared.change.removed]
    files = records.update_files(number, before, after, installed, removed)
    for name, content in files.items():
        session.write(f"{records.IMAGE_MANIFESTS_DIR}/update{number}/{name}", content)
    return files


def _relabel(session: RootImageSession, request: ApplyRequest) -> str:
    if request.selinux_relabel == "never":
        return "skipped: selinux_relabel=never"
    state = session.selinux_state()
    if not state.enabled and request.selinux_relabel == "always":
        raise NodePluginError("selinux_relabel=always, but the image has no enforced SELinux policy",
                              hint="use selinux_relabel=auto")
    return session.relabel()


def _check_live_changes(prepared: Prepared, live_changes: dict[str, str]) -> None:
    """Scripts may add files to the ISO tree, never touch its boot chain or the engine's own files."""
    boot_files = prepared.base.boot_files()
    refused = sorted("/" + relative for relative in live_changes if not scripts_may_write(relative, boot_files))
    if refused:
        scripted = sorted({archive.manifest.name for archive in prepared.archives
                           for script in archive.recipe.scripts if script.nochroot or script.kind == "pre"})
        raise NodePluginError(f"a %pre or %post --nochroot script of {', '.join(scripted)} changed "
                              f"{', '.join(refused[:10])} in the ISO tree, which plugins may not touch",
                              hint="boot loaders, kernels, initrds, boot configs, LiveOS/ and the records are "
                                   "written by the build itself (kernel arguments: 'bootloader --append')")


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


# -- squashfs --------------------------------------------------------------------------------------

def repack(request: ApplyRequest, prepared: Prepared, extracted: Extracted, image: ImageEdit,
           workdir: str) -> Repacked:
    """The new squashfs: the base's blocks reused and only the changed ones compressed, else a full mksquashfs."""
    output = os.path.join(workdir, "squashfs.img")
    superblock = extracted.squashfs.superblock
    if request.compression and request.compression != superblock.compressor:
        reason = f"the compressor changes ({superblock.compressor} -> {request.compression}): every block is new"
        return _full_repack(request, prepared, extracted, image, output, workdir, reason)
    changes = image.changes
    indices = set(changes.indices)
    if changes.size > changes.base_size and changes.base_size % changes.block_size:
        indices.add(changes.base_size // changes.block_size)  # the base's short last block grew into a full one
    new_image = changes.new_image(extracted.root_image)
    try:
        report = rewrite_squashfs(extracted.squashfs.source, output, extracted.root_path,
                                  BlocksFromSource(new_image, indices, changes.block_size), new_size=changes.size,
                                  base_name=f"{prepared.base.path}:{SQUASHFS_PATH}",
                                  file_mtime=_epoch_or_now())
    except IncrementalUnsupported as exc:
        return _full_repack(request, prepared, extracted, image, output, workdir, exc.reason or exc.message)
    return Repacked(path=output, path_taken="incremental",
                    reason=f"{report.blocks_reused} of {report.blocks_total} blocks reused, "
                           f"{report.blocks_compressed} compressed", report=report.to_dict())


def _epoch_or_now() -> int:
    """The root image's new mtime, as mksquashfs gives a file changed now (clamped to SOURCE_DATE_EPOCH)."""
    epoch = source_date_epoch()
    return epoch if epoch is not None else int(time.time())


def _full_repack(request: ApplyRequest, prepared: Prepared, extracted: Extracted, image: ImageEdit, output: str,
                 workdir: str, reason: str) -> Repacked:
    """mksquashfs of the whole tree: the base's other files, and the new root image written out in full."""
    superblock = extracted.squashfs.superblock
    squashfs_root = os.path.join(workdir, "squashfs-root")
    # unsquashfs reads the squashfs in place inside the ISO (no copy of it first), all but the root image.
    unpacked = run(["unsquashfs", "-no-progress", "-quiet", "-o", str(prepared.base.squashfs.offset),
                    "-d", squashfs_root, "-excludes", prepared.base.path, extracted.root_path], check=False)
    if unpacked.returncode != 0:
        raise NodePluginError("LiveOS/squashfs.img of the base ISO cannot be unpacked: it is damaged, or the disk "
                              "of the output folder is full", path=prepared.base.path,
                              hint="check free space beside the output; otherwise copy or download the ISO again",
                              details=(unpacked.stderr or b"").decode("utf-8", "replace").strip()[-1500:])
    new_image = image.changes.new_image(extracted.root_image)
    target = os.path.join(squashfs_root, extracted.root_path.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as handle:
        for offset in range(0, new_image.size, 1 << 22):
            chunk = new_image.read(offset, 1 << 22)
            if chunk.count(0) == len(chunk):
                handle.seek(len(chunk), os.SEEK_CUR)  # keep zero runs sparse
            else:
                handle.write(chunk)
        handle.truncate(new_image.size)
    os.chmod(target, extracted.squashfs.lookup(extracted.root_path).mode & 0o7777)
    compressor = request.compression or superblock.compressor
    argv = ["mksquashfs", squashfs_root, output, "-noappend", "-no-progress", "-quiet",
            "-comp", compressor, "-b", str(superblock.block_size)]
    if compressor == superblock.compressor:
        argv += extracted.squashfs.compressor_options.mksquashfs_args()[4:]  # the base's -X options
    # mksquashfs reads SOURCE_DATE_EPOCH itself (and refuses -mkfs-time/-all-time beside it).
    source_date_epoch()  # refuses a malformed value with our message, not mksquashfs's
    run(argv)
    shutil.rmtree(squashfs_root)
    return Repacked(path=output, path_taken="full", reason=reason, report={})


# -- iso -------------------------------------------------------------------------------------------

def write_iso(request: ApplyRequest, prepared: Prepared, planned: Plan, image: ImageEdit, squashfs: str,
              workdir: str) -> WrittenIso:
    """The new ISO: squashfs, edited configs, update records, build record; md5 implanted; moved into place."""
    base, number = prepared.base, planned.update
    replace = {SQUASHFS_ISO_PATH: squashfs, **planned.boot_edits.replace_files}
    add: dict[str, str] = {}
    staging = os.path.join(workdir, "iso-add")
    update_dir = os.path.join(staging, f"update{number}")
    os.makedirs(update_dir)
    for name, content in image.update_files.items():
        with open(os.path.join(update_dir, name), "wb") as handle:
            handle.write(content)
    record_file = os.path.join(staging, "ovirt-plugins-build.json")
    with open(record_file, "wb") as handle:
        handle.write(build_record(request, prepared, planned, image).to_json())

    def place(iso_path: str, local: str) -> None:
        (replace if base.exists(iso_path) else add)[iso_path] = local

    place(f"isolinux/update{number}", update_dir)
    place(records.BUILD_RECORD_ISO_PATH, record_file)
    # The tarballs as given (signatures inside), for a rebase; the departing ones leave.
    carried = {lifecycle.carried_path(archive.manifest): archive.path for archive in prepared.archives}
    for iso_path, local in carried.items():
        place(iso_path, local)
    remove = sorted({plugin.carried for plugin in prepared.change.departing if plugin.carried and
                     plugin.carried not in carried and records.is_carried_path(plugin.carried) and
                     base.exists(plugin.carried)})
    if image.initramfs is not None and image.initramfs.path and prepared.initramfs is not None:
        _place_initramfs(prepared, image.initramfs.path, replace, staging)
    for link, target in records.current_manifest_links(number).items():
        local = os.path.join(staging, link)
        os.symlink(target, local)
        place(f"isolinux/{link}", local)
    edited = {path.strip("/") for path in replace}
    for relative, local in image.live_changes.items():
        if relative not in edited:  # configs edited by the engine win over a script's copy
            place(relative, local)
    # A new folder made explicitly, so that SOURCE_DATE_EPOCH pins its dates too.
    folders = [lifecycle.CARRIED_DIR] if carried and not base.exists(lifecycle.CARRIED_DIR) else []
    written = rewrite_iso(base, planned.dest, replace_files=replace, add_files=add, remove=remove,
                          make_dirs=folders, volume_id=request.volume_id, implant=True)
    return WrittenIso(path=written.path, sha256=cached_sha256(written.path), size=os.path.getsize(written.path))


def _place_initramfs(prepared: Prepared, initramfs: str, replace: dict[str, str], staging: str) -> None:
    """The rebuilt initramfs wherever the base had its one: files of the tree, and copies inside EFI images."""
    plan = prepared.initramfs
    if plan is None:  # no kmod plugin: the base's initramfs stays
        return
    for iso_path in plan.tree_files:
        replace[iso_path] = initramfs
    if not plan.efi_files:
        return
    with open(initramfs, "rb") as handle:
        # write_efiboot_file takes text: surrogateescape carries any bytes through unchanged.
        content = handle.read().decode("utf-8", "surrogateescape")
    for image, inner_paths in plan.efi_files.items():
        local = replace.get(image)  # the copy whose boot config the plan edited, if any
        if local is None:
            local = os.path.join(staging, image.strip("/").replace("/", "_"))
            shutil.copyfile(prepared.base.efi_image(image), local)
            os.chmod(local, 0o644)
            replace[image] = local
        for inner in inner_paths:
            write_efiboot_file(local, inner, content)


def build_record(request: ApplyRequest, prepared: Prepared, planned: Plan, image: ImageEdit) -> records.BuildRecord:
    """The machine-readable record of this build, with the base's own record as history."""
    history: list[dict] = []
    base = prepared.base
    earlier = base.build_record.record
    if earlier is not None:
        earlier_entry = earlier.to_dict()
        history = earlier_entry.pop("history", []) + [earlier_entry]
    base_tree = prepared.base_tree or tree_reference(base).to_dict()
    change = prepared.change
    applied = [records.RecordedPlugin(name=a.manifest.name, version=a.manifest.version, sha256=a.sha256,
                                      manifest=a.manifest, signer=a.signer, kernel_args=tuple(words),
                                      brought=tuple(image.brought.get(a.manifest.name, ())),
                                      carried=lifecycle.carried_path(a.manifest))
               for a, words in ((archive, _recipe_words([archive])) for archive in prepared.archives)]
    kept = {plugin.name for plugin in change.kept}
    packages = {name: list(nevras) for name, nevras in (earlier.packages if earlier else {}).items() if name in kept}
    if earlier is not None:
        origin = dict(earlier.origin) if earlier.origin else dataclasses.asdict(earlier.origin_info())
    else:
        node = base.node
        origin = {"sha256": base.sha256, "volume_id": base.volume_id, "product": node.product,
                  "version": node.version, "release": node.release, "packages": list(image.packages_before),
                  "tree": base_tree}
    initramfs = dict(earlier.initramfs) if earlier else {}
    if image.initramfs is not None and image.initramfs.path and prepared.initramfs is not None:
        initramfs = {"kernel_version": prepared.initramfs.kernel_version, "sha256": image.initramfs.sha256,
                     "files": list(prepared.initramfs.tree_files), "drivers": list(prepared.initramfs.drivers),
                     "efi_files": {name: list(paths) for name, paths in prepared.initramfs.efi_files.items()},
                     "update": planned.update}
    erased = set(image.erased)
    return records.BuildRecord(
        base_sha256=base.sha256, base_volume_id=base.volume_id,
        plugins=lifecycle.plugins_after(change, applied),
        options={**request.options_for_digest(),
                 **({"rebase_from": prepared.rebased_from["sha256"]} if prepared.rebased_from else {})},
        inputs_digest=prepared.digest, update=planned.update,
        packages={**packages, **image.packages}, kernel_args=dict(planned.kernel_args_after),
        created=utc_timestamp(), history=history, kernel_edits=prepared.kernel_edits.words(),
        base_tree=base_tree,
        live_files={"/" + relative: file_sha256(local) for relative, local in sorted(image.live_changes.items())},
        origin=origin, erased=sorted(erased), initramfs=initramfs, rebased_from=dict(prepared.rebased_from),
        removed=[{"name": plugin.name, "version": plugin.version, "sha256": plugin.sha256,
                  "brought": plugin.brought_names(), "erased": sorted(erased & set(plugin.brought_names()))}
                 for plugin in change.removed])
