# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot an ISO (CD or hybrid disk, BIOS or UEFI) or a PXE tree in QEMU and read what it proves.

The serial console (ttyS0) is read from QEMU's stdout; a boot ends as soon as success is seen
(the NODE-MARKER line, or a caller's regular expression such as a login prompt), as soon as a
line proves failure (DEFAULT_FAILURE_REGEX: kernel panic, dracut's emergency shell; None turns
it off), when the guest powers off, or at the timeout, when QEMU is killed. The full console log
is always returned.

The marker contract (the fixture's /sbin/init prints it; any image may): one line

    NODE-MARKER v=1 <key>=<base64> <key>=<base64> ... end=1

Every value is the base64 of a file's bytes, so no content can break the line, and a line cut
short (no trailing ``end=1``, or a value that is not valid base64) is ignored. Keys:
``version_file`` (/etc/default/version), ``system_release`` (/etc/system-release), ``cmdline``
(/proc/cmdline), ``mounts`` (/proc/mounts), ``plugin`` (repeated: each file of
/etc/ovirt-plugins.d/), ``extra`` (repeated: each file of /etc/node-marker.d/, where a plugin's
scriptlet can leave a proof that it ran). Unknown keys are ignored, so the format can grow.
parse_marker() turns the last complete line into a dict, see its docstring.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import _accel
from ._accel import qemu_accel_args
from ._errors import NodePluginError
from ._nodeinfo import parse_version_file
from ._platforms import UefiFirmware, find_uefi_firmware
from ._records import parse_plugin_record
from ._run import require_tool

BOOT_PATHS = ("cd-bios", "cd-uefi", "disk-bios", "disk-uefi")
MARKER_PREFIX = "NODE-MARKER "
MARKER_VERSION = "v=1"
# Guest memory of a boot test in MiB: the setting, else the default (a Node's live boot needs about 1 GiB).
MEMORY_SETTING = "OVIRT_NODE_PLUGINS_BOOT_MEMORY"
DEFAULT_MEMORY_MIB = 1024
MIN_MEMORY_MIB = 256
# Console lines that prove a boot has failed and will not recover: stop at once instead of at the
# timeout (a failed live boot otherwise waits in dracut's emergency shell for minutes).
DEFAULT_FAILURE_REGEX = (r"Kernel panic - not syncing|Entering emergency mode|You are in emergency mode"
                         r"|Give root password for maintenance|dracut: FATAL|No bootable device")
# After success, how long the guest may take to power off by itself before QEMU is stopped.
_POWEROFF_GRACE = 10.0
_POLL = 0.25
Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclasses.dataclass
class BootResult:
    """What one boot showed: ok when the success line was seen before the timeout."""

    path: str
    ok: bool
    marker: dict[str, Any] | None
    seconds: float
    log: str
    reason: str


def ovmf_firmware() -> UefiFirmware:
    """The OVMF (UEFI) firmware of this platform (_platforms), or raise naming the package."""
    return find_uefi_firmware()


def boot_memory_mib() -> int:
    """Guest memory of a boot in MiB: OVIRT_NODE_PLUGINS_BOOT_MEMORY, else DEFAULT_MEMORY_MIB."""
    setting = os.environ.get(MEMORY_SETTING, "").strip()
    if not setting:
        return DEFAULT_MEMORY_MIB
    if not setting.isdigit() or int(setting) < MIN_MEMORY_MIB:
        raise NodePluginError(f"{MEMORY_SETTING}={setting[:40]!r} is not a memory size in MiB",
                              hint=f"give a whole number of MiB, at least {MIN_MEMORY_MIB}, such as 2048")
    return int(setting)


def apply_vm_settings(*, accelerator: str | None = None, boot_memory: int | None = None) -> None:
    """Make a module's or a command's accelerator and boot memory the settings of this process.

    They are the process's environment (OVIRT_NODE_PLUGINS_ACCEL, OVIRT_NODE_PLUGINS_BOOT_MEMORY), which
    libguestfs and every boot of this run read; None keeps what the environment says.
    """
    if accelerator is not None:
        if accelerator not in _accel.CHOICES:
            raise NodePluginError(f"accelerator {accelerator[:40]!r} is not one of {', '.join(_accel.CHOICES)}")
        os.environ[_accel.SETTING] = accelerator
    if boot_memory is not None:
        if boot_memory < MIN_MEMORY_MIB:
            raise NodePluginError(f"boot memory {boot_memory} MiB is too small for a Node to boot",
                                  hint=f"give at least {MIN_MEMORY_MIB} MiB, such as 2048")
        os.environ[MEMORY_SETTING] = str(boot_memory)


def with_vm_settings(engine: Callable[[Request], Result], *, accelerator: str | None = None,
                     boot_memory: int | None = None) -> Callable[[Request], Result]:
    """``engine`` run after apply_vm_settings: a module passes it to run_engine, which reports a refused setting."""
    def run_with_settings(request: Request) -> Result:
        apply_vm_settings(accelerator=accelerator, boot_memory=boot_memory)
        return engine(request)
    return run_with_settings


def _decode(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def _marker_fields(line: str) -> list[tuple[str, str]] | None:
    """The decoded (key, value) pairs of one complete marker line, or None if it is cut or garbled."""
    words = line[line.index(MARKER_PREFIX) + len(MARKER_PREFIX):].split()
    if len(words) < 2 or words[0] != MARKER_VERSION or words[-1] != "end=1":
        return None
    fields = []
    for word in words[1:-1]:
        key, sep, value = word.partition("=")
        text = _decode(value) if sep else None
        if text is None:
            return None
        fields.append((key, text))
    return fields


def _plugin_record(text: str) -> dict[str, str] | None:
    """{"name", "version"} from an /etc/ovirt-plugins.d record (Name:/Version:/Install Date: lines)."""
    fields = parse_plugin_record(text)
    if not fields or not fields["Name"]:
        return None
    return {"name": fields["Name"], "version": fields.get("Version", "")}


def parse_marker(console_text: str) -> dict[str, Any] | None:
    """The last complete NODE-MARKER line of a console log as a dict, or None if there is none.

    Keys: product, version, release, version_info (every KEY of /etc/default/version),
    system_release, cmdline, root_device and root_fstype (the mount of / from /proc/mounts),
    plugins (list of {"name", "version"}, sorted by name), extras (lines of /etc/node-marker.d files).
    """
    complete = [found for line in console_text.replace("\r", "\n").split("\n") if MARKER_PREFIX in line
                for found in [_marker_fields(line)] if found is not None]
    if not complete:
        return None
    fields = complete[-1]
    single = dict(fields)
    info = parse_version_file(single.get("version_file", ""))
    root_device = root_fstype = ""
    for mount in single.get("mounts", "").splitlines():
        parts = mount.split()
        if len(parts) >= 3 and parts[1] == "/":
            root_device, root_fstype = parts[0], parts[2]
    plugins = [record for key, value in fields if key == "plugin" for record in [_plugin_record(value)] if record]
    extras = [line for key, value in fields if key == "extra" for line in value.splitlines()]
    return {
        "product": info.get("PRODUCT", ""),
        "version": info.get("VERSION", ""),
        "release": info.get("RELEASE", ""),
        "version_info": info,
        "system_release": single.get("system_release", "").strip(),
        "cmdline": single.get("cmdline", "").strip(),
        "root_device": root_device,
        "root_fstype": root_fstype,
        "plugins": sorted(plugins, key=lambda record: (record["name"], record["version"])),
        "extras": extras,
    }


class _ConsoleReader(threading.Thread):
    """Collects QEMU's stdout (the guest's serial console) without blocking the caller."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        fd = self._stream.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            with self._lock:
                self._chunks.append(chunk)

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)
        return data.decode("utf-8", "replace")


def _qemu_base(memory_mib: int | None, uefi: bool) -> list[str]:
    memory = memory_mib if memory_mib is not None else boot_memory_mib()
    argv = [require_tool("qemu-system-x86_64"), *qemu_accel_args(), "-m", str(memory),
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]
    if uefi:
        argv += ovmf_firmware().qemu_args()
    return argv


def _failure(text: str, failure_regex: re.Pattern[str] | None) -> str:
    found = failure_regex.search(text) if failure_regex is not None else None
    return f"the console shows a failed boot: {found.group(0)!r}" if found else ""


def _success(text: str, marker_regex: re.Pattern[str] | None) -> tuple[dict[str, Any] | None, str]:
    if marker_regex is not None:
        found = marker_regex.search(text)
        return (parse_marker(text), f"console matched {marker_regex.pattern!r}") if found else (None, "")
    if MARKER_PREFIX in text:
        marker = parse_marker(text)
        if marker is not None:
            return marker, "NODE-MARKER line seen"
    return None, ""


def run_qemu(argv: Sequence[str], *, path: str, timeout: float, marker_regex: str | None = None,
             failure_regex: str | None = DEFAULT_FAILURE_REGEX, poweroff_grace: float = _POWEROFF_GRACE) -> BootResult:
    """Run QEMU until success or failure_regex is seen on the console, the guest stops, or timeout seconds pass.

    QEMU runs in its own process group, so a wrapper script and its children are stopped together.
    """
    pattern = re.compile(marker_regex, re.MULTILINE) if marker_regex else None
    failure = re.compile(failure_regex, re.MULTILINE) if failure_regex else None
    started = time.monotonic()
    try:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        raise NodePluginError(f"could not start QEMU: {exc}", details=shlex.join(argv)) from exc
    reader = _ConsoleReader(process.stdout)
    reader.start()
    marker: dict[str, Any] | None = None
    ok, reason, seconds = False, "", 0.0
    try:
        while True:
            elapsed = time.monotonic() - started
            exited = process.poll() is not None
            if exited:
                reader.join(5)
            text = reader.text()
            marker, why = _success(text, pattern)
            if why:
                ok, reason, seconds = True, why, elapsed
                break
            reason = _failure(text, failure)
            if reason:
                seconds = elapsed
                break
            if exited:
                reason = f"QEMU exited with code {process.returncode} before success was seen on the console"
                seconds = elapsed
                break
            if elapsed > timeout:
                reason = f"no success line on the console within {timeout:.0f} s (QEMU killed)"
                seconds = elapsed
                break
            time.sleep(_POLL)
        if ok:
            try:  # the fixture powers off right after its marker; give any guest a moment to do so
                process.wait(poweroff_grace)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(5)
        if process.stdout is not None:  # always a pipe here (stdout=PIPE)
            process.stdout.close()
    log = reader.text()
    return BootResult(path=path, ok=ok, marker=marker, seconds=round(seconds, 2),
                      log=f"$ {shlex.join(argv)}\n{log}", reason=reason)


def boot_iso(iso: str, path: str, *, timeout: float = 240, memory_mib: int | None = None,
             marker_regex: str | None = None, failure_regex: str | None = DEFAULT_FAILURE_REGEX,
             extra_qemu_args: Sequence[str] = ()) -> BootResult:
    """Boot iso on one of BOOT_PATHS: as a CD-ROM or as a hybrid disk, with BIOS or UEFI firmware.

    The disk paths attach the ISO read-only in effect (snapshot=on: guest writes are discarded).
    """
    if path not in BOOT_PATHS:
        raise NodePluginError(f"unknown boot path {path!r}", hint=f"use one of {', '.join(BOOT_PATHS)}")
    if not os.path.isfile(iso):
        raise NodePluginError("ISO not found", path=iso, hint="check the path")
    medium, firmware = path.split("-")
    argv = _qemu_base(memory_mib, firmware == "uefi") + ["-nic", "none"]
    if medium == "cd":
        argv += ["-drive", f"file={iso},media=cdrom,readonly=on", "-boot", "d"]
    else:
        argv += ["-drive", f"file={iso},format=raw,snapshot=on", "-boot", "c"]
    argv += list(extra_qemu_args)
    return run_qemu(argv, path=path, timeout=timeout, marker_regex=marker_regex, failure_regex=failure_regex)


def boot_pxe(tftp_root: str, bootfile: str = "pxelinux.0", *, uefi: bool = False, timeout: float = 300,
             memory_mib: int | None = None, marker_regex: str | None = None,
             failure_regex: str | None = DEFAULT_FAILURE_REGEX, extra_qemu_args: Sequence[str] = ()) -> BootResult:
    """Network-boot a TFTP tree through QEMU's built-in DHCP/TFTP server (user networking).

    BIOS uses the NIC's iPXE ROM and expects a pxelinux-style bootfile; with uefi=True the
    bootfile must be an EFI binary (for example a GRUB netboot image).
    """
    if not os.path.isfile(os.path.join(tftp_root, bootfile)):
        raise NodePluginError(f"boot file {bootfile!r} not found in the TFTP folder", path=tftp_root,
                              hint="build the PXE tree first")
    return boot_network(f"user,tftp={tftp_root},bootfile={bootfile}", uefi=uefi, timeout=timeout,
                        memory_mib=memory_mib, marker_regex=marker_regex, failure_regex=failure_regex,
                        extra_qemu_args=extra_qemu_args)


def boot_network(netdev: str, *, uefi: bool = False, mac: str | None = None, netns: str | None = None,
                 timeout: float = 300, memory_mib: int | None = None, marker_regex: str | None = None,
                 failure_regex: str | None = DEFAULT_FAILURE_REGEX, extra_qemu_args: Sequence[str] = ()) -> BootResult:
    """Network-boot an e1000 NIC on the QEMU ``-netdev`` backend ``netdev`` (without id=), such as
    ``tap,ifname=tap0,script=no,downscript=no``; the network's DHCP and TFTP servers do the rest.

    ``netns`` runs QEMU in that network namespace (``ip netns exec``), where such a tap device lives.
    """
    device = "e1000,netdev=n0" + (f",mac={mac}" if mac else "")
    argv = _qemu_base(memory_mib, uefi) + ["-netdev", f"{netdev},id=n0", "-device", device, "-boot", "n"]
    if netns is not None:
        argv = [require_tool("ip"), "netns", "exec", netns, *argv]
    argv += list(extra_qemu_args)
    return run_qemu(argv, path="pxe-uefi" if uefi else "pxe-bios", timeout=timeout, marker_regex=marker_regex,
                    failure_regex=failure_regex)
