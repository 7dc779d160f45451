# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot configurations of a Node ISO: isolinux.cfg, GRUB 2 grub.cfg, grub-legacy BOOTX64.conf.

Edits are pure functions, text in, text out, plus the list of what changed; everything outside
the edited arguments (comments, tabs, CRLF line ends, keyword case, quoting) is kept byte for byte.
The copy of the UEFI config inside ``efiboot.img`` (a FAT image) is read and replaced with mtools,
without root and without a loop mount.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Iterable, Sequence

from ._errors import NodePluginError
from ._run import run

ISOLINUX = "isolinux"
GRUB = "grub"
GRUB_LEGACY = "grub-legacy"
FORMATS = (ISOLINUX, GRUB, GRUB_LEGACY)
MAX_VOLUME_ID = 32

# Config files of the UEFI loader inside efiboot.img, in the order loaders look for them.
EFIBOOT_CONFIGS = ("/EFI/BOOT/grub.cfg", "/EFI/BOOT/BOOTX64.conf")
_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}

# The keyword that carries kernel arguments in each format, and the one that names the initrd.
_KERNEL_LINE = {
    ISOLINUX: re.compile(r"^(?P<lead>[ \t]*(?:append)(?=[ \t]|$))(?P<args>.*?)(?P<trail>[ \t]*)$", re.I),
    GRUB: re.compile(r"^(?P<lead>[ \t]*(?:linux|linuxefi|linux16)[ \t]+\S+)(?P<args>.*?)(?P<trail>[ \t]*)$"),
    GRUB_LEGACY: re.compile(r"^(?P<lead>[ \t]*kernel[ \t]+\S+)(?P<args>.*?)(?P<trail>[ \t]*)$", re.I),
}
# Characters udev leaves alone in a label (others become \xHH in /dev/disk/by-label and CDLABEL=).
_UDEV_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#+-.:=@_")
_LABEL_CHARS = r"[\w.\-]"


@dataclasses.dataclass(frozen=True)
class BootEntry:
    """One boot menu entry and the kernel command line it passes."""

    loader: str
    label: str
    title: str | None
    kernel: str | None
    initrd: str | None
    kernel_args: list[str]
    default: bool = False


@dataclasses.dataclass(frozen=True)
class ConfigEdit:
    """The result of an edit: the new text and one line per change (empty when nothing changed)."""

    text: str
    changes: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def detect_format(name: str, text: str = "") -> str:
    """The format of a boot config from its file name; for other ``.cfg`` names the content decides."""
    base = os.path.basename(name).lower()
    if base in ("isolinux.cfg", "syslinux.cfg", "extlinux.conf"):
        return ISOLINUX
    if base.endswith(".conf"):
        return GRUB_LEGACY
    if base.endswith(".cfg"):
        is_syslinux = re.search(r"^[ \t]*label[ \t]", text, re.I | re.M) and "menuentry" not in text
        return ISOLINUX if is_syslinux else GRUB
    raise NodePluginError("unknown boot configuration format", path=name,
                          hint="expected isolinux.cfg, grub.cfg or BOOTX64.conf")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise NodePluginError(f"unknown boot configuration format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def split_args(args: str) -> list[tuple[int, int]]:
    """Spans of the whitespace-separated words of a command line; quotes keep spaces inside a word."""
    spans = []
    index, length = 0, len(args)
    while index < length:
        while index < length and args[index] in " \t":
            index += 1
        if index >= length:
            break
        start, quote = index, None
        while index < length:
            char = args[index]
            if quote:
                if char == quote:
                    quote = None
            elif char in "\"'":
                quote = char
            elif char in " \t":
                break
            index += 1
        spans.append((start, index))
    return spans


def arg_name(word: str) -> str:
    """The name of a kernel argument: what comes before '=', quotes removed."""
    return word.split("=", 1)[0].replace('"', "").replace("'", "")


def _matches_removal(word: str, removal: str) -> bool:
    """``quiet`` removes quiet; ``console`` removes console and console=<any>; ``a=b`` removes exactly a=b.

    Quotes do not count: ``!console=ttyS0`` removes ``console="ttyS0"`` too.
    """
    if "=" in removal:
        return word.replace('"', "") == removal.replace('"', "")
    return arg_name(word) == removal


def _check_kernel_word(word: str) -> None:
    if not word or split_args(word) != [(0, len(word))] or "\n" in word or "\r" in word:
        raise NodePluginError(f"invalid kernel argument {word[:200]!r}", hint="give one argument per word")


@dataclasses.dataclass(frozen=True)
class KernelArgEdits:
    """Kernel-argument edits, one policy for every place that applies them (ISO configs, efiboot.img, PXE menus).

    Removals apply first (by name, or exactly when the removal has '='), then each addition once.
    """

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for word in self.add + self.remove:
            _check_kernel_word(word)

    @classmethod
    def parse(cls, words: Iterable[str]) -> KernelArgEdits:
        """edit-livecd's words: ``!x`` removes x, any other word is added."""
        add, remove = [], []
        for word in words:
            if word.startswith("!"):
                if len(word) == 1:
                    raise NodePluginError("'!' alone is not a kernel argument to remove", hint="write !name, e.g. !quiet")
                remove.append(word[1:])
            elif word:
                add.append(word)
        return cls(tuple(add), tuple(remove))

    def then(self, other: KernelArgEdits) -> KernelArgEdits:
        """These edits followed by ``other``'s."""
        return KernelArgEdits(self.add + other.add, self.remove + other.remove)

    def removes(self, word: str) -> bool:
        return any(_matches_removal(word, removal) for removal in self.remove)

    def apply(self, words: Sequence[str]) -> list[str]:
        """The argument list after the edits (for menus rendered from a list of words)."""
        kept = [word for word in words if not self.removes(word)]
        for word in self.add:
            if word not in kept:
                kept.append(word)
        return kept

    def words(self) -> list[str]:
        """The edits in edit-livecd's notation (``!x`` for a removal)."""
        return list(self.add) + [f"!{word}" for word in self.remove]

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def _edit_args(args: str, edits: KernelArgEdits) -> tuple[str, list[str], list[str]]:
    """Remove then add words in one argument string; returns the new string, removed and added words."""
    removed: list[str] = []
    kept_text = args
    for start, end in reversed(split_args(args)):
        word = args[start:end]
        if edits.removes(word):
            removed.append(word)
            before = start
            while before > 0 and kept_text[before - 1] in " \t":
                before -= 1
            after = end
            while after < len(kept_text) and kept_text[after] in " \t":
                after += 1
            if before == 0 and after < len(kept_text):  # first word: keep the separation before it
                kept_text = kept_text[:start] + kept_text[after:]
            else:
                kept_text = kept_text[:before] + kept_text[end:]
    removed.reverse()
    present = {kept_text[s:e] for s, e in split_args(kept_text)}
    added = []
    for word in edits.add:
        if word not in present:
            kept_text += " " + word
            present.add(word)
            added.append(word)
    return kept_text, removed, added


def _lines(text: str) -> list[tuple[str, str]]:
    """(content, line ending) pairs; joining them gives the text back unchanged."""
    result = []
    for line in text.splitlines(keepends=True):
        content = line.rstrip("\r\n")
        result.append((content, line[len(content):]))
    return result


def edit_kernel_args(text: str, fmt: str, edits: KernelArgEdits) -> ConfigEdit:
    """Apply ``edits`` to every kernel command line of a config.

    An argument already present is not added twice, so the edit is idempotent.
    """
    _check_format(fmt)
    pattern = _KERNEL_LINE[fmt]
    out, changes = [], []
    for number, (content, ending) in enumerate(_lines(text), start=1):
        match = pattern.match(content)
        if match and not content.lstrip().startswith("#"):
            new_args, removed, added = _edit_args(match.group("args"), edits)
            if removed or added:
                content = match.group("lead") + new_args + match.group("trail")
                what = [f"removed {w!r}" for w in removed] + [f"added {w!r}" for w in added]
                changes.append(f"line {number}: " + ", ".join(what))
        out.append(content + ending)
    return ConfigEdit(text="".join(out), changes=changes)


def udev_escape(label: str) -> str:
    """A label the way udev and dracut's CDLABEL= write it: unsafe characters as \\xHH."""
    return "".join(char if char in _UDEV_SAFE else f"\\x{ord(char):02x}" for char in label)


def check_volume_id(label: str, *, boot_safe: bool = True) -> None:
    """Refuse a volume id that an ISO or a kernel command line cannot carry.

    ``boot_safe`` also refuses characters that need udev's \\xHH escape (spaces, '/', ...): dracut's
    dmsquash-live loses the backslash of ``CDLABEL=My\\x20Node`` and then cannot find the medium
    (seen booting such an ISO), so a new label of a bootable ISO must not need escaping.
    """
    if not label:
        raise NodePluginError("the volume id is empty", hint="give a label of 1 to 32 characters")
    if len(label) > MAX_VOLUME_ID:
        raise NodePluginError(f"the volume id {label!r} has {len(label)} characters; ISO 9660 allows {MAX_VOLUME_ID}",
                              hint="choose a shorter label")
    if any(char in label for char in "'\"\\\r\n\t") or not label.isprintable():
        raise NodePluginError(f"the volume id {label!r} contains a quote, a backslash or a control character",
                              hint="use letters, digits and - _ . : = @ # +")
    if boot_safe and udev_escape(label) != label:
        raise NodePluginError(f"the volume id {label!r} contains characters (such as spaces) that the live boot "
                              "cannot match: dracut drops the backslash of the udev-escaped CDLABEL=",
                              hint="use letters, digits and - _ . : = @ # +")


def _replace_whole(text: str, before: str, after: str) -> str:
    return re.sub(rf"(?<!{_LABEL_CHARS}){re.escape(before)}(?!{_LABEL_CHARS})", lambda _m: after, text)


def replace_volume_label(text: str, fmt: str, old: str, new: str) -> ConfigEdit:
    """Replace every whole occurrence of the old label by the new one.

    On kernel command lines both the plain and the udev-escaped old label become the escaped new
    label (``CDLABEL=My\\x20Node``); elsewhere (``search -l 'My Node'``) each form keeps its own.
    """
    _check_format(fmt)
    check_volume_id(new, boot_safe=False)
    plain_forms = [(old, new), (udev_escape(old), udev_escape(new))]
    kernel_forms = [(old, udev_escape(new)), (udev_escape(old), udev_escape(new))]
    out, changes = [], []
    for number, (content, ending) in enumerate(_lines(text), start=1):
        original = content
        match = _KERNEL_LINE[fmt].match(content)
        if match and not content.lstrip().startswith("#"):
            args = match.group("args")
            for before, after in kernel_forms:
                args = _replace_whole(args, before, after)
            content = match.group("lead") + args + match.group("trail")
        else:
            for before, after in plain_forms:
                content = _replace_whole(content, before, after)
        if content != original:
            changes.append(f"line {number}: volume label {old!r} -> {new!r}")
        out.append(content + ending)
    return ConfigEdit(text="".join(out), changes=changes)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _words(args: str) -> list[str]:
    return [args[start:end] for start, end in split_args(args)]


def _isolinux_entries(text: str) -> list[BootEntry]:
    entries: list[dict] = []
    default_label = None
    for content, _ending in _lines(text):
        stripped = content.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _sep, rest = stripped.partition(" ")
        if "\t" in keyword:
            keyword, _sep, tail = keyword.partition("\t")
            rest = tail + " " + rest
        keyword, rest = keyword.lower(), rest.strip()
        if keyword == "label":
            entries.append({"label": rest, "title": None, "kernel": None, "initrd": None, "args": [],
                            "default": False})
        elif keyword == "default" and not entries:
            default_label = rest
        elif not entries:
            continue
        elif keyword in ("kernel", "linux"):
            entries[-1]["kernel"] = rest
        elif keyword == "append":
            entries[-1]["args"] = _words(rest)
        elif keyword == "initrd":
            entries[-1]["initrd"] = rest
        elif keyword == "menu":
            sub, _sep, value = rest.partition(" ")
            if sub.lower() == "label":
                entries[-1]["title"] = value.strip()
            elif sub.lower() == "default":
                entries[-1]["default"] = True
    result = []
    for entry in entries:
        initrd = entry["initrd"]
        for word in entry["args"]:
            if initrd is None and arg_name(word) == "initrd" and "=" in word:
                initrd = word.split("=", 1)[1]
        result.append(BootEntry(loader=ISOLINUX, label=entry["label"], title=entry["title"], kernel=entry["kernel"],
                                initrd=initrd, kernel_args=entry["args"],
                                default=entry["default"] or entry["label"] == default_label))
    return result


def _grub_entries(text: str) -> list[BootEntry]:
    entries: list[dict] = []
    default = "0"
    menu_re = re.compile(r"^\s*menuentry\s+(?P<title>'[^']*'|\"[^\"]*\"|\S+)")
    for content, _ending in _lines(text):
        stripped = content.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = stripped.split(None, 2)
        match = menu_re.match(content)
        if match:
            title = _unquote(match.group("title"))
            entries.append({"title": title, "kernel": None, "initrd": None, "args": []})
        elif words[0].startswith("set") and stripped.replace(" ", "").startswith("setdefault="):
            default = _unquote(stripped.split("=", 1)[1])
        elif entries and words[0] in ("linux", "linuxefi", "linux16") and len(words) > 1:
            entries[-1]["kernel"] = words[1]
            entries[-1]["args"] = _words(words[2]) if len(words) > 2 else []
        elif entries and words[0] in ("initrd", "initrdefi", "initrd16") and len(words) > 1:
            entries[-1]["initrd"] = " ".join(words[1:])
    return [BootEntry(loader=GRUB, label=entry["title"], title=entry["title"], kernel=entry["kernel"],
                      initrd=entry["initrd"], kernel_args=entry["args"],
                      default=default in (str(index), entry["title"]))
            for index, entry in enumerate(entries)]


def _grub_legacy_entries(text: str) -> list[BootEntry]:
    entries: list[dict] = []
    default = "0"
    for content, _ending in _lines(text):
        stripped = content.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _sep, rest = stripped.replace("\t", " ").partition(" ")
        keyword = keyword.lower()
        if keyword.startswith("default"):
            default = (rest or keyword.partition("=")[2]).strip().lstrip("=").strip()
        elif keyword == "title":
            entries.append({"title": rest.strip(), "kernel": None, "initrd": None, "args": []})
        elif entries and keyword == "kernel":
            words = rest.strip().split(None, 1)
            entries[-1]["kernel"] = words[0] if words else None
            entries[-1]["args"] = _words(words[1]) if len(words) > 1 else []
        elif entries and keyword == "initrd":
            entries[-1]["initrd"] = rest.strip()
    return [BootEntry(loader=GRUB_LEGACY, label=entry["title"], title=entry["title"], kernel=entry["kernel"],
                      initrd=entry["initrd"], kernel_args=entry["args"], default=str(index) == default)
            for index, entry in enumerate(entries)]


def list_entries(text: str, fmt: str) -> list[BootEntry]:
    """The boot entries of a config with their kernel, initrd and kernel arguments, in file order."""
    _check_format(fmt)
    return {ISOLINUX: _isolinux_entries, GRUB: _grub_entries, GRUB_LEGACY: _grub_legacy_entries}[fmt](text)


# efiboot.img: the FAT image UEFI firmware boots from when the ISO is written to a USB stick.

def _efi_path(path: str) -> str:
    return "::" + ("/" + path.lstrip("/"))


def efiboot_files(image: str) -> list[str]:
    """Paths (``/EFI/BOOT/grub.cfg`` style) of every file inside a FAT image."""
    result = run(["mdir", "-i", image, "-/", "-b", "::/"], env=_MTOOLS_ENV, check=False)
    if result.returncode != 0:
        raise NodePluginError("cannot list the FAT image (is it an EFI boot image?)", path=image,
                              details=(result.stderr or b"").decode("utf-8", "replace").strip())
    paths = []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("::/") and not line.endswith("/"):
            paths.append(line[2:])
    return paths


def efiboot_configs(image: str) -> list[str]:
    """The loader configs present inside an efiboot.img (matched without regard to case)."""
    present = {path.lower(): path for path in efiboot_files(image)}
    return [present[name.lower()] for name in EFIBOOT_CONFIGS if name.lower() in present]


def read_efiboot_bytes(image: str, path: str) -> bytes:
    """The bytes of one file inside a FAT image, read with mtools."""
    result = run(["mcopy", "-n", "-i", image, _efi_path(path), "-"], env=_MTOOLS_ENV, check=False)
    if result.returncode != 0:
        raise NodePluginError(f"cannot read {path} inside the EFI boot image", path=image,
                              hint="check that the file exists (mdir -i IMAGE -/ ::/)",
                              details=(result.stderr or b"").decode("utf-8", "replace").strip()[-2000:])
    return result.stdout


def read_efiboot_file(image: str, path: str) -> str:
    """The text of one file inside a FAT image, read with mtools."""
    return read_efiboot_bytes(image, path).decode("utf-8", "surrogateescape")


def write_efiboot_file(image: str, path: str, text: str) -> None:
    """Replace (or create) one file inside a FAT image in place, with mtools."""
    with tempfile.NamedTemporaryFile("wb", dir=os.path.dirname(os.path.abspath(image)), delete=False) as handle:
        handle.write(text.encode("utf-8", "surrogateescape"))
    try:
        result = run(["mcopy", "-o", "-n", "-i", image, handle.name, _efi_path(path)], env=_MTOOLS_ENV, check=False)
    finally:
        os.unlink(handle.name)
    if result.returncode != 0:
        raise NodePluginError(f"cannot write {path} inside the EFI boot image", path=image,
                              hint="the FAT image may be full; rebuild it larger",
                              details=(result.stderr or b"").decode("utf-8", "replace").strip())
