# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PXE boot trees made from a Node ISO, the way livecd-iso-to-pxeboot does it, plus what it never had.

The tree (``dest``)::

    vmlinuz0                 the ISO's kernel
    initrd0.img              the ISO's initrd, padded to 4 bytes, then a gzip'd newc cpio holding
                             /<iso name>: a stripped ISO with only LiveOS/squashfs.img
    pxelinux.0 ldlinux.c32   BIOS loader (from the pxelinux and syslinux-common packages)
    pxelinux.cfg/default     self-contained BIOS menu (paths relative to the tree)
    grub.cfg                 self-contained GRUB 2 menu for UEFI (paths from the TFTP root)
    BOOTX64.EFI              optional GRUB netboot image whose prefix is (tftp)/
    menus/pxelinux.cfg       entries only, paths under ``menu_prefix``: for INCLUDE in a server's menu
    menus/grub.cfg           entries only, paths under ``menu_prefix``: for ``source`` in a server's grub.cfg
    initrd0-net.img          HTTP variant: the ISO's initrd unchanged (dracut livenet fetches the root)
    squashfs.img             HTTP variant: LiveOS/squashfs.img, served at <http_url>/squashfs.img
    .node-pxe-tree.json      stamp: the ISO digest and options the tree was made from
    SHA256SUMS               sha256 of every other file, ``sha256sum -c`` format

Menus are rendered by pure functions and checked before the tree is published (grub-script-check
for GRUB, a structural check for pxelinux). The tree is built in a temporary folder next to
``dest`` and renamed into place; the same ISO digest and options make a rerun a no-op.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence

from ._bootcfg import GRUB, ISOLINUX, BootEntry, KernelArgEdits, arg_name, udev_escape
from ._digests import file_sha256
from ._errors import NodePluginError
from ._iso import IsoReader
from ._nodeinfo import iso_version_fields
from ._nodeiso import NodeIso
from ._outputs import read_small_json
from ._platforms import find_file
from ._run import StageTimer, require_tool, run

# The BIOS network loader and its core module, found per platform (_platforms: Debian's pxelinux and
# syslinux-common, EL's syslinux-nonlinux).
BIOS_LOADERS = ("pxelinux.0", "ldlinux.c32")
STAMP = ".node-pxe-tree.json"
SUMS = "SHA256SUMS"
STAMP_FORMAT = 1
SQUASHFS_ISO_PATH = "/LiveOS/squashfs.img"
KERNEL = "vmlinuz0"
INITRD = "initrd0.img"
NET_INITRD = "initrd0-net.img"
SQUASHFS = "squashfs.img"
EFI_IMAGE = "BOOTX64.EFI"
# GRUB modules of the netboot image: network (efinet, tftp), the menu, and the Linux loader.
GRUB_NET_MODULES = ("normal", "configfile", "linux", "efinet", "tftp", "net", "echo", "test", "serial",
                    "terminal", "gzio", "all_video", "efi_gop", "search", "ls", "cat", "sleep", "reboot")
_CHUNK = 1 << 20
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]*$")
# Words a GRUB script would read specially: quote them on the linux line.
_GRUB_SPECIAL = re.compile(r"[\s$;&|<>(){}\"'\\#*?\[\]]")
# Keywords a pxelinux menu of ours may hold; anything else is a rendering bug.
_PXELINUX_KEYWORDS = {"default", "prompt", "timeout", "serial", "label", "kernel", "linux", "append", "initrd",
                      "ipappend", "sysappend", "menu", "include", "ontimeout", "onerror", "say"}


@dataclasses.dataclass(frozen=True)
class PxeEntry:
    """One network boot entry: what a pxelinux LABEL and a GRUB menuentry both say."""

    label: str
    title: str
    kernel: str
    initrd: str
    kernel_args: list[str]
    ipappend: bool = False


@dataclasses.dataclass
class PxeTreeRequest:
    """Everything that makes a PXE tree (see the node_pxe_tree module for each option)."""

    src: str
    dest: str
    iso_name: str | None = None
    label: str = "ovirt-node"
    title: str | None = None
    menu_prefix: str = ""
    ipappend: bool = False
    http_url: str | None = None
    extra_kernel_args: list[str] = dataclasses.field(default_factory=list)
    timeout: int = 5
    serial: str | None = None
    efi_bootloader: bool = True
    release_version: str | None = None
    force: bool = False
    check_mode: bool = False

    def options_for_digest(self) -> dict:
        """The options that change the tree's bytes."""
        return {"iso_name": self.iso_name, "label": self.label, "title": self.title,
                "menu_prefix": self.menu_prefix, "ipappend": self.ipappend, "http_url": self.http_url,
                "extra_kernel_args": list(self.extra_kernel_args), "timeout": self.timeout,
                "serial": self.serial, "efi_bootloader": self.efi_bootloader}


@dataclasses.dataclass
class PxeTreeResult:
    """What build_pxe_tree made (or, in check mode, would make)."""

    changed: bool
    dest: str
    reason: str
    iso_sha256: str
    volume_id: str
    version: str
    release_id: str
    iso_name: str
    kernel_args: dict[str, list[str]]
    files: list[str] = dataclasses.field(default_factory=list)
    tree_sha256: str | None = None
    menu_checks: list[str] = dataclasses.field(default_factory=list)
    durations: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class IsoBootFacts:
    """What the tree needs from the ISO: label, version, and the default entry's kernel, initrd, arguments."""

    volume_id: str
    version: str
    product: str
    kernel: str
    initrd: str
    kernel_args: list[str]


# Pure parts: kernel arguments, menus, checks.

def _without(words: Sequence[str], names: Sequence[str]) -> list[str]:
    return [word for word in words if arg_name(word) not in names]


def pxe_kernel_args(words: Sequence[str], *, volume_id: str, iso_name: str, initrd: str) -> list[str]:
    """livecd-iso-to-pxeboot's APPEND: rootflags=loop, root=live:/<iso name> instead of CDLABEL=<label>.

    ``initrd=`` points at ``initrd``; ``rd.live.check`` is dropped (the stripped ISO carries no md5).
    Raises when no argument names the ISO's label, since the result could not find its root.
    """
    labels = {f"CDLABEL={volume_id}", f"CDLABEL={udev_escape(volume_id)}"}
    out, found = [], False
    for word in _without(words, ("initrd", "rootflags", "rd.live.check")):
        name, _sep, value = word.partition("=")
        if name == "root" and value.startswith("live:") and value[len("live:"):] in labels:
            word, found = f"root=live:/{iso_name}", True
        out.append(word)
    if not found:
        raise NodePluginError(f"the default boot entry has no root=live:CDLABEL={volume_id}",
                              hint="node_pxe_tree needs a Fedora LiveCD-style ISO whose entry boots by its volume label")
    return [f"initrd={initrd}", "rootflags=loop", *out]


def http_kernel_args(words: Sequence[str], *, squashfs_url: str, initrd: str) -> list[str]:
    """Kernel arguments for dracut's livenet: root=live:<url of squashfs.img>, ip=dhcp unless an ip= is given."""
    out = []
    for word in _without(words, ("initrd", "rootflags", "rd.live.check")):
        if arg_name(word) == "root":
            word = f"root=live:{squashfs_url}"
        out.append(word)
    if not any(arg_name(word) == "root" for word in out):
        out.insert(0, f"root=live:{squashfs_url}")
    if not any(arg_name(word) == "ip" for word in out):
        out.append("ip=dhcp")
    return [f"initrd={initrd}", *out]


def _pxelinux_entry(entry: PxeEntry) -> str:
    lines = [f"LABEL {entry.label}", f"  MENU LABEL {entry.title}", f"  KERNEL {entry.kernel}",
             "  APPEND " + " ".join(entry.kernel_args)]
    if entry.ipappend:
        lines.append("  IPAPPEND 2")
    return "\n".join(lines) + "\n"


def render_pxelinux(entries: Sequence[PxeEntry], *, default: str | None, timeout: int, serial: str | None,
                    header: str = "") -> str:
    """A pxelinux config: DEFAULT/PROMPT/TIMEOUT (only when ``default`` is given), then one LABEL per entry.

    pxelinux has no initrd keyword of its own in old versions: the initrd goes in APPEND as initrd=.
    """
    parts = [f"# {line}\n" for line in header.splitlines()]
    if default is not None:
        if serial:
            parts.append(f"SERIAL {serial}\n")
        parts.append(f"DEFAULT {default}\nPROMPT 0\nTIMEOUT {timeout * 10}\n")
    for entry in entries:
        parts.append("\n" + _pxelinux_entry(entry))
    return "".join(parts)


def _grub_word(word: str) -> str:
    if _GRUB_SPECIAL.search(word):
        return "'" + word.replace("'", "'\\''") + "'"
    return word


def render_grub(entries: Sequence[PxeEntry], *, default: str | None, timeout: int, serial: str | None,
                header: str = "") -> str:
    """A GRUB 2 config with one menuentry per entry (``linux``/``initrd``, no initrd= argument)."""
    parts = [f"# {line}\n" for line in header.splitlines()]
    if default is not None:
        if serial:
            unit, _sep, speed = serial.partition(" ")
            parts.append(f"serial --unit={unit} --speed={speed or '115200'}\n"
                         "terminal_input serial console\nterminal_output serial console\n")
        parts.append(f"set default={_grub_word(default)}\nset timeout={timeout}\n")
    for entry in entries:
        args = " ".join(_grub_word(word) for word in _without(entry.kernel_args, ("initrd",)))
        title = entry.title.replace("'", "")
        parts.append(f"\nmenuentry '{title}' --id {entry.label} {{\n"
                     f"\tlinux {entry.kernel} {args}\n\tinitrd {entry.initrd}\n}}\n")
    return "".join(parts)


def check_pxelinux(text: str) -> list[str]:
    """Structural problems of a pxelinux config: unknown keywords, entries without kernel or APPEND,
    a DEFAULT that names no entry, a bad IPAPPEND. Empty when the config is sound."""
    problems: list[str] = []
    labels: dict[str, dict[str, bool]] = {}
    current: str | None = None
    default = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _sep, rest = stripped.partition(" ")
        keyword, rest = keyword.lower(), rest.strip()
        if keyword not in _PXELINUX_KEYWORDS:
            problems.append(f"line {number}: unknown keyword {keyword!r}")
        elif keyword == "label":
            if not rest or rest in labels:
                problems.append(f"line {number}: LABEL {rest!r} is empty or repeated")
            current = rest
            labels[current] = {"kernel": False, "append": False}
        elif keyword in ("kernel", "linux", "append"):
            if current is None:
                problems.append(f"line {number}: {keyword.upper()} outside a LABEL")
            elif not rest:
                problems.append(f"line {number}: {keyword.upper()} without a value")
            else:
                labels[current]["append" if keyword == "append" else "kernel"] = True
        elif keyword == "ipappend" and rest not in ("1", "2", "3"):
            problems.append(f"line {number}: IPAPPEND {rest!r} (expected 1, 2 or 3)")
        elif keyword in ("timeout", "prompt") and not rest.isdigit():
            problems.append(f"line {number}: {keyword.upper()} {rest!r} is not a number")
        elif keyword == "default":
            default = rest
    for label, seen in labels.items():
        if not seen["kernel"]:
            problems.append(f"LABEL {label} has no KERNEL")
        if not seen["append"]:
            problems.append(f"LABEL {label} has no APPEND (the initrd and root= go there)")
    if default is not None and default not in labels:
        problems.append(f"DEFAULT {default} names no LABEL")
    return problems


def check_grub(path: str, name: str | None = None) -> str:
    """Check a grub.cfg with grub-script-check; return how it was checked. Raises on a syntax error."""
    name = name or os.path.basename(path)
    try:
        tool = require_tool("grub-script-check")
    except NodePluginError:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if text.count("{") != text.count("}"):
            raise NodePluginError("unbalanced braces in the GRUB menu", path=path) from None
        return f"{name}: braces balanced (grub-script-check not installed)"
    result = run([tool, path], check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout or b"").decode("utf-8", "replace").strip()
        raise NodePluginError("the GRUB menu does not pass grub-script-check", path=path, details=output,
                              hint="check the title, label and kernel arguments given to node_pxe_tree")
    return f"{name}: grub-script-check passed"


# Reading the ISO.

def _iso_dir_path(config_path: str, relative: str) -> str:
    if relative.startswith("/"):
        return relative
    return os.path.join(os.path.dirname(config_path), relative)


def _default_entry(entries: Sequence[BootEntry]) -> BootEntry:
    for entry in entries:
        if entry.default:
            return entry
    return entries[0]


def iso_boot_facts(reader: IsoReader) -> IsoBootFacts:
    """The ISO's label and version and its default BIOS entry (else the GRUB one) with absolute ISO paths."""
    volume_id = reader.volume_id
    info = iso_version_fields(reader) or {}
    if not reader.exists(SQUASHFS_ISO_PATH):
        raise NodePluginError("the ISO has no LiveOS/squashfs.img", path=reader.path,
                              hint="node_pxe_tree needs a Fedora LiveCD-style ISO such as an oVirt Node ISO")
    configs = [config for config in reader.boot_configs() if config.efiboot is None and config.entries]
    ordered = [c for c in configs if c.fmt == ISOLINUX] + [c for c in configs if c.fmt == GRUB]
    for config in ordered:
        entry = _default_entry(config.entries)
        initrd = entry.initrd
        if entry.kernel and initrd:
            version = "-".join(part for part in (info.get("VERSION"), info.get("RELEASE")) if part) or volume_id
            return IsoBootFacts(volume_id=volume_id, version=version, product=info.get("PRODUCT", ""),
                                kernel=_iso_dir_path(config.path, entry.kernel),
                                initrd=_iso_dir_path(config.path, initrd.split(",")[0]),
                                kernel_args=list(entry.kernel_args))
    raise NodePluginError("no boot entry with a kernel and an initrd in isolinux.cfg or grub.cfg", path=reader.path,
                          hint="node_pxe_tree needs a bootable Fedora LiveCD-style ISO")


# Building the tree.

def _validate(request: PxeTreeRequest) -> None:
    if not os.path.isfile(request.src):
        raise NodePluginError("the ISO does not exist", path=request.src, hint="check src")
    if not _LABEL.match(request.label):
        raise NodePluginError(f"label {request.label!r} is not valid",
                              hint="use letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit")
    if not _PREFIX.match(request.menu_prefix) or ".." in request.menu_prefix.split("/"):
        raise NodePluginError(f"menu_prefix {request.menu_prefix!r} is not a relative TFTP path",
                              hint="use a path such as node/current/ (letters, digits, . _ - /), no '..'")
    name = request.iso_name
    if name is not None and (not name or "/" in name or any(c.isspace() for c in name) or name.startswith(".")):
        raise NodePluginError(f"iso_name {name!r} cannot be a file name on a kernel command line",
                              hint="use a plain file name without spaces, such as node.iso")
    if request.http_url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", request.http_url):
        raise NodePluginError(f"http_url {request.http_url!r} is not an http(s) URL",
                              hint="give the URL under which the tree is served, such as http://pxe.example.com/node/current")
    if request.timeout < 0:
        raise NodePluginError("timeout must be 0 or more seconds")
    if request.serial is not None and not re.match(r"^\d+( \d+)?$", request.serial):
        raise NodePluginError(f"serial {request.serial!r} is not '<port> [<speed>]'", hint="for example '0 115200'")
    for word in request.extra_kernel_args:
        if not word or any(c.isspace() for c in word):
            raise NodePluginError(f"kernel argument {word!r} is empty or has spaces", hint="give one argument per item")


def _entries(request: PxeTreeRequest, facts: IsoBootFacts, iso_name: str, prefix: str, grub: bool) -> list[PxeEntry]:
    """The entries of one menu; ``prefix`` is where the tree sits as the loader sees paths."""
    title = request.title or " ".join(part for part in (facts.product or "oVirt Node", facts.version) if part)
    loader_prefix = ("/" + prefix.lstrip("/")) if grub else prefix.lstrip("/")
    base = KernelArgEdits.parse(request.extra_kernel_args).apply(facts.kernel_args)
    entries = [PxeEntry(label=request.label, title=title, kernel=loader_prefix + KERNEL,
                        initrd=loader_prefix + INITRD, ipappend=request.ipappend,
                        kernel_args=pxe_kernel_args(base, volume_id=facts.volume_id, iso_name=iso_name,
                                                    initrd=loader_prefix + INITRD))]
    if request.http_url:
        url = request.http_url.rstrip("/") + "/" + SQUASHFS
        entries.append(PxeEntry(label=f"{request.label}-http", title=f"{title} (HTTP)",
                                kernel=loader_prefix + KERNEL, initrd=loader_prefix + NET_INITRD,
                                ipappend=request.ipappend,
                                kernel_args=http_kernel_args(base, squashfs_url=url, initrd=loader_prefix + NET_INITRD)))
    return entries


def render_menus(request: PxeTreeRequest, facts: IsoBootFacts, iso_name: str, header: str) -> dict[str, str]:
    """Every menu file of the tree by its relative path."""
    menus = {}
    for grub in (False, True):
        own = _entries(request, facts, iso_name, "", grub)
        shared = _entries(request, facts, iso_name, request.menu_prefix, grub)
        render = render_grub if grub else render_pxelinux
        own_path, shared_path = ("grub.cfg", "menus/grub.cfg") if grub else ("pxelinux.cfg/default", "menus/pxelinux.cfg")
        menus[own_path] = render(own, default=request.label, timeout=request.timeout, serial=request.serial,
                                 header=header)
        menus[shared_path] = render(shared, default=None, timeout=request.timeout, serial=None, header=header)
    return menus


def check_menus(tree: str, menus: dict[str, str]) -> list[str]:
    """Check every menu file written in ``tree``; raise on the first broken one."""
    checks = []
    for relative, text in sorted(menus.items()):
        path = os.path.join(tree, relative)
        if relative.endswith("grub.cfg"):
            checks.append(check_grub(path, relative))
        else:
            problems = check_pxelinux(text)
            if problems:
                raise NodePluginError("the pxelinux menu is not sound: " + "; ".join(problems), path=path)
            checks.append(f"{relative}: pxelinux structure checked")
    return checks


def _stamp(request: PxeTreeRequest, iso_sha256: str) -> dict:
    return {"format": STAMP_FORMAT, "iso_sha256": iso_sha256, "options": request.options_for_digest()}


def _read_json(path: str) -> dict | None:
    return read_small_json(path)


def read_sums(path: str) -> dict[str, str]:
    """``sha256sum`` lines as {relative path: hex digest}."""
    sums = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            digest, _sep, name = line.rstrip("\n").partition("  ")
            if name:
                sums[name] = digest
    return sums


def _tree_intact(dest: str) -> bool:
    """Every file SHA256SUMS lists is there with a plausible size (digests are checked by sha256sum -c on servers)."""
    sums_path = os.path.join(dest, SUMS)
    if not os.path.isfile(sums_path):
        return False
    stamp = _read_json(os.path.join(dest, STAMP)) or {}
    sizes = stamp.get("sizes", {})
    for name in read_sums(sums_path):
        path = os.path.join(dest, name)
        if not os.path.isfile(path) or (name in sizes and os.path.getsize(path) != sizes[name]):
            return False
    return True


def _tree_files(tree: str) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(tree):
        for name in names:
            found.append(os.path.relpath(os.path.join(root, name), tree))
    return sorted(found)


def write_sums(tree: str) -> str:
    """Write SHA256SUMS for every file of the tree but itself; return the sha256 of SHA256SUMS (the tree's digest)."""
    lines = [f"{file_sha256(os.path.join(tree, name))}  {name}\n" for name in _tree_files(tree) if name != SUMS]
    path = os.path.join(tree, SUMS)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return file_sha256(path)


def _stripped_iso_cpio_gz(reader: IsoReader, volume_id: str, iso_name: str, work: str, target) -> None:
    """Append to ``target`` a gzip'd newc cpio holding /<iso_name>, an ISO with only LiveOS/squashfs.img."""
    stripped = os.path.join(work, "stripped")
    payload = os.path.join(work, "payload")
    os.makedirs(os.path.join(stripped, "LiveOS"))
    os.makedirs(payload)
    reader.extract(SQUASHFS_ISO_PATH, os.path.join(stripped, "LiveOS", "squashfs.img"))
    run(["xorriso", "-no_rc", "-as", "mkisofs", "-quiet", "-o", os.path.join(payload, iso_name), "-V", volume_id,
         "-r", "-J", stripped])
    shutil.rmtree(stripped)
    cpio = require_tool("cpio")
    with subprocess.Popen([cpio, "-o", "-H", "newc", "--quiet", "--reproducible"], cwd=payload,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        names, archive, errors = process.stdin, process.stdout, process.stderr
        if names is None or archive is None or errors is None:  # all three are pipes above
            raise NodePluginError("cpio was started without its pipes")
        names.write(f"{iso_name}\n".encode())
        names.close()
        # mtime=0 and no file name in the gzip header: equal inputs give equal bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=target, compresslevel=1, mtime=0) as packed:
            for block in iter(lambda: archive.read(_CHUNK), b""):
                packed.write(block)
        stderr = errors.read().decode("utf-8", "replace")
        if process.wait() != 0:
            raise NodePluginError("cpio failed to pack the stripped ISO", details=stderr)
    shutil.rmtree(payload)


def _efi_image(path: str) -> None:
    # The module folder is named explicitly: grub2-mkimage on EL would otherwise look in its own default.
    run(["grub-mkimage", "-d", find_file("grub-x86_64-efi"), "-O", "x86_64-efi", "-p", "(tftp)/", "-o", path,
         *GRUB_NET_MODULES])


def _assemble(request: PxeTreeRequest, reader: IsoReader, facts: IsoBootFacts, iso_name: str, tree: str, work: str,
              timer: StageTimer) -> list[str]:
    os.makedirs(os.path.join(tree, "pxelinux.cfg"))
    os.makedirs(os.path.join(tree, "menus"))
    with timer.stage("kernel"):
        reader.extract(facts.kernel, os.path.join(tree, KERNEL))
    with timer.stage("initrd"), open(os.path.join(tree, INITRD), "wb") as target:
        reader.extract(facts.initrd, target)
        # The kernel finds an appended cpio only at a 4-byte-aligned offset.
        target.write(b"\0" * (-target.tell() % 4))
        _stripped_iso_cpio_gz(reader, facts.volume_id, iso_name, work, target)
    if request.http_url:
        with timer.stage("http"):
            reader.extract(facts.initrd, os.path.join(tree, NET_INITRD))
            reader.extract(SQUASHFS_ISO_PATH, os.path.join(tree, SQUASHFS))
    with timer.stage("loaders"):
        for loader in BIOS_LOADERS:
            shutil.copyfile(find_file(loader), os.path.join(tree, loader))
        if request.efi_bootloader:
            _efi_image(os.path.join(tree, EFI_IMAGE))
    header = (f"Generated by ovirt.node_plugins node_pxe_tree from {os.path.basename(request.src)}\n"
              f"volume {facts.volume_id}, version {facts.version}; do not edit, rebuild the tree instead")
    menus = render_menus(request, facts, iso_name, header)
    for relative, text in menus.items():
        with open(os.path.join(tree, relative), "w", encoding="utf-8") as handle:
            handle.write(text)
    with timer.stage("check"):
        return check_menus(tree, menus)


def build_pxe_tree(request: PxeTreeRequest) -> PxeTreeResult:
    """Make (or confirm) the PXE tree of ``request.src`` at ``request.dest``; see the module docstring."""
    timer = StageTimer()
    _validate(request)
    dest = os.path.abspath(request.dest.rstrip("/") or "/")
    iso_name = request.iso_name or os.path.basename(request.src)
    if any(c.isspace() for c in iso_name):
        raise NodePluginError(f"the ISO's file name {iso_name!r} has spaces; it becomes a kernel argument",
                              hint="set iso_name to a name without spaces")
    with NodeIso(request.src) as iso:
        return _build_pxe_tree(request, iso, dest, iso_name, timer)


def _build_pxe_tree(request: PxeTreeRequest, iso: NodeIso, dest: str, iso_name: str,
                    timer: StageTimer) -> PxeTreeResult:
    with timer.stage("inspect"):
        iso_sha256 = iso.sha256
        facts = iso_boot_facts(iso)
    release_id = f"{request.release_version or facts.version}-{iso_sha256[:12]}"
    stamp = _stamp(request, iso_sha256)
    kernel_args = {f"{path}#{entry.label}": entry.kernel_args
                   for path, grub in (("pxelinux.cfg/default", False), ("grub.cfg", True))
                   for entry in _entries(request, facts, iso_name, "", grub)}
    result = PxeTreeResult(changed=False, dest=dest, reason="", iso_sha256=iso_sha256, volume_id=facts.volume_id,
                           version=facts.version, release_id=release_id, iso_name=iso_name, kernel_args=kernel_args)
    existing = _read_json(os.path.join(dest, STAMP)) or {}
    if not request.force and {k: existing.get(k) for k in stamp} == stamp and _tree_intact(dest):
        result.reason = "up to date: the tree's stamp matches the ISO digest and options"
        result.files = sorted(read_sums(os.path.join(dest, SUMS)))
        result.tree_sha256 = tree_digest(dest)
        result.durations = timer.durations
        return result
    result.changed = True
    if request.check_mode:
        result.reason = "would build"
        result.durations = timer.durations
        return result
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise NodePluginError("the folder of dest does not exist", path=parent, hint="create it first")
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.tmp-", dir=parent)
    try:
        tree = os.path.join(work, "tree")
        result.menu_checks = _assemble(request, iso, facts, iso_name, tree, work, timer)
        sizes = {name: os.path.getsize(os.path.join(tree, name)) for name in _tree_files(tree)}
        with open(os.path.join(tree, STAMP), "w", encoding="utf-8") as handle:
            json.dump({**stamp, "release_id": release_id, "sizes": sizes}, handle, indent=1, sort_keys=True)
        with timer.stage("checksums"):
            result.tree_sha256 = write_sums(tree)
        result.files = sorted(read_sums(os.path.join(tree, SUMS)))
        os.chmod(tree, 0o755)
        if os.path.lexists(dest):
            if not os.path.isdir(dest) or os.path.islink(dest):
                raise NodePluginError("dest exists and is not a folder", path=dest, hint="remove it or choose another dest")
            os.rename(dest, os.path.join(work, "old"))
        os.rename(tree, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.reason = f"built in {time.monotonic() - started:.1f} s"
    result.durations = timer.durations
    return result


def tree_digest(dest: str) -> str:
    """sha256 of the tree's SHA256SUMS: equal digests mean equal trees."""
    return file_sha256(os.path.join(dest, SUMS))


__all__ = ["IsoBootFacts", "PxeEntry", "PxeTreeRequest", "PxeTreeResult", "build_pxe_tree",
           "check_grub", "check_menus", "check_pxelinux", "http_kernel_args", "iso_boot_facts", "pxe_kernel_args",
           "read_sums", "render_grub", "render_menus", "render_pxelinux", "tree_digest", "write_sums"]
