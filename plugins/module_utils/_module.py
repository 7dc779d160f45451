# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running an engine of the library from a module or from the command line.

The optional Python libraries are declared once here (OPTIONAL_LIBRARIES), and every failure is
turned into a message for the person who reads it in one place (explain_failure): a NodePluginError
as the library rendered it, an OSError with its path and what to do, exhaustion and bad text as one
line, anything else as a bug to report (the only case that carries a traceback).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import io
import os
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol, TypeVar

from ._errors import NodePluginError, quote

Request = TypeVar("Request")
Result = TypeVar("Result")


class ModuleLike(Protocol):
    """What run_engine uses of an AnsibleModule."""

    _name: str
    params: Mapping[str, Any]

    def fail_json(self, msg: str, **kwargs: Any) -> NoReturn:
        """End the module with a failure."""


@dataclasses.dataclass(frozen=True)
class OptionalLibrary:
    """A Python library an engine imports only when installed, and what installs it."""

    module: str
    purpose: str
    install: str


# Keyed by the name modules pass to run_engine(requires=...) and missing_required_lib() shows.
OPTIONAL_LIBRARIES: dict[str, OptionalLibrary] = {
    "pycdlib": OptionalLibrary("pycdlib", "to read ISO 9660 images", "pip install pycdlib"),
    "rpm": OptionalLibrary("rpm", "to read RPM headers and rpm databases",
                           "the distribution's python3-rpm, with the system Python"),
    "solv": OptionalLibrary("solv", "to resolve package dependencies",
                            "the distribution's python3-solv, with the system Python"),
    "guestfs": OptionalLibrary("guestfs", "to edit and inspect root images in a libguestfs appliance",
                               "the distribution's python3-guestfs, with the system Python"),
    "jsonschema": OptionalLibrary("jsonschema", "to check plugin manifests", "pip install jsonschema"),
    "pykickstart": OptionalLibrary("pykickstart", "to parse plugin recipes", "pip install pykickstart"),
}

# File systems of the kernel that hold no user files: a destination there can never work.
_PSEUDO_FILE_SYSTEMS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
                                  "pstore", "bpf", "configfs", "efivarfs", "fusectl", "binfmt_misc", "mqueue"})
_HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a run failed, written for a person: a one-line reason (a library error may add detail lines)."""

    message: str
    bug: bool = False  # an unexpected exception: the front end says how to report it and keeps the traceback
    interrupted: bool = False


def missing_libraries(names: Iterable[str]) -> list[tuple[str, str]]:
    """(name, import traceback) of each named optional library that does not import."""
    missing = []
    for name in names:
        try:
            importlib.import_module(OPTIONAL_LIBRARIES[name].module)
        except ImportError:
            missing.append((name, traceback.format_exc()))
    return missing


def check_tmpdir() -> None:
    """Refuse a TMPDIR that is set but is no writable folder.

    Python falls back to /tmp without a word, so the failure would come later from a tool that uses
    TMPDIR itself (libguestfs, mksquashfs), with a message that does not name it.
    """
    tmpdir = os.environ.get("TMPDIR")
    if not tmpdir:
        return
    if not os.path.isdir(tmpdir):
        raise NodePluginError("TMPDIR names no existing folder", path=tmpdir,
                              hint="create it, or set TMPDIR to another folder or unset it")
    if not os.access(tmpdir, os.W_OK | os.X_OK):
        raise NodePluginError("TMPDIR is not writable", path=tmpdir,
                              hint="set TMPDIR to a writable folder with room for temporary files, or unset it")


def explain_failure(error: BaseException, outputs: Mapping[str, str | None] | None = None) -> Failure:
    """The message for a failed run; ``outputs`` maps each output option (dest, --output) to its value."""
    if isinstance(error, NodePluginError):
        return Failure(error.render())
    if isinstance(error, KeyboardInterrupt):
        return Failure("interrupted", interrupted=True)
    if isinstance(error, OSError):
        return Failure(_explain_os_error(error, outputs or {}))
    where = _path_in_progress(error)
    about = f" while reading {quote(where)}" if where else ""
    if isinstance(error, RecursionError):
        return Failure(f"an input is nested too deeply to read{about} (refused: it exceeds Python's recursion limit)")
    if isinstance(error, MemoryError):
        return Failure(f"out of memory{about} (an input is too large to process, or the machine needs more memory)")
    if isinstance(error, UnicodeError):
        return Failure(f"an input is not valid text{about} ({quote(error)})")
    return Failure(f"{type(error).__name__}: {quote(error)}{about}", bug=True)


def _path_in_progress(error: BaseException) -> str | None:
    """The file being read when ``error`` rose: from the innermost frame with an open file or, in ours, a ``path``.

    Exhaustion and bad text carry no file name of their own; the frames say which input it was (a
    parser's open file object, or the ``path`` argument the library gives every function about a file).
    """
    frames = [frame for frame, _line in traceback.walk_tb(error.__traceback__)]
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            name = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name, str) and name:
                return name
        ours = os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE
        path = frame.f_locals.get("path") if ours else None
        if isinstance(path, str) and path:
            return path
    return None


def _explain_os_error(error: OSError, outputs: Mapping[str, str | None]) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    reason = quote(reason[:1].lower() + reason[1:])
    path = _as_text(error.filename)
    if path is None:
        return f"{reason} ({_hint(error.errno, None, outputs)})"
    shown = quote(path)
    other = _as_text(error.filename2)
    if other is not None:
        shown = f"{shown} -> {quote(other)}"
    return f"{shown}: {reason} ({_hint(error.errno, path, outputs)})"


def _as_text(name: object) -> str | None:
    if isinstance(name, bytes):
        return os.fsdecode(name)
    return name if isinstance(name, str) and name else None


def _hint(number: int | None, path: str | None, outputs: Mapping[str, str | None]) -> str:
    """What to do about an OSError, naming the output option the path belongs to when there is one."""
    given = [name for name, value in outputs.items() if value]
    option = _option_of(path, outputs) if path else (given[0] if len(given) == 1 else None)
    instead = f"choose another {option}" if option else "choose another destination"
    mount = _mount_of(path) if path else None
    if mount and mount.fstype in _PSEUDO_FILE_SYSTEMS:
        return f"{quote(mount.point)} is the kernel's {mount.fstype} file system, which holds no files: {instead}"
    if number == errno.EROFS:
        where = quote(mount.point) if mount else "its file system"
        return f"{where} is mounted read-only: mount it read-write or {instead}"
    if number in (errno.ENOSPC, errno.EDQUOT):
        return f"free space on {_full_places(mount, outputs)}, or {instead}"
    if number in (errno.EACCES, errno.EPERM):
        return f"check the owner and mode (and immutable attribute) of it and its folder, or {instead}"
    if number == errno.ENOENT and path:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"the folder {quote(parent)} does not exist: create it or correct the path"
        return "check the path"
    hints = {
        errno.ENOTDIR: "a part of the path is not a folder: correct the path",
        errno.EISDIR: "it is a folder where a file is expected: correct the path",
        errno.ENAMETOOLONG: "use a shorter path",
        errno.ELOOP: "the path has a symlink loop: correct the path",
        errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
        errno.ENFILE: "too many open files on the system: close some or raise fs.file-max",
        errno.EIO: "an input/output error of the device: check it (dmesg)",
        errno.EBUSY: "it is in use: stop what uses it",
        errno.ETXTBSY: "it is in use: stop what uses it",
    }
    return hints.get(number or 0, f"check {quote(path)}" if path else "check the inputs and outputs")


def _full_places(mount: _Mount | None, outputs: Mapping[str, str | None]) -> str:
    """Where a full file system may be: the one of the path, else those of the outputs; and TMPDIR."""
    places = [f"the file system at {quote(mount.point)}"] if mount else []
    if not mount:
        for option, value in outputs.items():
            output_mount = _mount_of(value) if value else None
            if output_mount:
                places.append(f"the file system at {quote(output_mount.point)} ({option})")
    places.append(f"TMPDIR ({quote(tempfile.gettempdir())})")
    return " or ".join(places)


def _option_of(path: str, outputs: Mapping[str, str | None]) -> str | None:
    """The output option whose file, folder, or temporary file beside it is ``path``."""
    target = os.path.abspath(path)
    for option, value in outputs.items():
        if not value:
            continue
        output = os.path.abspath(value)
        if target == output or target.startswith(output.rstrip("/") + "/") or \
                os.path.dirname(target) == os.path.dirname(output):
            return option
    return None


@dataclasses.dataclass(frozen=True)
class _Mount:
    point: str
    fstype: str


def _mount_of(path: str) -> _Mount | None:
    """The mount holding ``path`` (or its nearest existing folder), from /proc/self/mountinfo."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and existing != "/":
        existing = os.path.dirname(existing)
    existing = os.path.realpath(existing)
    best = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _sep, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = _unescape_mountinfo(parts[4])
        if existing == point or existing.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best.point):  # later lines mount over earlier ones
                best = _Mount(point, rest.split()[0])
    return best


def _unescape_mountinfo(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as octal escapes.
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field


def missing_library_message(names: Iterable[str]) -> tuple[str, str] | None:
    """For the first of ``names`` that does not import: missing_required_lib()'s message and the import traceback."""
    # The command line imports this file too and must not need ansible-core.
    from ansible.module_utils.basic import missing_required_lib  # pylint: disable=import-outside-toplevel

    missing = missing_libraries(names)
    if not missing:
        return None
    name, import_traceback = missing[0]
    library = OPTIONAL_LIBRARIES[name]
    return missing_required_lib(name, reason=f"{library.purpose} (install: {library.install})"), import_traceback


def failure_result(error: BaseException, source: str, outputs: Mapping[str, str | None] | None = None) -> dict:
    """The failed result of a module or an action plugin ``source`` for ``error``: ``msg``, and for a bug alone
    ``exception`` with the traceback. Call it inside the except block that caught ``error``."""
    failure = explain_failure(error, outputs)
    if not failure.bug:
        return {"failed": True, "msg": failure.message}
    return {"failed": True, "exception": traceback.format_exc(),
            "msg": f"{source}: unexpected error, a bug of ovirt.node_plugins: {failure.message}. Please report it "
                   "with its traceback (ANSIBLE_DISPLAY_TRACEBACK=error shows it; before ansible-core 2.19, -vvv)"}


def run_engine(module: ModuleLike, engine: Callable[[Request], Result], request: Request, *,
               requires: Iterable[str] = (), outputs: Iterable[str] = ()) -> Result:
    """Call ``engine(request)`` for a module and return its result, or end the module with fail_json.

    ``requires`` names OPTIONAL_LIBRARIES the run needs (missing_required_lib() for the first missing);
    ``outputs`` names the module's output options, which OSError hints refer to. Only a bug fails with
    the traceback in ``exception``; every other failure is a ``msg`` alone.
    """
    missing = missing_library_message(requires)
    if missing:
        module.fail_json(msg=missing[0], exception=missing[1])
    try:
        check_tmpdir()
        return engine(request)
    except (Exception, KeyboardInterrupt) as error:  # pylint: disable=broad-exception-caught
        failed = failure_result(error, module._name, {name: module.params.get(name) for name in outputs})
    # fail_json is called outside the except block: ansible-core attaches the pending exception's
    # traceback to a failure raised inside one, and only a bug should carry a traceback.
    module.fail_json(**{key: value for key, value in failed.items() if key != "failed"})
