# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where outputs go: never onto an input, one writer per output, and no debris after a crash.

- ``check_distinct`` refuses, before any work, an output path that is also an input (compared by
  real path and by inode, so links and bind mounts do not fool it).
- ``OutputLock`` is an exclusive lock of one output (``fcntl.flock`` on ``.<name>.lock`` beside it,
  holding the owner's PID and command); a second writer is refused with the holder named. The lock
  file is removed on release.
- ``work_dir`` makes the temporary folders next to an output with the owner's PID in their name
  (``.<name>.work-<pid>-<random>``), so that ``clean_stale`` can remove those of a run that was
  killed (its PID no longer alive) and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping

from ._errors import NodePluginError

_WORK_MARK = ".work-"
_LOCK_SUFFIX = ".lock"
# This process's private folder under TMPDIR (NBD sockets, throwaway overlays, libguestfs's own temporary
# files): named with the PID, so that a later run removes what a killed one left.
_RUN_PREFIX = "ovirt-node-plugins-"
_SOCKET_ROOM = 108 - 40  # a unix socket path must fit in 108 bytes; leave room for the names inside
_run_dir: str | None = None


def _identity(path: str) -> tuple[str, tuple[int, int] | None]:
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
        return real, (info.st_dev, info.st_ino)
    except OSError:
        return real, None


def check_distinct(outputs: Mapping[str, str | None], inputs: Mapping[str, str | None]) -> None:
    """Refuse when an output (name -> path) is an input or another output, by real path or inode."""
    seen: dict[object, str] = {}
    for kind, items in (("input", inputs), ("output", outputs)):
        for name, path in items.items():
            if not path:
                continue
            real, inode = _identity(path)
            for key in (real, inode):
                if key is None:
                    continue
                other = seen.get(key)
                if other is not None and (kind == "output"):
                    raise NodePluginError(f"the {name} would overwrite the {other}", path=path,
                                          hint="choose an output path that is not one of the inputs or outputs")
                seen.setdefault(key, name)


def _pid_alive(pid: int) -> bool:
    """Whether a process runs with this PID (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def work_dir(dest: str, purpose: str = "work") -> str:
    """A new private folder beside ``dest`` named ``.<name>.<purpose>-<pid>-<random>`` (mode 0700)."""
    folder = os.path.dirname(os.path.abspath(dest))
    try:
        return tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.{purpose}-{os.getpid()}-", dir=folder)
    except OSError as exc:
        raise NodePluginError(f"cannot create a work folder beside the output: {exc.strerror}", path=folder,
                              hint=_os_hint(exc)) from exc


def clean_stale(dest: str) -> list[str]:
    """Remove work folders and lock files that an earlier, killed run of this tool left beside ``dest``.

    Only names this module makes, and only when their owner PID is no longer alive. Returns them.
    """
    folder = os.path.dirname(os.path.abspath(dest))
    pattern = re.compile(rf"^\.{re.escape(os.path.basename(dest))}\.[a-z]+-(\d+)-[A-Za-z0-9_]+$")
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        path = os.path.join(folder, name)
        if match and not _pid_alive(int(match.group(1))) and not os.path.islink(path):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    continue
            removed.append(path)
    return removed


def read_small_json(path: str, limit: int = 1 << 20) -> dict | None:
    """A JSON object this tool wrote (a stamp, a report), or None when the file is missing, too big,
    not JSON, nested beyond reason, or not an object: such a file is not ours, whatever it says."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
        if len(raw) > limit:
            return None
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def check_writable_folder(path: str, what: str) -> None:
    """Refuse, before any work, an output whose folder is missing or cannot take a new file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise NodePluginError(f"the {what}'s folder does not exist", path=folder, hint="create it first")
    try:
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{os.path.basename(path)}.probe-{os.getpid()}-")
        probe.close()
    except OSError as exc:
        raise NodePluginError(f"the {what} cannot be written: {exc.strerror}", path=folder,
                              hint=_os_hint(exc)) from exc


def _temporary_bases() -> list[str]:
    return list(dict.fromkeys(base for base in (tempfile.gettempdir(), "/tmp") if os.path.isdir(base)))


def run_dir() -> str:
    """This process's private temporary folder (0700), made on first use and removed when the process ends.

    It lies under TMPDIR, or under /tmp when TMPDIR is too long for the unix sockets made inside it.
    """
    global _run_dir  # pylint: disable=global-statement
    if _run_dir is None or not os.path.isdir(_run_dir):
        base = next((base for base in _temporary_bases() if len(base) <= _SOCKET_ROOM), "/tmp")
        try:
            _run_dir = tempfile.mkdtemp(prefix=f"{_RUN_PREFIX}{os.getpid()}-", dir=base)
        except OSError as exc:
            raise NodePluginError(f"cannot create a temporary folder: {exc.strerror}", path=base,
                                  hint=_os_hint(exc) if exc.errno != errno.ENOENT else "set TMPDIR to a folder") \
                from exc
        atexit.register(shutil.rmtree, _run_dir, True)
    return _run_dir


# libguestfs makes its socket folder in /tmp when run as root, whatever XDG_RUNTIME_DIR says; a run
# notes the folders its launches made, so that they go with its run folder after a kill.
_SOCKET_FOLDERS = "libguestfs-socket-folders"
_LIBGUESTFS_SOCKET_FOLDER = re.compile(r"^/tmp/libguestfs[A-Za-z0-9]{6}$")


@contextlib.contextmanager
def recording_socket_folders() -> Iterator[None]:
    """Note in the run folder the libguestfs socket folders that appear in /tmp during the block.

    The folders present before are noted first: a run killed during the block (a launch takes
    seconds) leaves the next run enough to find the folder it made (see _remove_noted_socket_folders).
    """
    before = sorted(glob.glob("/tmp/libguestfs*"))
    notes = os.path.join(run_dir(), _SOCKET_FOLDERS)
    with open(notes, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"started": time.time(), "before": before}) + "\n")
    try:
        yield
    finally:
        made = sorted(set(glob.glob("/tmp/libguestfs*")) - set(before))
        with open(notes, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"made": made}) + "\n")


def _bound_unix_sockets() -> set[str]:
    """Paths of the unix sockets some process has bound (from /proc/net/unix)."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as handle:
            return {fields[-1] for fields in (line.split() for line in handle.readlines()[1:]) if len(fields) >= 8}
    except OSError:
        return set()


def _remove_noted_socket_folders(run_folder: str) -> None:
    """Remove the libguestfs socket folders a dead run made: those it noted, and for a launch it did not
    live to finish, those that appeared after it started and whose sockets no process holds."""
    try:
        with open(os.path.join(run_folder, _SOCKET_FOLDERS), encoding="utf-8") as handle:
            notes = [json.loads(line) for line in handle.read(1 << 20).splitlines() if line.strip()]
    except (OSError, ValueError):
        return
    candidates: set[str] = set()
    pending = None
    for note in notes if isinstance(notes, list) else []:
        if not isinstance(note, dict):
            continue
        if "made" in note:
            candidates.update(path for path in note["made"] if isinstance(path, str))
            pending = None
        elif "started" in note:
            pending = note
    if pending is not None and isinstance(pending.get("before"), list):
        bound = _bound_unix_sockets()
        for path in set(glob.glob("/tmp/libguestfs*")) - set(pending["before"]):
            try:
                fresh = os.stat(path).st_mtime >= float(pending["started"]) - 1
                idle = not any(os.path.join(path, name) in bound for name in os.listdir(path))
            except (OSError, TypeError, ValueError):
                continue
            if fresh and idle:
                candidates.add(path)
    for path in sorted(candidates):
        if _LIBGUESTFS_SOCKET_FOLDER.match(path) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def clean_stale_runs() -> list[str]:
    """Remove the private temporary folders of runs of this tool that were killed (their PID is gone),
    with the libguestfs socket folders they noted."""
    removed: list[str] = []
    pattern = re.compile(rf"^{re.escape(_RUN_PREFIX)}(\d+)-[A-Za-z0-9_]+$")
    for base in _temporary_bases():
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            match = pattern.match(name)
            path = os.path.join(base, name)
            if match and not _pid_alive(int(match.group(1))) and os.path.isdir(path) and not os.path.islink(path):
                _remove_noted_socket_folders(path)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def check_tmpdir() -> None:
    """Refuse a TMPDIR that is not a writable folder (tools fail on it later with misleading messages)."""
    folder = os.environ.get("TMPDIR")
    if not folder:
        return
    if not os.path.isdir(folder):
        raise NodePluginError(f"TMPDIR={folder[:200]!r} is not an existing folder", path=folder,
                              hint="create it, or unset TMPDIR")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NodePluginError(f"TMPDIR={folder[:200]!r} is not writable", path=folder,
                              hint="point TMPDIR at a writable folder, or unset it")


def _os_hint(exc: OSError) -> str:
    return {errno.EROFS: "the file system is read-only: choose an output on a writable one",
            errno.ENOSPC: "the file system is full: free space or choose another output folder",
            errno.EACCES: "permission denied: choose a folder you may write to",
            errno.EPERM: "permission denied: choose a folder you may write to",
            errno.ENOENT: "the folder does not exist: create it first"}.get(exc.errno or 0, "check the output folder")


class OutputLock:
    """An exclusive lock of one output path for the life of a ``with`` block (see the module docstring)."""

    def __init__(self, dest: str) -> None:
        self.dest = os.path.abspath(dest)
        self.path = os.path.join(os.path.dirname(self.dest), f".{os.path.basename(self.dest)}{_LOCK_SUFFIX}")
        self._fd = -1

    def __enter__(self) -> OutputLock:
        for _attempt in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise NodePluginError(f"cannot lock the output: {exc.strerror}", path=self.dest,
                                      hint=_os_hint(exc)) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise NodePluginError(f"another run is writing this output ({holder})", path=self.dest,
                                      hint="wait for it to finish, or stop it; two builds must not write one file")
            # The holder we waited for may have removed the file after we opened it: lock the file that
            # is at the path now, or try again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "since": int(time.time()),
                                     "command": " ".join(sys.argv)[:500]}).encode("utf-8"))
            self._fd = fd
            return self
        raise NodePluginError("cannot lock the output: its lock file keeps changing", path=self.dest,
                              hint="another process is creating and removing it; stop it and retry")

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(data.get("since", 0))))
            return f"PID {int(data.get('pid', 0))} since {since}: {str(data.get('command', '?'))[:200]}"
        except (ValueError, TypeError, OSError):
            return "a process whose lock file cannot be read"

    def __exit__(self, *exc_info) -> None:
        if self._fd >= 0:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)  # closing releases the lock
            self._fd = -1
