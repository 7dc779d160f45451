# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real faults for tests of the modules and the command: a read-only file system, a deeply nested plugin."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator


@contextlib.contextmanager
def read_only_folder(mount_point: str) -> Iterator[str]:
    """A small tmpfs at mount_point holding an empty folder ``out``, remounted read-only; unmounted after.

    A mode such as 0500 does not stop root: only the file system refuses the write (EROFS).
    """
    os.makedirs(mount_point, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", mount_point], check=True)
    try:
        os.mkdir(os.path.join(mount_point, "out"))
        subprocess.run(["mount", "-o", "remount,ro", mount_point], check=True)
        yield os.path.join(mount_point, "out")
    finally:
        subprocess.run(["umount", mount_point], check=True)


def deeply_nested_plugin(folder: str, depth: int = 200_000) -> str:
    """A plugin tarball whose manifest is a JSON array nested ``depth`` levels deep."""
    path = os.path.join(folder, "deep-1.0.plugin.tar.gz")
    manifest = b"[" * depth + b"]" * depth
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    return path


def one_line_without_traceback(text: str) -> str:
    """The single non-empty line of a message; fails on a traceback or several lines."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]
