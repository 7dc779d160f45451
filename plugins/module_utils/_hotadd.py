# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hot-add: a plugin onto a running oVirt Node, without a reboot.

The Node is reached through a NodeConnection, anything that runs a shell command there and copies a
file there: Ansible's connection (the action plugin node_plugin_hotadd) or the system's OpenSSH client
(OpenSshConnection, for ``ovirt-plugin-build hotadd``). Nothing runs on the Node but its own shell and
rpm; it needs no Python. The steps, in order:

  open     the plugin, checked as for a build (digests, signature policy, allowed paths); a recipe that
           asks what a running Node cannot take (part, bootloader, %pre, %post --nochroot) is refused,
           each directive named, before anything is read from the Node
  facts    one command: the Node's version (/etc/default/version, else /etc/system-release), its rpm, its
           packages and records of this plugin, whether it is stateful (/config) and what it persists
  plan     the plugin's Node range against that version; per package install, upgrade or present (a
           downgrade is refused); records to write; declared paths to persist. Nothing to do: no change.
           Check mode stops here, after ``rpm -U --test`` of the transaction on the Node.
  install  the RPMs copied to a private folder on the Node, installed in one ``rpm -U`` transaction
  %post    the recipe's %post scripts, in order, as root in /
  records  /etc/ovirt-plugins.d/<rpm name>, as a rebuild writes them
  persist  the declared paths through the Node's persist (stateful), or reported as not kept (stateless)

A transaction that fails changes nothing (rpm's own transaction). A scriptlet or a recipe %post that
fails makes the packages this run installed be erased again, and no record is written; an upgraded
package cannot be taken back to its older version on a running Node (a reboot returns to the image's).
What hot-add installs lasts until the next reboot: only a rebuilt ISO keeps it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Protocol

from . import _persist as persist
from ._digests import file_sha256
from ._errors import NodePluginError
from ._outputs import run_dir
from ._module import quote
from ._nodeinfo import NodeInfo, parse_system_release, parse_version_file
from ._plugin import PluginArchive, install_set, open_plugin, require_signed_packages
from ._records import RECORDS_DIR, parse_plugin_record, plugin_record
from ._rpmhdr import RpmHeader
from ._versions import Evr, compare_evr

# The options of the action plugin (and of its documentation module); the CLI's flags map one to one.
ARGUMENT_SPEC = {
    "plugin": {"type": "path", "required": True},
    "checksum": {"type": "str"},
    "require_signed": {"type": "bool", "default": False},
    "keyring": {"type": "path"},
    "allow_unlisted_paths": {"type": "bool", "default": False},
    "persist": {"type": "bool", "default": True},
}
LASTS = ("the packages last until the Node reboots; rebuild the Node ISO with the plugin "
         "(ovirt.node_plugins.node_plugin_apply, ovirt-plugin-build build) to keep them")
_MARK = "@@ovirt-hotadd"
_OUTPUT_LIMIT = 4000
_OUTPUT_LINES = 60
# Version files are a few hundred bytes, records three lines: bounded reads of what the Node sends.
_READ_LIMIT = 65536
# rpm prints '(none)' for a missing epoch in every version since 4.4; %|EPOCH?{}| gives 0 instead.
_QUERY_FORMAT = r"%{NAME}\t%|EPOCH?{%{EPOCH}}:{0}|\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{INSTALLTIME:date}\n"
_FIND_RPM = ('rpm_bin=; for candidate in /usr/bin/rpm /bin/rpm; do '
             '"$candidate" --version 2>/dev/null | grep -q "RPM version" && { rpm_bin=$candidate; break; }; done')


# -- reaching the Node -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ShellOutcome:
    """What a shell command on the Node did."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr for people: the last lines, each printable and bounded (vendor code wrote them)."""
        text = "\n".join(part.rstrip("\n") for part in (self.stdout, self.stderr) if part).replace("\r", "")
        return "\n".join(quote(line, 300) for line in text.splitlines()[-_OUTPUT_LINES:])


class NodeConnection(Protocol):
    """A running Node: ``run`` a command with its /bin/sh as root, ``put`` a local file at a path there."""

    target: str

    def run(self, command: str) -> ShellOutcome:
        """Run a shell command on the Node."""

    def put(self, local: str, remote: str) -> None:
        """Copy a local file to the Node."""


_HOST = re.compile(r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
                   r"(?::(?P<port>\d{1,5}))?$")


class OpenSshConnection:
    """A Node reached with the system's OpenSSH client (ssh, scp), all commands over one master connection.

    ``host`` is ``[user@]node[:port]`` (``[v6 address]:port`` for IPv6); ``options`` are ssh ``-o``
    options (``UserKnownHostsFile=...``). Use as a context manager.
    """

    def __init__(self, host: str, *, identity: str | None = None, options: Sequence[str] = (),
                 connect_timeout: int = 30, command_timeout: float = 1800) -> None:
        match = _HOST.match(host or "")
        if not match or (match.group("host") or "").startswith("-"):
            raise NodePluginError(f"'{str(host)[:100]}' is not [user@]host[:port]",
                                  hint="for example root@node1.example.com or root@192.0.2.10:2222")
        self.user = match.group("user") or "root"
        self.hostname = match.group("ipv6") or match.group("host")
        self.port = int(match.group("port") or 22)
        if not 0 < self.port < 65536:
            raise NodePluginError(f"port {self.port} of '{host}' is out of range")
        self.target = host
        self.identity = identity
        self.options = list(options)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._control: str | None = None

    def __enter__(self) -> OpenSshConnection:
        self._control = tempfile.mkdtemp(prefix="ovirt-hotadd-ssh-")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._control:
            subprocess.run(["ssh", *self._common(), "-p", str(self.port), "-O", "exit", self._destination()],
                           capture_output=True, check=False, stdin=subprocess.DEVNULL, timeout=30)
            shutil.rmtree(self._control, ignore_errors=True)
            self._control = None

    def _common(self) -> list[str]:
        # A busy Node (or hypervisor host) may not answer for a minute: give up on it after two.
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                   "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8"]
        if self._control:
            options += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C", "-o", "ControlPersist=120"]
        if self.identity:
            options += ["-o", "IdentitiesOnly=yes", "-i", self.identity]
        for option in self.options:
            options += ["-o", option]
        return options

    def _destination(self) -> str:
        return f"{self.user}@{self.hostname}"

    def _call(self, argv: list[str], what: str) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(argv, capture_output=True, check=False, stdin=subprocess.DEVNULL,
                                  timeout=self.command_timeout)
        except FileNotFoundError as exc:
            raise NodePluginError(f"the OpenSSH client ({argv[0]}) is not installed",
                                  hint="install the package 'openssh-client'") from exc
        except subprocess.TimeoutExpired as exc:
            raise NodePluginError(f"{what} on {self.target} did not finish within {self.command_timeout:.0f} s") from exc
        # ssh exits 255 for its own failures (else with the remote command's status); scp fails as a whole.
        if done.returncode == 255 if argv[0] == "ssh" else done.returncode != 0:
            stderr = done.stderr.decode("utf-8", "replace").strip()
            raise NodePluginError(f"cannot reach {self.target} with {argv[0]} ({what})", details=stderr[-2000:],
                                  hint="check the host, the port, the key (--identity) and the host key "
                                       "(--ssh-option UserKnownHostsFile=...)")
        return done

    def run(self, command: str) -> ShellOutcome:
        done = self._call(["ssh", *self._common(), "-p", str(self.port), self._destination(), command], "a command")
        return ShellOutcome(done.returncode, done.stdout.decode("utf-8", "replace"),
                            done.stderr.decode("utf-8", "replace"))

    def put(self, local: str, remote: str) -> None:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        self._call(["scp", "-q", *self._common(), "-P", str(self.port), local, f"{self.user}@{host}:{remote}"],
                   f"copying {os.path.basename(local)}")


# -- facts of the running Node ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InstalledRpm:
    """A package as the Node's rpm database lists it."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    install_date: str

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}"

    @property
    def evra(self) -> str:
        return f"{self.version}-{self.release}.{self.arch}"


@dataclasses.dataclass(frozen=True)
class RunningNode:
    """What hot-add knows about the Node: version, rpm, the plugin's packages and records, persistence."""

    info: NodeInfo
    rpm: str
    installed: dict[str, InstalledRpm]
    records: dict[str, dict[str, str]]
    stateful: bool
    persisted: tuple[str, ...]
    existing: tuple[str, ...] = ()  # the declared persist paths that exist on the Node


def _sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.replace("\r", "").split("\n"):
        if line.startswith(_MARK + " "):
            current = line[len(_MARK) + 1:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines).strip("\n") for name, lines in sections.items()}


def _facts_command(names: Sequence[str], paths: Sequence[str]) -> str:
    quoted = " ".join(shlex.quote(name) for name in names)
    lines = [
        _FIND_RPM,
        f"echo '{_MARK} version'; head -c {_READ_LIMIT} /etc/default/version 2>/dev/null",
        f"echo; echo '{_MARK} system-release'; head -c 4096 /etc/system-release 2>/dev/null",
        f"echo; echo '{_MARK} rpm'; echo \"$rpm_bin\"",
        f"echo '{_MARK} installed'",
        f'[ -n "$rpm_bin" ] && "$rpm_bin" -q --qf {shlex.quote(_QUERY_FORMAT)} {quoted} 2>/dev/null',
        f"echo '{_MARK} config'; grep '^[^ ]* /config ' /proc/mounts",
        f"echo '{_MARK} persisted'; head -c {_READ_LIMIT} /config/files 2>/dev/null",
    ]
    lines.append(f"echo; echo '{_MARK} existing'")
    lines += [f"[ -e {shlex.quote(path)} ] && echo {shlex.quote(path)}" for path in paths]
    for name in names:
        record = shlex.quote(f"{RECORDS_DIR}/{name}")
        lines.append(f"if [ -f {record} ]; then echo; echo '{_MARK} record {name}'; head -c 4096 {record}; fi")
    lines.append(f"echo; echo '{_MARK} end'")
    return "\n".join(lines)  # no final newline: Ansible appends "&& sleep 0" to a command


def _installed(text: str) -> dict[str, InstalledRpm]:
    found: dict[str, InstalledRpm] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 6 and fields[1].isdigit():
            rpm_entry = InstalledRpm(fields[0], int(fields[1]), fields[2], fields[3], fields[4], fields[5])
            previous = found.get(rpm_entry.name)
            if previous is None or compare_evr(_evr(previous), _evr(rpm_entry)) < 0:
                found[rpm_entry.name] = rpm_entry
    return found


def _evr(package: InstalledRpm | RpmHeader) -> Evr:
    return Evr(package.epoch or 0, package.version, package.release)


def _node_info(version_text: str, release_text: str, target: str) -> NodeInfo:
    fields = parse_version_file(version_text)
    if fields.get("VERSION") and fields.get("RELEASE"):
        return NodeInfo(product=fields.get("PRODUCT"), version=fields["VERSION"], release=fields["RELEASE"],
                        source="/etc/default/version", fields=fields)
    info = parse_system_release(release_text)
    if info:
        return info
    raise NodePluginError(f"{target}: cannot tell which Node this is: neither /etc/default/version (VERSION=, "
                          "RELEASE=) nor /etc/system-release ('<product> release <version> (<release>)') says",
                          hint="is this host an oVirt Node?")


def read_node(connection: NodeConnection, names: Sequence[str], paths: Sequence[str] = ()) -> RunningNode:
    """The facts of the running Node that concern packages ``names`` and persist ``paths``, read with one command."""
    outcome = connection.run(_facts_command(names, paths))
    sections = _sections(outcome.stdout)
    if "end" not in sections:
        raise NodePluginError(f"{connection.target}: the Node did not answer the facts query "
                              f"(exit status {outcome.exit_status})", details=outcome.output[-_OUTPUT_LIMIT:],
                              hint="the Node needs a POSIX /bin/sh; log in as root")
    info = _node_info(sections.get("version", ""), sections.get("system-release", ""), connection.target)
    rpm_bin = sections.get("rpm", "").strip()
    if not rpm_bin:
        raise NodePluginError(f"{connection.target}: the Node has no working rpm (/usr/bin/rpm or /bin/rpm)",
                              hint="plugins are installed with the Node's own rpm")
    records = {}
    for key, text in sections.items():
        if key.startswith("record "):
            fields = parse_plugin_record(text)
            if fields:
                records[key[len("record "):]] = fields
    persisted = tuple(line.strip() for line in sections.get("persisted", "").splitlines() if line.startswith("/"))
    existing = tuple(line for line in sections.get("existing", "").splitlines() if line in paths)
    return RunningNode(info=info, rpm=rpm_bin, installed=_installed(sections.get("installed", "")), records=records,
                       stateful=bool(sections.get("config", "").strip()), persisted=persisted, existing=existing)


# -- the plugin ------------------------------------------------------------------------------------

def live_refusals(archive: PluginArchive) -> list[str]:
    """Every recipe directive a running Node cannot take, each with its line: resize, kernel arguments,
    %pre, %post --nochroot (they act on the image or the ISO, which a running Node does not have)."""
    recipe = archive.recipe
    refusals = []
    in_section = False  # script and %packages bodies are not commands
    for number, line in enumerate(archive.recipe_text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if words[0].startswith("%"):
            in_section = words[0] != "%end"
            continue
        if in_section:
            continue
        if words[0] == "part" and recipe.root_size_mib is not None:
            refusals.append(f"line {number}: 'part' resizes the root image, which a running Node cannot grow")
        elif words[0] == "bootloader" and (recipe.kernel_args_add or recipe.kernel_args_remove):
            refusals.append(f"line {number}: 'bootloader' changes kernel arguments, which take effect only at boot")
    for script in recipe.scripts:
        if script.kind == "pre":
            refusals.append(f"line {script.lineno}: '%pre' runs before the packages go into an image")
        elif script.nochroot:
            refusals.append(f"line {script.lineno}: '%post --nochroot' works on the image and the ISO tree")
    return refusals


# -- request, plan, result -------------------------------------------------------------------------

@dataclasses.dataclass
class HotaddRequest:
    """One plugin for one running Node (ARGUMENT_SPEC documents each option)."""

    plugin: str
    checksum: str | None = None
    require_signed: bool = False
    keyring: str | None = None
    allow_unlisted_paths: bool = False
    persist: bool = True
    check_mode: bool = False


@dataclasses.dataclass(frozen=True)
class PackageStep:
    """What the transaction does with one package of the plugin."""

    header: RpmHeader
    action: str  # install, upgrade or present
    before: str | None  # NEVRA on the Node before, if any

    @property
    def name(self) -> str:
        return self.header.name


@dataclasses.dataclass
class StepLog:
    """Output of one step that ran on the Node."""

    step: str
    exit_status: int
    output: str


@dataclasses.dataclass
class HotaddResult:
    """What hot-add did (or, in check mode, would do) on one Node."""

    changed: bool
    target: str
    reason: str
    plugin: dict
    node: dict
    packages: dict[str, str | None] = dataclasses.field(default_factory=dict)
    packages_before: dict[str, str | None] = dataclasses.field(default_factory=dict)
    installed: list[str] = dataclasses.field(default_factory=list)
    upgraded: list[dict] = dataclasses.field(default_factory=list)
    records: list[str] = dataclasses.field(default_factory=list)
    persist: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    steps: list[StepLog] = dataclasses.field(default_factory=list)
    lasts: str = LASTS
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def message(self) -> str:
        """One paragraph for people: what changed on the Node, and how long it lasts."""
        name = f"{self.plugin['name']} {self.plugin['version']}"
        parts = [f"{self.target}: {name}: {self.reason}"]
        if self.installed:
            parts.append(f"installed {', '.join(self.installed)}; {LASTS}")
        if self.persist.get("persisted"):
            parts.append(f"persisted {', '.join(self.persist['persisted'])} (kept across reboots)")
        parts += self.warnings
        return ". ".join(parts)


@dataclasses.dataclass
class _Plan:
    steps: list[PackageStep]
    records: dict[str, str]  # package name -> expected Version: of its record (written after the install)
    to_persist: list[str]

    @property
    def transaction(self) -> list[PackageStep]:
        return [step for step in self.steps if step.action != "present"]


def _open(request: HotaddRequest) -> PluginArchive:
    if request.checksum:
        algorithm, _sep, expected = request.checksum.partition(":")
        if algorithm.lower() != "sha256" or not re.fullmatch(r"[0-9A-Fa-f]{64}", expected):
            raise NodePluginError(f"checksum '{request.checksum[:80]}' is not sha256:<64 hex digits>")
        if os.path.isfile(request.plugin) and file_sha256(request.plugin) != expected.lower():
            raise NodePluginError("the plugin's sha256 is not the checksum given", path=request.plugin,
                                  hint="fetch the plugin again, or correct the checksum")
    archive = open_plugin(request.plugin, keyring=request.keyring, require_signature=request.require_signed)
    manifest = archive.manifest
    if request.require_signed:
        require_signed_packages([archive], request.plugin)
    refusals = live_refusals(archive)
    if refusals:
        raise NodePluginError(f"plugin {manifest.name} {manifest.version} cannot be hot-added: its recipe asks what "
                              "a running Node cannot take", path=f"{request.plugin}: recipe.ks",
                              details="\n".join(f"  {refusal}" for refusal in refusals),
                              hint="a Node ISO rebuilt with the plugin carries it (ovirt.node_plugins.node_plugin_apply, "
                                   "ovirt-plugin-build build)")
    persist.check_declared(manifest.name, manifest.persist, where=f"{request.plugin}: manifest.json")
    return archive


def _check_compatible(archive: PluginArchive, node: RunningNode, target: str) -> None:
    manifest = archive.manifest
    problem = node.info.incompatibility(manifest.node.product, manifest.node.versions)
    if problem:
        raise NodePluginError(f"plugin {manifest.name} {manifest.version} {problem} (the Node at {target})",
                              hint=f"the Node's product and version were read from {node.info.source}; use a plugin "
                                   "release made for it")


def _plan(archive: PluginArchive, headers: Sequence[RpmHeader], node: RunningNode, request: HotaddRequest) -> _Plan:
    steps, downgrades = [], []
    for header in headers:
        present = node.installed.get(header.name)
        if present is None:
            steps.append(PackageStep(header, "install", None))
            continue
        order = compare_evr(_evr(header), _evr(present))
        if order > 0:
            steps.append(PackageStep(header, "upgrade", present.nevra))
        elif order == 0:
            steps.append(PackageStep(header, "present", present.nevra))
        else:
            downgrades.append(f"{present.nevra} (the plugin has {header.nevra})")
    if downgrades:
        raise NodePluginError(f"{node_label(node)} has newer packages than the plugin {archive.manifest.name} "
                              f"{archive.manifest.version}: {', '.join(downgrades)}",
                              hint="hot-add does not downgrade; use the plugin release that matches, or reboot the "
                                   "Node to return to its image's packages")
    own = {package.name for package in archive.manifest.plugin_packages}
    records = {}
    for step in steps:
        if step.name in own:
            wanted = f"{step.header.version}-{step.header.release}.{step.header.arch}"
            existing = node.records.get(step.name, {})
            if step.action != "present" or existing.get("Name") != step.name or existing.get("Version") != wanted:
                records[step.name] = wanted
    to_persist = []
    if request.persist and node.stateful:
        # A declared path that does not exist now and that no install step brings cannot be persisted:
        # trying again on every run would report a change that never happens.
        to_persist = [path for path in archive.manifest.persist if path not in node.persisted
                      and (path in node.existing or any(step.action != "present" for step in steps))]
    return _Plan(steps=steps, records=records, to_persist=to_persist)


def node_label(node: RunningNode) -> str:
    return f"the Node ({quote(node.info.product or 'Node', 100)} {quote(node.info.version, 60)}-{quote(node.info.release, 60)})"


# -- acting on the Node ----------------------------------------------------------------------------

class _Workspace:
    """A private folder on the Node for the files of one hot-add; removed at the end."""

    def __init__(self, connection: NodeConnection) -> None:
        self.connection = connection
        self.path = ""

    def __enter__(self) -> _Workspace:
        outcome = self.connection.run("umask 077 && mktemp -d /tmp/ovirt-hotadd.XXXXXX")
        path = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else ""
        if outcome.exit_status != 0 or not re.fullmatch(r"/tmp/ovirt-hotadd\.[A-Za-z0-9]+", path):
            raise NodePluginError(f"{self.connection.target}: cannot make a private folder in /tmp",
                                  details=outcome.output[-_OUTPUT_LIMIT:])
        self.path = path
        return self

    def __exit__(self, *exc_info) -> None:
        if self.path:
            self.connection.run(f"rm -rf {shlex.quote(self.path)}")

    def put(self, local: str, name: str) -> str:
        remote = f"{self.path}/{name}"
        self.connection.put(local, remote)
        return remote


def _upload(workspace: _Workspace, steps: Sequence[PackageStep]) -> list[str]:
    # Files get plain names on the Node: the manifest's member names need no quoting then.
    return [workspace.put(step.header.path, f"{index:03d}.rpm") for index, step in enumerate(steps)]


def _logged(result: HotaddResult, step: str, outcome: ShellOutcome) -> ShellOutcome:
    result.steps.append(StepLog(step=step, exit_status=outcome.exit_status, output=outcome.output[-_OUTPUT_LIMIT:]))
    return outcome


def _rpm_command(node: RunningNode, args: Sequence[str]) -> str:
    return f"cd / && {shlex.quote(node.rpm)} {' '.join(shlex.quote(arg) for arg in args)} 2>&1"


def _test_transaction(connection: NodeConnection, node: RunningNode, plan: _Plan, result: HotaddResult) -> None:
    with _Workspace(connection) as workspace:
        files = _upload(workspace, plan.transaction)
        outcome = _logged(result, "rpm -U --test", connection.run(_rpm_command(node, ["-U", "--test", "--nosignature",
                                                                                      *files])))
    if outcome.exit_status != 0:
        raise NodePluginError(f"{connection.target}: the Node's rpm refuses the transaction",
                              details=outcome.output[-_OUTPUT_LIMIT:],
                              hint="the output above is rpm's on the Node (missing dependencies, conflicts)")


def _rollback(connection: NodeConnection, node: RunningNode, names: Sequence[str], result: HotaddResult) -> str:
    """Erase what this run installed; say what could not be undone."""
    if not names:
        return "nothing was installed"
    quoted = " ".join(shlex.quote(name) for name in names)
    rpm_bin = shlex.quote(node.rpm)
    outcome = _logged(result, "rpm -e (undo)", connection.run(
        f"cd / && {{ {rpm_bin} -e {quoted} 2>&1 || {rpm_bin} -e --noscripts --nodeps {quoted} 2>&1; }}; "
        f"{rpm_bin} -q {quoted} >/dev/null 2>&1 && echo STILL-INSTALLED; true"))
    if "STILL-INSTALLED" in outcome.stdout:
        return f"erasing {', '.join(names)} failed: remove them by hand (rpm -e) or reboot the Node"
    return f"erased again: {', '.join(names)}"


def _install(connection: NodeConnection, node: RunningNode, plan: _Plan, archive: PluginArchive,
             result: HotaddResult) -> RunningNode:
    """The transaction and the recipe's %post; on a failure the new packages are erased and the error raised."""
    names = [step.name for step in plan.steps]
    fresh = [step.name for step in plan.transaction if step.action == "install"]
    upgraded = [step for step in plan.transaction if step.action == "upgrade"]
    with _Workspace(connection) as workspace:
        files = _upload(workspace, plan.transaction) if plan.transaction else []
        failure: tuple[str, ShellOutcome | None] | None = None  # what failed, and the command's outcome if one ran
        if files:
            outcome = _logged(result, "rpm -U", connection.run(_rpm_command(node, ["-Uvh", "--nosignature", *files])))
            if outcome.exit_status != 0:
                failure = (f"the Node's rpm failed (exit status {outcome.exit_status})", outcome)
        after = read_node(connection, names, archive.manifest.persist)
        if failure is None:
            wrong = [step.header.nevra for step in plan.steps
                     if step.name not in after.installed or compare_evr(_evr(after.installed[step.name]),
                                                                        _evr(step.header)) != 0]
            if wrong:
                failure = (f"after the transaction the Node does not have {', '.join(wrong)}", None)
        for script in [s for s in archive.recipe.scripts if s.kind == "post"] if failure is None else []:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".sh", delete=False) as handle:
                handle.write(script.body)
            try:
                remote = workspace.put(handle.name, f"post-{script.lineno}.sh")
            finally:
                os.unlink(handle.name)
            outcome = _logged(result, f"%post (line {script.lineno})", connection.run(
                f"cd / && {shlex.quote(script.interpreter)} {shlex.quote(remote)} 2>&1"))
            if outcome.exit_status != 0:
                failure = (f"the recipe's %post (line {script.lineno}) failed with exit status {outcome.exit_status}",
                           outcome)
                break
    if failure is not None:
        message, failed_outcome = failure
        undone = _rollback(connection, node, [name for name in fresh if name in after.installed], result)
        lost = [f"{step.before} -> {step.header.nevra}" for step in upgraded]
        if lost:
            undone += ("; upgraded packages stay at the new version until the Node reboots: " + ", ".join(lost))
        raise NodePluginError(f"{connection.target}: hot-add of {archive.manifest.name} {archive.manifest.version} "
                              f"failed: {message}; no record written; {undone}",
                              details=failed_outcome.output[-_OUTPUT_LIMIT:] if failed_outcome else None,
                              hint="the output above is what ran on the Node")
    return after


def _write_records(connection: NodeConnection, after: RunningNode, plan: _Plan, result: HotaddResult) -> None:
    commands = [f"mkdir -p {RECORDS_DIR}"]
    for name in plan.records:
        package = after.installed[name]
        text = plugin_record(name, package.evra, package.install_date)
        final = f"{RECORDS_DIR}/{name}"
        temporary = f"{RECORDS_DIR}/.{name}.hotadd"
        commands.append(f"printf '%s' {shlex.quote(text)} > {shlex.quote(temporary)} && "
                        f"mv -f {shlex.quote(temporary)} {shlex.quote(final)}")
        result.records.append(final)
    outcome = _logged(result, "records", connection.run(" && ".join(commands) + " 2>&1"))
    if outcome.exit_status != 0:
        raise NodePluginError(f"{connection.target}: could not write the plugin records in {RECORDS_DIR}",
                              details=outcome.output[-_OUTPUT_LIMIT:])


def _persist(connection: NodeConnection, archive: PluginArchive, paths: Sequence[str], result: HotaddResult) -> None:
    outcome = _logged(result, "persist", connection.run(persist.persist_command(archive.manifest.name, paths)))
    for found in persist.parse_outcomes(outcome.stdout):
        key = {persist.PERSISTED: "persisted", persist.ALREADY: "already", persist.MISSING: "missing",
               persist.FAILED: "failed", persist.NOT_KEPT: "not_kept"}[found.outcome]
        result.persist.setdefault(key, []).append(found.path)
    if result.persist.get("failed"):
        result.warnings.append(f"could not persist {', '.join(result.persist['failed'])} (see the persist step's output)")
    if result.persist.get("missing"):
        result.warnings.append(f"declared paths that do not exist were not persisted: {', '.join(result.persist['missing'])}")


# -- the whole ------------------------------------------------------------------------------------

def hotadd(request: HotaddRequest, connection: NodeConnection) -> HotaddResult:
    """Hot-add request.plugin to the Node behind ``connection``; see the module docstring for the steps."""
    archive = _open(request)
    manifest = archive.manifest
    with tempfile.TemporaryDirectory(prefix="ovirt-hotadd-", dir=run_dir()) as scratch:
        archive.extract(scratch)
        headers = install_set(archive, scratch, allow_unlisted_paths=request.allow_unlisted_paths)
        names = [header.name for header in headers]
        node = read_node(connection, names, manifest.persist)
        _check_compatible(archive, node, connection.target)
        plan = _plan(archive, headers, node, request)
        result = HotaddResult(
            changed=False, target=connection.target, reason="",
            plugin={"name": manifest.name, "version": manifest.version, "sha256": archive.sha256,
                    "path": archive.path, "signer": archive.signer, "persist": list(manifest.persist)},
            node={"product": node.info.product, "version": node.info.version, "release": node.info.release,
                  "source": node.info.source, "stateful": node.stateful},
            packages_before={name: node.installed[name].nevra if name in node.installed else None for name in names})
        result.persist["declared"] = list(manifest.persist)
        result.persist["already"] = [path for path in manifest.persist if path in node.persisted]
        if manifest.persist and not node.stateful:
            result.persist["not_kept"] = list(manifest.persist)
            result.warnings.append(f"stateless Node (no config volume at /config): not kept across reboots: "
                                   f"{', '.join(manifest.persist)}")
        if manifest.persist and node.stateful and not request.persist:
            result.warnings.append(f"persist=false: not persisted: {', '.join(plan.to_persist)}")
        result.installed = [step.header.nevra for step in plan.transaction]
        result.upgraded = [{"name": step.name, "from": step.before, "to": step.header.nevra}
                           for step in plan.transaction if step.action == "upgrade"]
        if not plan.transaction and not plan.records and not plan.to_persist:
            result.reason = "already hot-added: every package, record and persisted path is in place"
            result.packages = dict(result.packages_before)
            missing = [path for path in manifest.persist if node.stateful and request.persist
                       and path not in node.persisted and path not in node.existing]
            if missing:
                result.persist["missing"] = missing
                result.warnings.append(f"declared paths that do not exist were not persisted: {', '.join(missing)}")
            return result
        result.changed = True
        if request.check_mode:
            if plan.transaction:
                _test_transaction(connection, node, plan, result)
            result.reason = "would hot-add" if plan.transaction else "would complete the records and persistence"
            result.packages = {step.name: step.header.nevra for step in plan.steps}
            result.records = [f"{RECORDS_DIR}/{name}" for name in plan.records]
            result.persist["persisted"] = list(plan.to_persist)
            return result
        after = _install(connection, node, plan, archive, result) if plan.transaction else node
        if plan.records:
            _write_records(connection, after, plan, result)
        if plan.to_persist:
            _persist(connection, archive, plan.to_persist, result)
        result.packages = {name: after.installed[name].nevra if name in after.installed else None for name in names}
        result.changed = bool(plan.transaction or plan.records or result.persist.get("persisted"))
        if plan.transaction:
            result.reason = "hot-added"
        else:
            result.reason = "completed the records and persistence" if result.changed else \
                "already hot-added: nothing more could be persisted"
    return result
