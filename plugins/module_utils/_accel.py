# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which virtualization accelerator QEMU and libguestfs use: one setting, decided once.

The setting is the environment variable OVIRT_NODE_PLUGINS_ACCEL: ``tcg`` (software emulation,
always works), ``kvm`` (trust KVM), or ``auto`` (the default): KVM only when /dev/kvm is usable
*and* a real kernel boots under it. A plain open of /dev/kvm is not enough: on some hosts QEMU
starts with KVM and then hangs or aborts in the guest kernel (``failed to set MSR 0x10a``).
The probe's verdict is cached per kernel and QEMU binary, so it costs its ~5 s once per machine.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import tempfile

from ._errors import NodePluginError

SETTING = "OVIRT_NODE_PLUGINS_ACCEL"
CHOICES = ("auto", "tcg", "kvm")
_PROBE_TIMEOUT = 20
_decided: str | None = None


def cache_dir() -> str:
    """The per-user cache folder of this collection (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ovirt-node-plugins")


def _probe_kernel() -> str | None:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    return kernels[-1] if kernels else None


def _qemu_binary() -> str | None:
    """This platform's QEMU (qemu-system-x86_64, or EL's /usr/libexec/qemu-kvm), or None."""
    from ._platforms import find_tool  # pylint: disable=import-outside-toplevel
    try:
        return find_tool("qemu-system-x86_64")
    except NodePluginError:
        return None


def _kvm_boots(qemu: str, kernel: str) -> bool:
    """Boot the host's kernel under KVM until its 'no init' panic: proof that KVM really runs."""
    argv = [qemu, "-machine", "accel=kvm", "-cpu", "host", "-m", "256", "-nodefaults",
            "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-append", "console=ttyS0 panic=-1 init=/nonexistent-init"]
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=_PROBE_TIMEOUT, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0 and b"Kernel panic" in result.stdout


def _probe() -> str:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    qemu, kernel = _qemu_binary(), _probe_kernel()
    if not qemu or not kernel:
        return "tcg"
    key_source = json.dumps([qemu, os.stat(qemu).st_mtime, kernel, os.uname().release])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    cached = os.path.join(cache_dir(), f"accel-{key}")
    try:
        with open(cached, encoding="ascii") as handle:
            verdict = handle.read().strip()
        if verdict in ("tcg", "kvm"):
            return verdict
    except OSError:
        pass
    verdict = "kvm" if _kvm_boots(qemu, kernel) else "tcg"
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache_dir(), delete=False, encoding="ascii") as partial:
        partial.write(verdict + "\n")
    os.replace(partial.name, cached)
    return verdict


def accelerator() -> str:
    """The accelerator to use: 'kvm' or 'tcg', from the setting (probing once when 'auto')."""
    global _decided  # pylint: disable=global-statement
    setting = os.environ.get(SETTING, "auto").strip().lower() or "auto"
    if setting not in CHOICES:
        raise NodePluginError(f"{SETTING}={setting!r} is not a valid accelerator",
                              hint=f"use one of {', '.join(CHOICES)}")
    if setting != "auto":
        return setting
    if _decided is None:
        _decided = _probe()
    return _decided


def qemu_accel_args() -> list[str]:
    """QEMU arguments that select the accelerator."""
    if accelerator() == "kvm":
        return ["-machine", "accel=kvm", "-cpu", "host"]
    return ["-machine", "accel=tcg"]


def libguestfs_env() -> dict[str, str]:
    """Environment for libguestfs: the direct backend, forced to TCG unless KVM really works."""
    env = {"LIBGUESTFS_BACKEND": os.environ.get("LIBGUESTFS_BACKEND", "direct")}
    if accelerator() == "tcg":
        settings = [s for s in os.environ.get("LIBGUESTFS_BACKEND_SETTINGS", "").split(":") if s]
        if "force_tcg" not in settings:
            settings.append("force_tcg")
        env["LIBGUESTFS_BACKEND_SETTINGS"] = ":".join(settings)
    return env


def apply_libguestfs_env() -> None:
    """Put the libguestfs settings into this process's environment (before guestfs.GuestFS())."""
    os.environ.update(libguestfs_env())
