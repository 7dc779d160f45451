# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certification of a rebuilt Node ISO: every claim checked, each with its evidence.

Checks (each reported separately, pass or fail, with evidence and violations a person can act on):
  media          implanted md5 valid (isomd5sum-compatible), volume size sane, file system readable
  boot_records   BIOS and UEFI El Torito entries point at real files; hybrid MBR/GPT intact (and
                 as in the base); every root=live:CDLABEL= equals the volume id; the GRUB config
                 inside efiboot.img agrees with the ISO tree's
  plugins        the build record names each plugin by digest and manifest; their packages are
                 installed with the same NEVRA and pass `rpm -V` (config files reported, not failed);
                 /etc/ovirt-plugins.d records and isolinux/updateN manifests match; given tarballs
                 match the recorded digests
  core           every base package is installed with the same NEVRA and passes `rpm -V` (config
                 files listed); no file of a base package belongs to a plugin package; with the
                 base ISO: files outside any package are unchanged (outside the plugin paths)
  compatibility  each plugin's Node range admits the image's version
  boot           optional: the ISO boots in QEMU and the running system reports the plugins
The image checks run in one libguestfs appliance, the images attached read-only (an overlay
takes the scratch writes of rpm). The report is JSON, written atomically, optionally signed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import fnmatch
import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence

from . import _records as records
from ._blockdiff import RootImageDiff, compare_root_images
from ._boot import BOOT_PATHS, boot_iso
from ._choices import BOOT_TESTS
from ._digests import cached_sha256
from ._errors import NodePluginError
from ._iso import IsoReader, boot_info_table_problem, lost_boot_records
from ._isomd5 import check as check_md5
from ._isotree import TreeReference, account, tree_reference
from ._liveos import SQUASHFS_PATH, find_root_image_path
from ._nodeiso import NodeIso
from ._outputs import check_distinct, check_tmpdir, check_writable_folder, clean_stale, clean_stale_runs, run_dir
from ._persist import BOOT_HOOK, PERSIST_LISTS_DIR
from ._report import Check, VerifyResult, asked, atomic_write, read_report, report_document
from ._rootfs import CommandResult, RootImageSession
from ._rpmdb import RpmDatabase, rpm_database_of
from ._rpmhdr import ALLOWED_PATHS, allowed_paths, path_allowed, sign_detached
from ._run import StageTimer

BOOT_TEST_CHOICES = BOOT_TESTS
_BOOT_TEST_PATHS = {"none": (), "bios": ("cd-bios",), "uefi": ("cd-uefi",), "all": BOOT_PATHS}
BASE_MOUNT = "/mnt/.ovirt-node-plugins-base"
# Unowned files that an edit changes by design (records, manifests, the rpm database, scratch space).
_EDIT_PATHS = ("/etc/system-release", "/etc/ovirt-plugins.d/*", "/etc/ovirt-plugins-manifests.d/*",
               f"{PERSIST_LISTS_DIR}/*", BOOT_HOOK, "/var/lib/rpm/*", "/var/tmp/*", "/tmp/*", "/var/log/*",
               "/var/cache/*")
_RPM_V_LINE = re.compile(r"^(?P<flags>missing|[.?SM5DLUGTP]{8,9})\s+(?P<type>[cdglr ])?\s*(?P<path>/.*)$")
ProgressCallback = Callable[[str], None]


@dataclasses.dataclass
class VerifyRequest:
    """What to certify and against what (see the node_iso_verify module for each option)."""

    src: str
    base: str | None = None
    plugins: list[str] = dataclasses.field(default_factory=list)
    boot_test: str = "none"
    boot_timeout: float = 300
    marker_regex: str | None = None
    report: str | None = None
    sign_key: str | None = None
    gnupg_home: str | None = None
    check_mode: bool = False
    # The path the report names as the certified ISO when it differs from src (a build certifies a
    # candidate beside its output before moving it into place).
    report_iso: str | None = None
    # With the base: compare every file and rpm -V every package, instead of the changed blocks only.
    deep: bool = False

    def asked(self) -> dict:
        """What was asked of the certification besides the ISO: a report says it, so it can be reused."""
        return asked(base=self.base, plugins=self.plugins, boot_test=self.boot_test, marker_regex=self.marker_regex,
                     deep=self.deep)


@dataclasses.dataclass
class _ImageFacts:
    """What the appliance found in the root image(s)."""

    manifests: dict[str, list[str]]
    rpm_verify: dict[str, list[tuple[str, str, str]]]
    records: dict[str, dict[str, str] | None]
    image_manifest_files: dict[str, bytes]
    base_nevras: list[str] | None
    unowned_changes: list[str]
    unowned_checked: int
    # How the files outside packages were compared: from changed blocks, or every file (deep).
    comparison: str = ""


def verify_iso(request: VerifyRequest, *, progress: ProgressCallback | None = None,
               session_factory: Callable[..., RootImageSession] = RootImageSession) -> VerifyResult:
    """Run every check on request.src; write (and sign) the report unless in check mode.

    The ISO under test is opened once, the base ISO (when given) once; every check reads them.
    ``session_factory`` opens the image session (tests of the orchestration pass a fake one).
    """
    if request.boot_test not in BOOT_TEST_CHOICES:
        raise NodePluginError(f"boot_test={request.boot_test!r} is not valid", hint=f"use one of {', '.join(BOOT_TEST_CHOICES)}")
    if not os.path.isfile(request.src):
        what = "is a folder, not an ISO file" if os.path.isdir(request.src) else "does not exist"
        raise NodePluginError(f"the ISO to certify {what}", path=request.src)
    check_distinct({"report": request.report,
                    "report's signature": f"{request.report}.asc" if request.report and request.sign_key else None},
                   {"ISO to certify": request.src, "base ISO": request.base,
                    **{f"plugin {path}": path for path in request.plugins}})
    if request.report and not request.check_mode:
        clean_stale(request.report)
        check_writable_folder(request.report, "report")
    check_tmpdir()
    clean_stale_runs()
    timer = StageTimer()
    say = progress or (lambda _stage: None)
    checks = []
    say("media")
    with timer.stage("media"):
        media, sha256, iso = _check_media(request.src)
        checks.append(media)
    if iso is None:
        return _finish(request, sha256, checks, timer)
    with contextlib.ExitStack() as opened:
        opened.enter_context(iso)
        base = opened.enter_context(NodeIso(request.base)) if request.base else None
        say("boot records")
        with timer.stage("boot records"):
            checks.append(_check_boot_records(iso, base))
        build, record_problem = iso.build_record.record, iso.build_record.problem
        say("iso tree")
        with timer.stage("iso tree"):
            checks.append(_check_iso_tree(iso, base, build))
        workdir = tempfile.mkdtemp(prefix="ovirt-node-verify-", dir=run_dir())
        try:
            say("image")
            with timer.stage("image"):
                facts: _ImageFacts | str
                try:
                    facts = _inspect_images(iso, base, workdir, build, session_factory, deep=request.deep)
                except NodePluginError as exc:
                    facts = f"the root image cannot be read: {exc.render()}"
            if isinstance(facts, str):
                checks += [Check("plugins", violations=[facts]), Check("core", violations=[facts])]
            else:
                checks.append(_check_plugins(request, iso, build, record_problem, facts))
                checks.append(_check_core(iso, build, facts))
            checks.append(_check_compatibility(iso, build))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if request.boot_test != "none":
        say("boot")
        with timer.stage("boot"):
            checks.append(_check_boot(request, build, timer))
    return _finish(request, sha256, checks, timer)


# -- media and boot records ------------------------------------------------------------------------

def _check_media(path: str) -> tuple[Check, str, NodeIso | None]:
    """The media check, and the ISO opened for the other checks (None when it is not readable)."""
    check = Check("media")
    sha256 = cached_sha256(path)
    check.evidence.append(f"sha256 {sha256}, {os.path.getsize(path)} bytes")
    try:
        iso = NodeIso(path)
    except NodePluginError as exc:
        check.violations.append(f"not readable as an ISO: {exc.message}")
        return check, sha256, None
    check.evidence.append(f"volume size {iso.volume_size} bytes as the primary volume descriptor says, file complete")
    try:
        check.evidence.append(f"file system readable: {len(iso.files())} files")
    except NodePluginError as exc:
        iso.close()
        check.violations.append(f"not readable as an ISO: {exc.message}")
        return check, sha256, None
    md5 = check_md5(path)
    if not md5.implanted:
        check.violations.append("no implanted md5: the media check at boot (rd.live.check) cannot work "
                                "(implant one with implantisomd5, or rebuild with node_plugin_apply)")
    elif not md5.valid:
        where = f", first bad fragment {md5.first_bad_fragment} of 20" if md5.first_bad_fragment else ""
        check.violations.append(f"implanted md5 {md5.md5} does not match the content ({md5.computed_md5}{where}): "
                                "the ISO was damaged or modified after it was built")
    else:
        check.evidence.append(f"implanted md5 {md5.md5} valid")
    return check, sha256, iso


def _check_boot_records(iso: NodeIso, base: NodeIso | None) -> Check:
    check = Check("boot_records")
    found = iso.boot_records()
    volume_id = iso.volume_id
    for entry in found.el_torito:
        if entry.path is None or not iso.exists(entry.path):
            check.violations.append(f"El Torito entry {entry.index} ({entry.platform}) boots "
                                    f"{entry.path or 'an image outside the ISO tree'}, which is not a file of the ISO")
    # xorriso reports a boot info table only when it finds a valid one: the base says where one belongs.
    tables = {entry.path for entry in found.el_torito if entry.boot_info_table}
    if base is not None:
        tables |= {entry.path for entry in base.boot_records().el_torito if entry.boot_info_table}
    for entry in found.el_torito:
        if entry.path in tables and entry.path and iso.exists(entry.path):
            problem = boot_info_table_problem(iso, entry.path)
            if problem:
                check.violations.append(problem)
    platforms = {entry.platform for entry in found.el_torito}
    check.evidence.append(f"El Torito: {', '.join(f'{e.platform} {e.path}' for e in found.el_torito) or 'none'}")
    for platform in ("BIOS", "UEFI"):
        if platform not in platforms:
            check.violations.append(f"no {platform} El Torito entry: the ISO cannot boot with {platform} firmware")
    check.evidence.append(f"system area: {found.system_area or 'none'}")
    if base is not None:
        lost = lost_boot_records(base.boot_records(), found)
        check.violations += [f"lost against the base ISO: {item}" for item in lost]
        if not lost:
            check.evidence.append("boot records and hybrid layout as in the base ISO")
    configs = iso.boot_configs()
    label = f"root=live:CDLABEL={volume_id}"
    for config in configs:
        for boot_entry in config.entries:
            roots = [arg for arg in boot_entry.kernel_args if arg.startswith("root=live:CDLABEL=")]
            if roots and any(root != label for root in roots):
                check.violations.append(f"{config.where} entry '{boot_entry.label}' has {roots[0]}, but the volume "
                                        f"id is '{volume_id}': that entry cannot find its root file system")
    tree = {(c.path.lower(), e.label): e.kernel_args for c in configs if not c.efiboot for e in c.entries}
    for config in (c for c in configs if c.efiboot):
        for boot_entry in config.entries:
            twin = tree.get((config.path.lower(), boot_entry.label))
            if twin is not None and twin != boot_entry.kernel_args:
                check.violations.append(f"the config inside {config.efiboot} ({config.path}, '{boot_entry.label}') "
                                        f"differs from the ISO tree's: UEFI boots from a USB stick read "
                                        f"{' '.join(boot_entry.kernel_args)!r}, the tree says {' '.join(twin)!r}")
    check.evidence.append(f"{sum(len(c.entries) for c in configs)} boot entries in {len(configs)} configs, "
                          f"volume id '{volume_id}'")
    return check


def _check_iso_tree(iso: NodeIso, base: NodeIso | None, build: records.BuildRecord | None) -> Check:
    """Every file of the ISO tree outside the root image: unchanged against the base, or changed by design."""
    check = Check("iso_tree")
    if build is None:
        check.evidence.append("not accounted for: without a build record no edit can be told from tampering")
        if base is not None:
            check.violations.append("the ISO has no build record, so its differences from the base cannot be "
                                    "accounted for")
        return check
    from_origin = False
    if base is not None:
        # The base is the ISO the last edit started from, or the origin of the history (the Node release).
        from_origin = base.sha256 != build.base_sha256 and base.sha256 == build.origin_info().sha256
        if base.sha256 != build.base_sha256 and not from_origin:
            check.violations.append(f"the given base ISO (sha256 {base.sha256[:16]}...) is not the one this ISO was "
                                    f"built from (the build record names sha256 {build.base_sha256[:16]}..., and "
                                    f"its history starts from {build.origin_info().sha256[:16]}...)")
            return check
        reference = tree_reference(base)
        source = "the base ISO, the origin of the ISO's history" if from_origin else "the base ISO"
    elif build.base_tree:
        reference = TreeReference.from_dict(build.base_tree)
        source = "the build record's copy of the base tree (give the base ISO to compare with it directly)"
    else:
        check.violations.append("the build record holds no reference of the base's tree; give the base ISO")
        return check
    boot_files = base.boot_files() if base is not None else sorted(set(iso.boot_files()) & set(reference.files))
    try:
        outcome = account(iso, reference, build, boot_files, from_origin=from_origin)
    except NodePluginError as exc:
        check.violations.append(exc.message)
        return check
    check.evidence.append(f"compared with {source}")
    check.evidence += outcome.evidence
    check.violations += outcome.violations
    return check


# -- the image ---------------------------------------------------------------------------------------

def _inspect_images(iso: NodeIso, base: NodeIso | None, workdir: str, build: records.BuildRecord | None,
                    session_factory: Callable[..., RootImageSession], *, deep: bool = False) -> _ImageFacts:
    """Read what the checks need from the root image(s), in one appliance that reads them lazily.

    With the base ISO, the files that changed are found from the blocks that changed (_blockdiff) and
    only the packages that own them are verified with rpm -V (beside the plugins' packages); ``deep``
    verifies every package and compares every file instead.
    """
    root_path = find_root_image_path(iso.squashfs_image(), source=f"{iso.path}:{SQUASHFS_PATH}")
    diff = compare_root_images(base, iso) if base is not None and not deep else None
    base_db = rpm_database_of(base.root_filesystem(), workdir) if base is not None else None
    extra = {}
    if base is not None and deep:
        base_path = find_root_image_path(base.squashfs_image(), source=f"{base.path}:{SQUASHFS_PATH}")
        extra[BASE_MOUNT] = base.squashfs_image().open_file(base_path)
    record_names = build.package_names() if build else []
    with session_factory(iso.squashfs_image().open_file(root_path), readonly=True, extra_images=extra,
                         label=f"the root image {root_path.lstrip('/')}") as session:
        queried = session.run_rpm(["-qa", "--qf", records.combined_query()])
        rpm = session.rpm_binary()
        manifests = records.split_combined(queried.output)
        installed_names = {nevra.rsplit("-", 2)[0] for nevra in records.nevras_of(manifests["rpm"])}
        if diff is None:
            verified: CommandResult | None = session.run([rpm, "-Va", "--nodeps", "--noscripts"])
        else:
            owners = _base_owners(base_db, diff) if base_db else set()
            names = sorted((set(record_names) | owners) & installed_names)
            verified = session.run([rpm, "-V", "--nodeps", "--noscripts", *names]) if names else None
        rpm_verify = _parse_rpm_verify(verified.output if verified else "", manifests["owns"])
        plugin_records = {}
        for name in record_names:
            path = f"{records.RECORDS_DIR}/{name}"
            plugin_records[name] = (records.parse_plugin_record(session.read(path).decode("utf-8", "replace"))
                                    if session.exists(path) else None)
        image_manifests = {}
        if build:
            folder = f"{records.IMAGE_MANIFESTS_DIR}/update{build.update}"
            for name in session.listdir(folder):
                image_manifests[name] = session.read(f"{folder}/{name}")
        changes: list[str] = []
        checked, comparison = 0, ""
        # rpm names files by the paths packages give (/lib/modules/...); a merged-/usr image stores them elsewhere.
        aliases = _top_folder_links(iso.root_filesystem())
        owned = [_real_path(path, aliases) for path in manifests["file"]]
        prefixes = tuple(dict.fromkeys(
            [*_plugin_prefixes(build), *(_real_path(prefix, aliases) for prefix in _plugin_prefixes(build))]))
        accounted = _accounted_by_plugins(base, base_db, build, aliases, prefixes)
        if base is not None and deep:
            changes, checked = _unowned_changes(session, owned, prefixes, accounted)
            comparison = f"every file of both images compared ({checked} files outside packages)"
    if diff is not None:
        changes = _unowned_block_changes(diff, owned, prefixes, accounted)
        checked = len(diff.changes)
        comparison = (f"compared from blocks: {diff.squashfs_blocks_changed} of {diff.squashfs_blocks} squashfs blocks "
                      f"differ from the base ({diff.ext_blocks_changed} file-system blocks, {diff.metadata_blocks} of "
                      f"them metadata), {len(diff.changes)} paths changed, "
                      f"{diff.bytes_decompressed >> 10} KiB decompressed "
                      "(deep=true compares every file)")
    # As the image's rpm -qa prints them (the manifests' form, without the epoch).
    base_nevras = sorted(f"{p.name}-{p.version}-{p.release}.{p.arch}" for p in base_db.packages) if base_db else None
    return _ImageFacts(manifests=manifests, rpm_verify=rpm_verify, records=plugin_records,
                       image_manifest_files=image_manifests, base_nevras=base_nevras,
                       unowned_changes=changes, unowned_checked=checked, comparison=comparison)


def _base_owners(base_db: RpmDatabase, diff: RootImageDiff) -> set[str]:
    """Names of the base packages that own a path that changed (they are verified with rpm -V)."""
    changed = set(diff.paths())
    return {package.name for package in base_db.packages if changed.intersection(package.files)}


def _top_folder_links(root) -> dict[str, str]:
    """Top folders that are links in the image (merged /usr: /lib -> usr/lib), as 'link/' -> 'target/'."""
    aliases = {}
    for top in ("/bin", "/sbin", "/lib", "/lib64"):
        if root.exists(top, follow=False) and root.stat(top, follow=False).kind == "symlink":
            target = posixpath.normpath(posixpath.join("/", root.readlink(top)))
            if target.count("/") <= 2:  # /usr/lib: the only form merged /usr takes
                aliases[top + "/"] = target + "/"
    return aliases


def _real_path(path: str, aliases: dict[str, str]) -> str:
    """Where a path that rpm names is stored in the image (a top folder that is a link resolved)."""
    for alias, real in aliases.items():
        if path.startswith(alias) or path + "/" == alias:
            return real + path[len(alias):]
    return path


def _accounted_by_plugins(base: NodeIso | None, base_db: RpmDatabase | None, build: records.BuildRecord | None,
                          aliases: dict[str, str], prefixes: Sequence[str]) -> Callable[[str], bool]:
    """For a base that is itself customized: whether a path of it belongs to its plugins, so that an upgrade or a
    removal may change or remove it. Files of packages plugins brought (erased or replaced since), and files under
    the plugin paths that the Node itself did not have (its isolinux/manifest-file.txt lists every file of the
    Node's image), which plugins' scriptlets made."""
    if base is None or base_db is None or build is None or base.build_record.record is None:
        return lambda _path: False
    brought = build.plugin_packages_ever()
    package_files = {_real_path(path, aliases) for package in base_db.packages if package.name in brought
                     for path in package.files}
    listing = "isolinux/manifest-file.txt"
    node_files = set(records.decode_manifest("file", base.read_bytes(listing))) if base.exists(listing) else None
    return lambda path: path in package_files or (node_files is not None and path not in node_files
                                                  and path_allowed(path, prefixes))


def _unowned_block_changes(diff: RootImageDiff, owned_files: list[str], plugin_prefixes: Sequence[str],
                           accounted: Callable[[str], bool] = lambda _path: False) -> list[str]:
    """Changed paths outside any package that no edit explains (packages' files are rpm -V's concern)."""
    owned = set(owned_files)
    found = []
    for change in diff.changes:
        if change.path in owned or _matches(change.path, _EDIT_PATHS) or accounted(change.path):
            continue
        if change.what == "added" and path_allowed(change.path, plugin_prefixes, is_directory=change.kind == "dir"):
            continue
        detail = f" ({', '.join(change.fields)})" if change.fields else ""
        found.append(f"{change.path} {change.what}{detail}")
    return found


def _plugin_prefixes(build: records.BuildRecord | None) -> tuple[str, ...]:
    """Where the recorded plugins may add files: the packager's policy, with each plugin's kind and overrides."""
    if build is None:
        return ALLOWED_PATHS
    prefixes: list[str] = []
    for plugin in build.plugins:
        prefixes += allowed_paths(plugin.manifest.kind, plugin.manifest.allowed_path_overrides)
    return tuple(dict.fromkeys(prefixes)) or ALLOWED_PATHS


def _parse_rpm_verify(output: str, owns: list[str]) -> dict[str, list[tuple[str, str, str]]]:
    """rpm -Va output by package: (flags, file type, path); the owner comes from the owns manifest."""
    owner: dict[str, list[str]] = {}
    for line in owns:
        path, _sep, name = line.rpartition(" ")
        owner.setdefault(path, []).append(name)
    found: dict[str, list[tuple[str, str, str]]] = {}
    for line in output.splitlines():
        match = _RPM_V_LINE.match(line.rstrip())
        if not match:
            continue
        path = match.group("path")
        for name in owner.get(path, ["(unknown)"]):
            found.setdefault(name, []).append((match.group("flags"), (match.group("type") or " ").strip(), path))
    return found


def _unowned_changes(session: RootImageSession, owned_files: list[str], plugin_prefixes: Sequence[str],
                     accounted: Callable[[str], bool] = lambda _path: False) -> tuple[list[str], int]:
    """Files outside any package that differ between the base image and this one (digest lists)."""
    # Batched (find -exec ... +): a process per file would cost minutes under software emulation.
    script = ('cd "$1" && find . -xdev -type f -exec sha256sum {} + && echo @@links && '
              'find . -xdev -type l -exec ls -ld {} +')
    listings = []
    for top in ("/", BASE_MOUNT):
        outcome = session.run(["sh", "-c", script, "list", top])
        if not outcome.ok:
            raise NodePluginError(f"could not list the files of the image under {top}", details=outcome.output[-2000:])
        files_part, _sep, links_part = outcome.output.partition("@@links\n")
        entries = {}
        for line in files_part.splitlines():
            digest, _sep, path = line.partition("  ./")
            if path:
                entries["/" + path] = f"F {digest}"
        for line in links_part.splitlines():
            name, _sep, target = line.partition(" -> ")
            _head, _sep, path = name.partition(" ./")
            if path:
                entries["/" + path] = f"L {target}"
        listings.append(entries)
    new, base = listings
    owned = set(owned_files)
    changes = []
    for path in sorted(set(base) | set(new)):
        if path in owned or path.startswith(BASE_MOUNT) or _matches(path, _EDIT_PATHS) or accounted(path):
            continue
        if base.get(path) == new.get(path):
            continue
        what = "removed" if path not in new else "added" if path not in base else "changed"
        if what == "added" and path_allowed(path, plugin_prefixes):
            continue
        changes.append(f"{path} {what}")
    return changes, len(base)


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) or path == pattern.rstrip("/*") for pattern in patterns)


# -- plugins, core, compatibility ------------------------------------------------------------------

def _plugin_package_names(build: records.BuildRecord) -> dict[str, str]:
    """Package name -> plugin name, for every package of every recorded plugin manifest."""
    return {package.name: plugin.name for plugin in build.plugins for package in plugin.manifest.packages}


def _installed(facts: _ImageFacts) -> dict[str, str]:
    return {nevra.rsplit("-", 2)[0]: nevra for nevra in records.nevras_of(facts.manifests["rpm"])}


def _verify_failures(facts: _ImageFacts, name: str) -> tuple[list[str], list[str]]:
    """(failures, config notes) of rpm -V for one package."""
    failures: list[str] = []
    configs: list[str] = []
    for flags, kind, path in facts.rpm_verify.get(name, []):
        (configs if kind == "c" else failures).append(f"{path} ({flags})")
    return failures, configs


def _check_plugins(request: VerifyRequest, iso: NodeIso, build: records.BuildRecord | None, problem: str | None,
                   facts: _ImageFacts) -> Check:
    check = Check("plugins")
    if build is None:
        check.violations.append(problem or "no build record")
        return check
    installed = _installed(facts)
    recorded_digests = [plugin.sha256 for plugin in build.plugins]
    recorded = [f"{p.name} {p.version} (sha256 {p.sha256[:12]})" for p in build.plugins]
    check.evidence.append("build record: " + ", ".join(recorded))
    if request.plugins:
        given = [cached_sha256(path) for path in request.plugins]
        for path, digest in zip(request.plugins, given):
            if digest not in recorded_digests:
                check.violations.append(f"the plugin {path} (sha256 {digest[:12]}) is not the one the ISO was built with")
    for plugin in build.plugins:
        for package in plugin.manifest.packages:
            have = installed.get(package.name)
            if have is None:
                check.violations.append(f"{plugin.name}: package {package.nevra} is not installed")
                continue
            if have != package.nevra:
                check.violations.append(f"{plugin.name}: {package.name} is {have}, the plugin brought {package.nevra}")
            failures, configs = _verify_failures(facts, package.name)
            check.violations += [f"{plugin.name}: {package.name}: rpm -V: {item}" for item in failures]
            check.evidence += [f"{plugin.name}: {package.name}: config file changed: {item}" for item in configs]
        for package in plugin.manifest.plugin_packages:
            record = facts.records.get(package.name)
            if record is None:
                check.violations.append(f"{plugin.name}: the record {records.RECORDS_DIR}/{package.name} is missing "
                                        "(the Node's plugin list will not show it)")
            elif installed.get(package.name) and not installed[package.name].endswith(record.get("Version", "")):
                check.violations.append(f"{plugin.name}: the record of {package.name} says version "
                                        f"{record.get('Version')}, but {installed[package.name]} is installed")
    _check_update_manifests(iso, build, facts, check)
    for name in build.erased:
        if name in installed:
            check.violations.append(f"{name} is still installed, but the build record says this edit erased it")
    for entry in build.removed:
        check.evidence.append(f"removed by this edit: {entry.get('name')} {entry.get('version')}")
    if check.passed:
        check.evidence.append(f"{sum(len(p.manifest.packages) for p in build.plugins)} plugin packages "
                              "installed with their NEVRA, verified with rpm -V, recorded")
    return check


def _check_update_manifests(reader: IsoReader, build: records.BuildRecord, facts: _ImageFacts, check: Check) -> None:
    folder = f"isolinux/update{build.update}"
    current = facts.manifests
    for kind in ("rpm", "file"):
        name = f"manifest-{kind}.txt"
        if not reader.exists(f"{folder}/{name}"):
            check.violations.append(f"{folder}/{name} is missing")
            continue
        content = reader.read_bytes(f"{folder}/{name}")
        if records.decode_manifest(kind, content) != current[kind]:
            check.violations.append(f"{folder}/{name} does not match the packages of the image")
        if facts.image_manifest_files.get(name) != content:
            check.violations.append(f"{records.IMAGE_MANIFESTS_DIR}/update{build.update}/{name} in the image "
                                    f"differs from {folder}/{name} in the ISO")
    check.evidence.append(f"{folder} manifests match the image")


def _check_core(iso: NodeIso, build: records.BuildRecord | None, facts: _ImageFacts) -> Check:
    check = Check("core")
    plugin_names = _plugin_package_names(build) if build else {}
    # What plugins of the history brought is theirs, not the core's (a customized base holds such packages).
    brought = build.plugin_packages_ever() if build else set()
    installed = _installed(facts)
    if facts.base_nevras is not None:
        base = facts.base_nevras
        check.evidence.append(f"base packages read from the base ISO's rpm database ({len(base)})")
    else:
        try:
            base = _recorded_base_nevras(iso)
        except NodePluginError as exc:
            check.violations.append(f"{exc.message} ({exc.hint})")
            return check
        check.evidence.append(f"base packages read from the ISO's own isolinux/manifest-rpm.txt ({len(base)}); "
                              "give the base ISO to also compare files outside packages")
    for nevra in base:
        name = nevra.rsplit("-", 2)[0]
        if nevra.startswith("gpg-pubkey-") or name in brought:
            continue
        if name in plugin_names:
            check.violations.append(f"{nevra} of the base image was replaced by plugin {plugin_names[name]}")
            continue
        if installed.get(name) != nevra:
            check.violations.append(f"base package {nevra} is {'now ' + installed[name] if name in installed else 'gone'}")
            continue
        failures, configs = _verify_failures(facts, name)
        check.violations += [f"base package {name}: rpm -V: {item}" for item in failures]
        check.evidence += [f"base package {name}: config file changed (allowed): {item}" for item in configs]
    _check_shared_files(facts, plugin_names, check)
    if facts.base_nevras is not None:
        check.violations += [f"file outside any package: {change}" for change in facts.unowned_changes]
        check.evidence.append(f"files outside packages: {facts.comparison}")
    if check.passed:
        check.evidence.append(f"{len(base)} base packages unmodified")
    return check


def _recorded_base_nevras(reader: IsoReader) -> list[str]:
    if not reader.exists("isolinux/manifest-rpm.txt"):
        raise NodePluginError("the ISO has no isolinux/manifest-rpm.txt to tell its base packages", path=reader.path,
                              hint="give the base ISO (base=...) to compare against")
    return records.nevras_of(records.decode_manifest("rpm", reader.read_bytes("isolinux/manifest-rpm.txt")))


def _check_shared_files(facts: _ImageFacts, plugin_names: dict[str, str], check: Check) -> None:
    """A path owned by a plugin package and by a base package: the plugin overwrote a core file."""
    directories = set(facts.manifests["dir"])
    owners: dict[str, set[str]] = {}
    for line in facts.manifests["owns"]:
        path, _sep, name = line.rpartition(" ")
        if path not in directories:
            owners.setdefault(path, set()).add(name)
    for path, names in sorted(owners.items()):
        plugin = sorted(names & set(plugin_names))
        core = sorted(names - set(plugin_names))
        if plugin and core:
            check.violations.append(f"{path} of base package {core[0]} is also installed by plugin package {plugin[0]}")


def _check_compatibility(iso: NodeIso, build: records.BuildRecord | None) -> Check:
    check = Check("compatibility")
    node = iso.node
    check.evidence.append(f"image: {node.product or '?'} {node.version}-{node.release} (from {node.source})")
    for plugin in build.plugins if build else []:
        problem = node.incompatibility(plugin.manifest.node.product, plugin.manifest.node.versions)
        if problem:
            check.violations.append(f"{plugin.name} {plugin.version} {problem} (the image's)")
        else:
            check.evidence.append(f"{plugin.name} {plugin.version}: Node {plugin.manifest.node.versions} admits it")
    return check


def _check_boot(request: VerifyRequest, build: records.BuildRecord | None, timer: StageTimer) -> Check:
    """Boot the ISO on each path; how long a boot took goes to the timer, not the evidence, so that a
    certification repeated on a busier machine writes the same report (and reports no change)."""
    check = Check("boot")
    expected = build.package_names() if build else []
    paths = _BOOT_TEST_PATHS[request.boot_test]
    # Two boots at a time: under TCG each uses one core, and they do not slow each other.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda path: boot_iso(request.src, path, timeout=request.boot_timeout,
                                                      marker_regex=request.marker_regex), paths))
    for path, result in zip(paths, results):
        if not result.ok:
            check.violations.append(f"{path}: did not boot ({result.reason}); last console lines: "
                                    + " | ".join(result.log.strip().splitlines()[-5:]))
            continue
        timer.durations[f"boot {path}"] = round(result.seconds, 3)
        check.evidence.append(f"{path}: booted to the live root")
        if result.marker is not None:
            seen = {plugin["name"] for plugin in result.marker.get("plugins", [])}
            missing = [name for name in expected if name not in seen]
            if missing:
                check.violations.append(f"{path}: the running system does not list the plugins {', '.join(missing)}")
            else:
                check.evidence.append(f"{path}: the running system lists {', '.join(sorted(seen)) or 'no plugins'}")
    return check


# -- the report ------------------------------------------------------------------------------------

def _finish(request: VerifyRequest, sha256: str, checks: list[Check], timer: StageTimer) -> VerifyResult:
    certified = all(check.passed for check in checks)
    report_changed, signature = False, None
    if request.report:
        report_changed, signature = _write_report(request, request.report, sha256, checks, certified)
    return VerifyResult(certified=certified, sha256=sha256, checks=checks, report=request.report,
                        report_changed=report_changed, signature=signature, durations=timer.durations)


def _write_report(request: VerifyRequest, report: str, sha256: str, checks: list[Check],
                  certified: bool) -> tuple[bool, str | None]:
    """Write the report (and its .asc) unless an existing one says the same; returns (changed, signature path)."""
    document = report_document(iso=request.report_iso or request.src, sha256=sha256, checks=checks,
                               certified=certified, asked=request.asked())
    signature_path = f"{report}.asc" if request.sign_key else None
    existing = read_report(report)
    if existing is not None:
        existing.pop("time", None)
    unchanged = existing == document and (signature_path is None or os.path.isfile(signature_path))
    if unchanged or request.check_mode:
        return not unchanged, signature_path
    document["time"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    content = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
    atomic_write(report, content)
    if signature_path and request.sign_key:
        atomic_write(signature_path, sign_detached(content, request.sign_key, gnupg_home=request.gnupg_home))
    return True, signature_path
