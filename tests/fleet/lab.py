# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PXE servers of the molecule scenario pxe_deploy, as the fleet tests see them, and what a PXE client gets.

The scenario (extensions/molecule/pxe_deploy) makes the servers: network namespaces with sshd, dnsmasq (DHCP only),
tftpd-hpa and nginx, and tap devices on which QEMU guests boot from one server alone. Its verify step writes
``lab.json`` (servers, daemons, logs, ISOs, inventory) and runs these tests with PXE_LAB naming that file.

``python -m tests.fleet.lab syslog-sink SOCKET LOG PIDFILE`` is the syslog socket that tftpd-hpa logs to (it logs only
through syslog): each datagram becomes one line of LOG.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from ansible_collections.ovirt.node_plugins.plugins.module_utils._outputs import _pid_alive
from ansible_collections.ovirt.node_plugins.plugins.module_utils._pxe import read_sums
from tests.playbook_run import PLAYBOOKS, TOP, PlayRun, play

LAB_SETTING = "PXE_LAB"
PREFIX = "ovirt-node"
LABEL = "ovirt-node"
SERVER_MENU = "pxelinux.cfg/default"


@dataclasses.dataclass(frozen=True)
class Guest:
    """A QEMU guest that network-boots through a tap device in its server's namespace."""

    tap: str
    mac: str
    address: str


@dataclasses.dataclass(frozen=True)
class Server:
    """One molecule PXE server: a network namespace whose state (TFTP root, logs, pid files) is a folder here."""

    name: str
    address: str
    folder: str
    guests: dict[str, Guest]

    @property
    def namespace(self) -> str:
        return f"onp-{self.name}"

    @property
    def tftp_root(self) -> str:
        return os.path.join(self.folder, "tftp")

    def link(self, name: str) -> str:
        """The release id that current or previous points at ('' when the link is missing)."""
        path = os.path.join(self.tftp_root, PREFIX, name)
        return os.path.basename(os.readlink(path)) if os.path.islink(path) else ""

    def releases(self) -> list[str]:
        """Every entry under releases/, hidden ones (copies in progress) included."""
        return sorted(os.listdir(os.path.join(self.tftp_root, PREFIX, "releases")))

    def release_sums(self) -> dict[str, dict[str, str]]:
        """The SHA256SUMS of every complete release on this server, by release id: what its clients may get.

        Per server, not per release id: each server's menus name its own HTTP URL, so their digests differ.
        """
        folder = os.path.join(self.tftp_root, PREFIX, "releases")
        return {name: read_sums(os.path.join(folder, name, "SHA256SUMS")) for name in sorted(os.listdir(folder))
                if not name.startswith(".") and os.path.isfile(os.path.join(folder, name, "SHA256SUMS"))}

    def log(self, name: str) -> str:
        path = os.path.join(self.folder, name)
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def pid(self, daemon: str) -> int:
        with open(os.path.join(self.folder, f"{daemon}.pid"), encoding="ascii") as handle:
            return int(handle.read().strip())

    def stop(self, daemon: str) -> None:
        """Stop a daemon this scenario started, and the processes it forked (sshd's sessions), by their pids."""
        pid = self.pid(daemon)
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
        for victim in [pid, *map(int, children)]:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:  # a zombie counts as gone: PID 1 may not reap
            time.sleep(0.1)

    def start(self, daemon: str) -> None:
        subprocess.run(["sh", os.path.join(self.folder, f"start-{daemon}.sh")], check=True, capture_output=True)

    @contextlib.contextmanager
    def stopped(self, daemon: str) -> Iterator[None]:
        """The daemon down for the block, and started again after it (also when the block fails)."""
        self.stop(daemon)
        try:
            yield
        finally:
            self.start(daemon)


@dataclasses.dataclass(frozen=True)
class Lab:
    """Everything the fleet tests need to know about the scenario (lab.json)."""

    state: str
    inventory: str
    stage: str
    isos: dict[str, str]
    servers: dict[str, Server]

    @classmethod
    def load(cls) -> Lab:
        path = os.environ.get(LAB_SETTING, "")
        if not path or not os.path.isfile(path):
            raise RuntimeError(f"{LAB_SETTING} does not name the lab file of the molecule scenario pxe_deploy: these "
                               "tests run inside it (make molecule, or molecule test -s pxe_deploy in extensions/)")
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        servers = {name: Server(name=name, address=item["address"], folder=item["folder"],
                                guests={kind: Guest(**guest) for kind, guest in item["guests"].items()})
                   for name, item in raw["servers"].items()}
        return cls(state=raw["state"], inventory=raw["inventory"], stage=raw["stage"], isos=raw["isos"],
                   servers=servers)

    def play(self, playbook: str, extra_vars: dict, *args: str) -> PlayRun:
        """A playbook of the collection against the scenario's servers, to its end."""
        folder = tempfile.mkdtemp(prefix="play-", dir=self.runs)
        return play(folder, self.inventory, playbook, extra_vars, *args)

    @property
    def runs(self) -> str:
        path = os.path.join(self.state, "fleet")
        os.makedirs(path, exist_ok=True)
        return path

    def start_play(self, playbook: str, extra_vars: dict) -> tuple[subprocess.Popen, str]:
        """A playbook started as play() runs it, in a session of its own (a test may SIGKILL all of it); and its log."""
        folder = tempfile.mkdtemp(prefix="play-", dir=self.runs)
        vars_file = os.path.join(folder, "extra-vars.json")
        with open(vars_file, "w", encoding="utf-8") as handle:
            json.dump(extra_vars, handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".venv", "collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_HOST_KEY_CHECKING="0")
        log = os.path.join(folder, "output.log")
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                 os.path.join(PLAYBOOKS, playbook), "-e", f"@{vars_file}"],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return process, log


def wait_until(what: str, condition, seconds: float, poll: float = 0.1):
    """condition()'s first true value within seconds, or raise naming what was awaited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


# What a PXE client gets: the chain a BIOS client follows, fetched over TFTP or HTTP.

@dataclasses.dataclass
class Fetched:
    """One file as a client received it."""

    path: str
    sha256: str
    size: int
    error: str = ""


@dataclasses.dataclass
class BootChain:
    """What one client fetched in order: the server's menu, the menu it includes, the entry's kernel and initrd."""

    protocol: str
    started: float
    files: list[Fetched] = dataclasses.field(default_factory=list)


def _fetch(url: str, path: str, scratch: str) -> Fetched:
    target = os.path.join(scratch, "download")
    done = subprocess.run(["curl", "-sS", "--max-time", "60", "--tftp-blksize", "1428", "-o", target, url],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not os.path.exists(target):
        return Fetched(path, "", 0, error=f"curl exit {done.returncode}: {done.stderr.strip()[:200]}")
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    size = os.path.getsize(target)
    os.unlink(target)
    return Fetched(path, digest.hexdigest(), size)


def _text(url: str) -> str:
    return subprocess.run(["curl", "-sS", "--max-time", "30", url], capture_output=True, text=True,
                          check=False).stdout


def boot_chain(address: str, protocol: str, scratch: str, label: str = LABEL) -> BootChain:
    """Fetch what a pxelinux client of ``address`` loads, the way it loads it: the server's menu, the file it includes,
    then the kernel and initrd that the entry ``label`` names (``protocol``: tftp or http)."""
    base = f"{protocol}://{address}/"
    chain = BootChain(protocol, time.monotonic())
    menu = _text(base + SERVER_MENU)
    chain.files.append(Fetched(SERVER_MENU, hashlib.sha256(menu.encode()).hexdigest(), len(menu)))
    included = re.search(r"(?m)^INCLUDE\s+(\S+)", menu)
    if not included:
        chain.files[-1].error = "no INCLUDE line"
        return chain
    entries = _text(base + included.group(1))
    chain.files.append(Fetched(included.group(1), hashlib.sha256(entries.encode()).hexdigest(), len(entries)))
    entry = re.search(rf"(?ms)^LABEL {re.escape(label)}\s*$(.*?)(?=^LABEL |\Z)", entries)
    kernel = re.search(r"(?m)^\s*KERNEL\s+(\S+)", entry.group(1)) if entry else None
    initrd = re.search(r"\sinitrd=(\S+)", entry.group(1)) if entry else None
    if not kernel or not initrd:
        chain.files[-1].error = f"no entry {label} with a KERNEL and an initrd="
        return chain
    for path in (kernel.group(1), initrd.group(1)):
        chain.files.append(_fetch(base + path, path, scratch))
    return chain


def judge_chain(chain: BootChain, releases: dict[str, dict[str, str]], prefix: str = PREFIX) -> tuple[str, list[str]]:
    """Which release a chain belongs to, and every way it is not complete files of exactly that one release.

    The included menu names the release (its digest is that of one release's menus/pxelinux.cfg); the kernel and
    initrd must be that release's files, by path and by digest: a mix of two releases or a partial file is a problem.
    """
    problems = [f"{chain.protocol} {item.path}: {item.error}" for item in chain.files if item.error]
    if problems or len(chain.files) != 4:
        return "", problems or [f"{chain.protocol}: the chain stopped after {len(chain.files)} files"]
    _menu, included, kernel, initrd = chain.files
    owners = [release for release, sums in releases.items() if sums.get("menus/pxelinux.cfg") == included.sha256]
    if len(owners) != 1:
        return "", [f"{chain.protocol} {included.path}: sha256 {included.sha256} is the menu of no known release"]
    release = owners[0]
    for item, name in ((kernel, "vmlinuz0"), (initrd, "initrd0.img")):
        expected_path = f"{prefix}/releases/{release}/{name}"
        if item.path != expected_path:
            problems.append(f"{chain.protocol}: the menu of {release} loads {item.path}, not {expected_path}")
        elif item.sha256 != releases[release].get(name):
            problems.append(f"{chain.protocol} {item.path}: {item.size} bytes with sha256 {item.sha256}, "
                            f"not the {name} of {release}")
    return release, problems


def syslog_sink(socket_path: str, log_path: str, pid_path: str) -> None:
    """Receive syslog datagrams on socket_path and append each as one line to log_path, until killed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink, open(log_path, "ab", buffering=0) as log:
        sink.bind(socket_path)
        with open(pid_path, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
        while True:
            log.write(sink.recv(65536).rstrip(b"\0\n") + b"\n")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "syslog-sink":
        sys.exit("usage: python -m tests.fleet.lab syslog-sink SOCKET LOG PIDFILE")
    syslog_sink(*sys.argv[2:])
