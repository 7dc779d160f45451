# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life of plugins on an ISO: what an edit installs, upgrades, removes and takes back, carried
tarballs for a rebase onto a newer Node, and the initramfs of kernel-module plugins.

An ISO's build record names every plugin it holds (``RecordedPlugin``): its manifest, the recipe's
kernel arguments, the packages it brought (its install set, the origin's packages aside) and where its
tarball is carried in the ISO. An edit (``PluginChange``) applies plugin tarballs (new ones, upgrades,
reinstalls) and removes held plugins by name. What departs (removed plugins, and the older version of an
upgraded one) is taken back:
- packages it brought that no staying plugin brought are erased with the image's own rpm, after rpm
  itself has said that nothing installed needs them (``erase_unneeded``; what is needed stays);
- records of its plugin packages that no staying plugin ships, and its persist list, are deleted;
- kernel arguments it added are removed unless a staying plugin or a user's edit adds them too, or the
  origin already had them; arguments it removed come back where the origin had them in every boot entry
  (an argument the origin had in only some entries stays removed, and the result says so);
- its carried tarball leaves the ISO.

Kernel modules: a plugin of kind ``kmod`` declares the modules its Node must load in early boot with its
recipe's ``bootloader --append "rd.driver.pre=<module>[,<module>]"`` (dracut's own argument for that).
When an edit installs, upgrades or removes a kmod plugin, the image's ``depmod`` runs for the ISO's
kernel and, when the image has dracut, its initramfs is rebuilt inside the appliance with the image's
own dracut and configuration (the declared modules added), then placed wherever the base ISO had a copy
of its initramfs (the ISO tree, inside EFI images). An image without dracut refuses a kmod plugin that
declares early-boot modules, before any work.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Iterable, Sequence

from . import _records as records
from ._bootcfg import KernelArgEdits, detect_format, list_entries
from ._digests import file_sha256
from ._errors import NodePluginError, excerpt
from ._isotree import boot_entry_files
from ._nodeiso import NodeIso
from ._plugin import Limits, PluginArchive, PluginManifest
from ._rootfs import CommandResult, RootImageSession

CARRIED_DIR = records.CARRIED_DIR
EARLY_BOOT_ARG = "rd.driver.pre"
# Where images keep dracut and depmod (merged /usr or not).
DRACUT_PATHS = ("/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut", "/bin/dracut")
DEPMOD_PATHS = ("/usr/sbin/depmod", "/sbin/depmod", "/usr/bin/depmod", "/bin/depmod")
_TOOL_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KERNEL_RELEASE = re.compile(r"^[A-Za-z0-9._+~-]{1,128}$")
_LISTING = "@@ovirt-node-plugins: the initramfs holds"
_NEEDED = re.compile(r"^\s+(?P<capability>\S+)(?: [<>=]+ \S+)? is needed by \(installed\) (?P<by>\S+)$")


def carried_path(manifest: PluginManifest) -> str:
    """The ISO path of a plugin's carried tarball: /ovirt-plugins/<name>-<version>.plugin.tar.gz."""
    return f"{CARRIED_DIR}/{manifest.file_name}"


# -- what an edit changes ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PluginChange:
    """What an edit does to the plugins the base ISO holds (its build record), in their order."""

    held: tuple[records.RecordedPlugin, ...]
    applied: tuple[str, ...]
    removed: tuple[records.RecordedPlugin, ...]

    @property
    def superseded(self) -> list[records.RecordedPlugin]:
        """Held plugins that an applied one of the same name upgrades (or reinstalls)."""
        return [plugin for plugin in self.held if plugin.name in self.applied]

    @property
    def departing(self) -> list[records.RecordedPlugin]:
        """What the edit takes back: the removed plugins and the superseded versions."""
        return [*self.removed, *self.superseded]

    @property
    def kept(self) -> list[records.RecordedPlugin]:
        """Held plugins the edit leaves alone (they stay in the record, in their place)."""
        gone = {plugin.name for plugin in self.departing}
        return [plugin for plugin in self.held if plugin.name not in gone]

    def upgrades(self, archives: Sequence[PluginArchive]) -> list[dict]:
        """Applied plugins that replace a held version: name, from, to."""
        versions = {archive.manifest.name: archive.manifest.version for archive in archives}
        return [{"name": plugin.name, "from": plugin.version, "to": versions[plugin.name]}
                for plugin in self.superseded]


def plan_change(base: NodeIso, archives: Sequence[PluginArchive], remove: Sequence[str]) -> PluginChange:
    """The change an edit makes to what the base ISO holds; refuses names it does not hold."""
    state = base.build_record
    if remove and state.record is None:
        raise NodePluginError(f"cannot remove {', '.join(excerpt(name) for name in remove)}: the ISO holds no "
                              f"plugins ({state.problem})", path=base.path,
                              hint="give the customized ISO that holds the plugin (it has a build record)")
    held = tuple(state.record.plugins) if state.record is not None else ()
    names = [plugin.name for plugin in held]
    unknown = [name for name in remove if name not in names]
    if unknown:
        raise NodePluginError(f"the ISO holds no plugin {', '.join(excerpt(name) for name in unknown)}", path=base.path,
                              hint=f"it holds: {', '.join(names) or 'no plugins'} (remove them by these names)")
    applied = tuple(archive.manifest.name for archive in archives)
    both = sorted(set(applied) & set(remove))
    if both:
        raise NodePluginError(f"the plugin {', '.join(both)} is given and named for removal in the same edit",
                              hint="give the plugin to upgrade it, or name it to remove it, not both")
    return PluginChange(held=held, applied=applied, removed=tuple(plugin for plugin in held if plugin.name in remove))


def plugins_after(change: PluginChange, recorded: Sequence[records.RecordedPlugin]) -> list[records.RecordedPlugin]:
    """What the ISO holds after the edit: the kept plugins in their place, then the applied ones in order."""
    return [*change.kept, *recorded]


# -- kernel arguments ---------------------------------------------------------------------------------

def _origin_entries(origin_tree: dict) -> list[list[str]]:
    """The kernel arguments of every boot entry of the origin (from its recorded configs)."""
    entries = []
    for where, text in (origin_tree.get("configs") or {}).items():
        if not isinstance(where, str) or not isinstance(text, str):
            continue
        path = where.rsplit(":", 1)[-1]
        entries += [list(entry.kernel_args) for entry in list_entries(text, detect_format(path, text))]
    return [args for args in entries if args]


def user_kernel_words(record: records.BuildRecord | None) -> list[str]:
    """The kernel-argument words users asked for in every earlier edit (extra_kernel_args, !remove_kernel_args)."""
    words: list[str] = []
    for entry in ([*record.history, record.to_dict()] if record else []):
        options = entry.get("options") if isinstance(entry, dict) else None
        if isinstance(options, dict):
            words += [word for word in options.get("extra_kernel_args") or [] if isinstance(word, str)]
            words += [f"!{word.lstrip('!')}" for word in options.get("remove_kernel_args") or []
                      if isinstance(word, str)]
    return words


@dataclasses.dataclass(frozen=True)
class TakeBack:
    """Kernel-argument edits that undo what departing plugins did, and what could not be undone."""

    edits: KernelArgEdits
    notes: list[str]


def take_back_kernel_args(change: PluginChange, staying_words: Iterable[str], origin_tree: dict) -> TakeBack:
    """Edits that take back the departing plugins' kernel arguments (see the module docstring)."""
    staying = KernelArgEdits.parse(staying_words)
    origin = _origin_entries(origin_tree)
    remove, add, notes = [], [], []
    for plugin in change.departing:
        departing = KernelArgEdits.parse(plugin.kernel_args)
        for word in departing.add:
            if word in staying.add or any(word in args for args in origin) or word in remove:
                continue
            remove.append(word)
        for word in departing.remove:
            if word in staying.remove:
                continue
            matched = [tuple(arg for arg in args if KernelArgEdits(remove=(word,)).removes(arg)) for args in origin]
            if not any(matched):
                continue
            if len(set(matched)) == 1:
                add += [arg for arg in matched[0] if arg not in add]
            else:
                notes.append(f"{plugin.name} removed '{word}', which the base had in some boot entries only: it "
                             "stays removed (one edit applies to every entry)")
    return TakeBack(KernelArgEdits(add=tuple(add), remove=tuple(remove)), notes)


# -- packages -------------------------------------------------------------------------------------------

def erase_candidates(change: PluginChange, staying_brought: Iterable[str], protected: Iterable[str]) -> list[str]:
    """Packages the departing plugins brought that no staying plugin brought, never a protected (origin) one."""
    departing = {name for plugin in change.departing for name in plugin.brought_names()}
    return sorted(departing - set(staying_brought) - set(protected))


def stale_records(change: PluginChange, staying: Sequence[PluginManifest]) -> list[str]:
    """Names of the /etc/ovirt-plugins.d records of departing plugin packages that no staying plugin ships."""
    shipped = {package.name for manifest in staying for package in manifest.plugin_packages}
    return sorted({package.name for plugin in change.departing for package in plugin.manifest.plugin_packages}
                  - shipped)


# rpm -q prints "package x is not installed" among the answers: only marked lines are names.
_MARK = "@@name="


def _queried_names(outcome: CommandResult) -> set[str]:
    return {line[len(_MARK):].strip() for line in outcome.output.splitlines() if line.startswith(_MARK)}


@dataclasses.dataclass(frozen=True)
class Erased:
    """What the erase step did: erased and kept packages (kept: installed packages need them), rpm's output."""

    erased: list[str]
    kept: dict[str, str]
    outcome: CommandResult | None


def erase_unneeded(session: RootImageSession, candidates: Sequence[str]) -> Erased:
    """Erase the candidates with the image's own rpm (scriptlets run in the image), keeping those that
    installed packages still need: rpm tests the transaction first and names what would break."""
    rpm = session.rpm_binary()
    present = _queried_names(session.run([rpm, "-q", "--qf", f"{_MARK}%{{NAME}}\\n", *candidates])) \
        if candidates else set()
    names = [name for name in candidates if name in present]
    kept: dict[str, str] = {}
    while names:
        test = session.run([rpm, "-e", "--test", *names])
        if test.ok:
            break
        needed: dict[str, str] = {}
        for line in test.output.splitlines():
            match = _NEEDED.match(line)
            if match:
                needed.setdefault(match.group("capability"), match.group("by"))
        query = [rpm, "-q", "--whatprovides", "--qf", f"{_MARK}%{{NAME}}\\n", *needed]
        providers = _queried_names(session.run(query)) if needed else set()
        blocked = [name for name in names if name in providers]
        if not blocked:
            raise NodePluginError("the image's rpm refuses to erase what the departing plugins brought",
                                  details=test.output.strip()[-4000:],
                                  hint="the output below is what rpm said inside the image")
        by = next(iter(needed.values()))
        kept.update({name: f"needed by {by}" for name in blocked})
        names = [name for name in names if name not in blocked]
    if not names:
        return Erased(erased=[], kept=kept, outcome=None)
    return Erased(erased=names, kept=kept, outcome=session.run([rpm, "-e", *names]))


# -- kernel modules and the initramfs -----------------------------------------------------------------

def early_boot_modules(words: Iterable[str], where: str) -> list[str]:
    """Module names that ``rd.driver.pre=`` words ask the initramfs to load (refusing what is not a name)."""
    found = []
    for word in words:
        name, sep, value = word.partition("=")
        if name != EARLY_BOOT_ARG or not sep:
            continue
        for module in value.strip("\"'").split(","):
            if not _MODULE_NAME.match(module):
                raise NodePluginError(f"{EARLY_BOOT_ARG}={excerpt(value)}: {excerpt(module)} is not a kernel module "
                                      "name", path=where, hint="list module names separated by commas")
            if module not in found:
                found.append(module)
    return found


def kernel_release(base: NodeIso, path: str) -> str | None:
    """The release a Linux kernel image (bzImage) names in its header, e.g. '6.1.0-57-amd64'; None if it is not one."""
    head = base.read_bytes(path, limit=65536)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    pointer = int.from_bytes(head[0x20E:0x210], "little")
    start = pointer + 0x200
    if not pointer or start >= len(head):
        return None
    text = head[start:start + 256].split(b"\0", 1)[0].decode("ascii", "replace").split(" ", 1)[0]
    return text if _KERNEL_RELEASE.match(text) else None


@dataclasses.dataclass(frozen=True)
class InitramfsPlan:
    """What an edit does about the initramfs: depmod for the ISO's kernel, and a rebuild when the image can."""

    kernel_version: str | None
    drivers: tuple[str, ...]
    rebuild: bool
    reason: str
    base_sha256: str | None = None
    tree_files: tuple[str, ...] = ()
    efi_files: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kernel_version": self.kernel_version, "drivers": list(self.drivers), "rebuild": self.rebuild,
                "reason": self.reason, "files": list(self.tree_files),
                "efi_files": {image: list(paths) for image, paths in self.efi_files.items()}}


def touches_kmod(change: PluginChange, archives: Sequence[PluginArchive]) -> bool:
    """Whether the edit installs, upgrades or removes a kernel-module plugin (then the initramfs is its concern)."""
    return any(archive.manifest.kind == "kmod" for archive in archives) or \
        any(plugin.manifest.kind == "kmod" for plugin in change.departing)


def plan_initramfs(base: NodeIso, tree: dict, archives: Sequence[PluginArchive], change: PluginChange,
                   staying: Sequence[records.RecordedPlugin]) -> InitramfsPlan | None:
    """The initramfs work of an edit that installs, upgrades or removes a kmod plugin (None for other edits).

    ``tree`` is the base's TreeReference as a dict (where its initramfs copies are found by digest);
    ``staying`` the kmod plugins held after the edit, whose declared modules the initramfs keeps.
    """
    if not touches_kmod(change, archives):
        return None
    declared: dict[str, list[str]] = {}
    for archive in archives:
        if archive.manifest.kind == "kmod":
            declared[archive.manifest.name] = early_boot_modules(archive.recipe.kernel_args_add, archive.path)
    for plugin in staying:
        if plugin.manifest.kind == "kmod" and plugin.name not in declared:
            declared[plugin.name] = early_boot_modules(plugin.kernel_args, base.path)
    drivers = tuple(dict.fromkeys(module for modules in declared.values() for module in modules))
    declaring = sorted(name for name, modules in declared.items() if modules)
    root = base.root_filesystem()
    has_dracut = any(root.exists(path) for path in DRACUT_PATHS)
    if declaring and not has_dracut:
        raise NodePluginError(f"the kmod plugin {', '.join(declaring)} declares early-boot modules "
                              f"({EARLY_BOOT_ARG}={','.join(drivers)}), but the image has no dracut to rebuild "
                              "its initramfs with", path=base.path,
                              hint="use a Node image that carries dracut, or a plugin whose modules are loaded "
                                   "after boot (without rd.driver.pre)")
    kernels, initrds = (sorted(path for path in paths if base.exists(path)) for paths in boot_entry_files(base))
    releases = sorted({release for path in kernels if (release := kernel_release(base, path))})
    problem = None
    if len(releases) != 1:
        problem = (f"the ISO's boot entries load {len(releases)} kernels the build can name "
                   f"({', '.join(releases) or 'none'}), so it cannot tell for which kernel to run depmod")
    elif not any(root.exists(f"{top}/modules/{releases[0]}") for top in ("/lib", "/usr/lib")):
        problem = f"the image has no /lib/modules/{releases[0]} for the ISO's kernel"
    if problem:
        if declaring:
            raise NodePluginError(f"the kmod plugin {', '.join(declaring)} declares early-boot modules, but {problem}",
                                  path=base.path, hint="use a Node image whose kernel modules are in the image")
        return InitramfsPlan(kernel_version=None, drivers=drivers, rebuild=False,
                             reason=f"{problem}: the modules go into the root image only")
    release = releases[0]
    if not has_dracut:
        return InitramfsPlan(kernel_version=release, drivers=drivers, rebuild=False,
                             reason="the image has no dracut: the modules go into the root image (depmod), the "
                                    "initramfs stays the base's")
    digests = {tree.get("files", {}).get(path) for path in initrds}
    if len(digests) != 1 or None in digests:
        raise NodePluginError(f"the ISO's boot entries load {len(initrds)} different initramfs images "
                              f"({', '.join(sorted(initrds)) or 'none'}); rebuilding them is not supported",
                              path=base.path)
    digest = digests.pop()
    files = tuple(sorted(path for path, sha in tree.get("files", {}).items() if sha == digest))
    efi = {image: tuple(sorted(inner for inner, sha in inside.items() if sha == digest))
           for image, inside in sorted(tree.get("efi_files", {}).items())}
    return InitramfsPlan(kernel_version=release, drivers=drivers, rebuild=True, base_sha256=digest,
                         reason=f"rebuilt with the image's dracut for kernel {release}", tree_files=files,
                         efi_files={image: paths for image, paths in efi.items() if paths})


@dataclasses.dataclass(frozen=True)
class RebuiltInitramfs:
    """The initramfs the image's dracut made (a local file), or None when only depmod ran; the step's output."""

    path: str | None
    sha256: str | None
    outcome: CommandResult


# The image's tools are called by their paths: a shell whose applets come first (busybox ash built standalone)
# would otherwise run its own depmod, which leaves libkmod's binary index stale.
_INITRAMFS_SCRIPT = f"""export {_TOOL_PATH}; kver="$1"; drivers="$2"; out="$3"; rebuild="$4"
first() {{ for candidate in "$@"; do if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi; done; return 1; }}
if depmod=$(first {' '.join(DEPMOD_PATHS)}); then "$depmod" -a "$kver" || exit $?
else echo "no depmod in the image: modules.dep not updated"; fi
[ "$rebuild" = yes ] || exit 0
dracut=$(first {' '.join(DRACUT_PATHS)}) || {{ echo "no dracut in the image"; exit 127; }}
mkdir -p "$out" && mount -t tmpfs -o mode=0700 ovirt-node-plugins "$out" || exit $?
mkdir "$out/tmp" && "$dracut" --force --tmpdir "$out/tmp" ${{drivers:+--add-drivers "$drivers"}} \\
    --kver "$kver" "$out/initramfs.img" || exit $?
if lsinitrd=$(first "${{dracut%/*}}/lsinitrd" /usr/bin/lsinitrd /usr/sbin/lsinitrd); then
    echo "{_LISTING}"; "$lsinitrd" "$out/initramfs.img" || exit $?
fi
"""


def _module_file(module: str) -> str:
    """A pattern for a module's file in an lsinitrd listing ('_' and '-' are one in module names)."""
    name = "".join("[_-]" if char in "_-" else char for char in module)  # names are [A-Za-z0-9_-]
    return rf"/{name}\.ko(\.[a-z]+)?$"


def rebuild_initramfs(session: RootImageSession, plan: InitramfsPlan, workdir: str) -> RebuiltInitramfs:
    """depmod for the plan's kernel, then dracut inside the image, into a tmpfs (nothing of it lands in the image);
    the declared modules must be in the result (dracut only warns when it cannot add one)."""
    scratch = "/var/tmp/.ovirt-node-plugins-initramfs"
    outcome = session.run(["sh", "-c", _INITRAMFS_SCRIPT, "rebuild-initramfs", plan.kernel_version or "",
                           " ".join(plan.drivers), scratch, "yes" if plan.rebuild else "no"])
    if not outcome.ok or not plan.rebuild:
        return RebuiltInitramfs(path=None, sha256=None, outcome=outcome)
    local = os.path.join(workdir, "initramfs")
    try:
        session.download_tree(scratch, local)
    finally:
        session.run(["sh", "-c", 'umount "$1" && rmdir "$1"', "umount", scratch])
    path = os.path.join(local, "initramfs.img")
    if not os.path.isfile(path) or os.path.islink(path):
        raise NodePluginError("the image's dracut reported success but wrote no initramfs",
                              details=outcome.output.strip()[-4000:])
    _dracut_log, listed, listing = outcome.output.partition(_LISTING)
    if listed:
        missing = [module for module in plan.drivers if not re.search(_module_file(module), listing, re.MULTILINE)]
        if missing:
            raise NodePluginError(f"the initramfs the image's dracut rebuilt lacks the declared early-boot module "
                                  f"{', '.join(missing)}", details=outcome.output.strip()[-4000:],
                                  hint="the plugin must ship the module for the ISO's kernel under /lib/modules")
    return RebuiltInitramfs(path=path, sha256=file_sha256(path), outcome=outcome)


# -- rebase ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Carried:
    """The plugins a customized ISO carries, extracted for a rebase, and the ones left out (and why)."""

    record: records.BuildRecord
    paths: list[str]
    skipped: list[dict]


def carried_plugins(old: NodeIso, new_base: NodeIso, folder: str, *, skip_incompatible: bool,
                    leave_out: Iterable[str] = ()) -> Carried:
    """Extract the tarballs ``old`` carries into ``folder``, in the order they were applied, for ``new_base``.

    A plugin whose Node range excludes the new base is refused before anything is extracted, or left out
    with ``skip_incompatible``; ``leave_out`` names plugins not to take (given anew, or removed). Each
    extracted tarball must have the digest the record names; it is then read like any plugin (open_plugin).
    """
    record = old.build_record.record
    if record is None:
        raise NodePluginError(f"cannot rebase from this ISO: {old.build_record.problem}", path=old.path,
                              hint="give a customized ISO built by ovirt-plugin-build (it carries its plugins)")
    node = new_base.node
    wanted: list[records.RecordedPlugin] = []
    skipped: list[dict[str, str]] = []
    refused: list[dict[str, str]] = []
    for plugin in record.plugins:
        if plugin.name in leave_out:
            continue
        problem = node.incompatibility(plugin.manifest.node.product, plugin.manifest.node.versions)
        if problem:
            entry = {"name": plugin.name, "version": plugin.version, "reason": f"{problem} (the new base's)"}
            (skipped if skip_incompatible else refused).append(entry)
        else:
            wanted.append(plugin)
    if refused:
        raise NodePluginError("the new base is outside the Node range of: " + "; ".join(
            f"{item['name']} {item['version']} {item['reason']}" for item in refused), path=new_base.path,
            hint="use plugin releases made for the new Node (give them with --plugin), or leave these out "
                 "(--skip-incompatible, skip_incompatible=true)")
    limit = Limits().max_total_bytes
    paths = []
    for index, plugin in enumerate(wanted):
        if plugin.carried is None or not records.is_carried_path(plugin.carried) or not old.exists(plugin.carried):
            raise NodePluginError(f"the ISO does not carry the tarball of {plugin.name} {plugin.version}",
                                  path=old.path,
                                  hint="it was built by an older version; give the plugin with --plugin (plugins=)")
        if old.size(plugin.carried) > limit:
            raise NodePluginError(f"the carried tarball {plugin.carried} is larger than {limit} bytes", path=old.path)
        local = os.path.join(folder, f"{index:02d}-{posixpath.basename(plugin.carried)}")
        old.extract(plugin.carried, local)
        if file_sha256(local) != plugin.sha256:
            raise NodePluginError(f"the carried tarball {plugin.carried} is not the one the build record names "
                                  f"(sha256 {plugin.sha256[:16]}...)", path=old.path,
                                  hint="the ISO was changed after it was built; rebase from an intact copy")
        paths.append(local)
    return Carried(record=record, paths=paths, skipped=skipped)
