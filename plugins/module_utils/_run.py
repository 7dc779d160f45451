# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running external tools: the command and its duration are logged, a failure raises with stderr."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence

from ._errors import NodePluginError
from ._platforms import find_tool

LOG = logging.getLogger("ovirt.node_plugins")

_STDERR_TAIL = 4000


def require_tool(name: str) -> str:
    """Return the absolute path of an external tool (by its Debian command name: ``grub-mkimage`` finds
    ``grub2-mkimage`` on EL), or raise naming the package to install on this platform (_platforms)."""
    return find_tool(name)


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
        input: bytes | None = None, timeout: float | None = None, check: bool = True,
        capture: bool = True) -> subprocess.CompletedProcess:
    """Run a command without a shell; log it with its duration; raise NodePluginError on failure."""
    argv = [str(arg) for arg in argv]
    argv[0] = require_tool(argv[0]) if os.sep not in argv[0] else argv[0]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    pretty = shlex.join(argv)
    started = time.monotonic()
    try:
        result = subprocess.run(argv, env=full_env, cwd=cwd, input=input, timeout=timeout,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodePluginError(f"'{pretty}' did not finish within {timeout:.0f} s") from exc
    elapsed = time.monotonic() - started
    LOG.debug("ran %s (%.2f s, exit %d)", pretty, elapsed, result.returncode)
    if check and result.returncode != 0:
        stderr = (result.stderr or b"").decode("utf-8", "replace").strip()
        if not stderr:
            stderr = (result.stdout or b"").decode("utf-8", "replace").strip()
        raise NodePluginError(f"'{os.path.basename(argv[0])}' failed with exit code {result.returncode}",
                              details=f"command: {pretty}\n{stderr[-_STDERR_TAIL:]}")
    return result


class StageTimer:
    """Durations of the named stages of a long operation, in the order they ran."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        LOG.info("stage %s: started", name)
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.durations[name] = round(self.durations.get(name, 0.0) + elapsed, 3)
            LOG.info("stage %s: %.2f s", name, elapsed)
