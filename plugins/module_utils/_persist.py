# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Persistence of plugin paths on oVirt Node: which paths a plugin may declare, and how a Node keeps them.

A Node runs from its live image, so what a running host changes is gone at reboot. A stateful Node has
a config volume at ``/config``: a path persists when the Node's own ``persist`` command (older Nodes:
``ovirt_store_config`` of ``/usr/libexec/ovirt-functions``) copied it to ``/config<path>``, bind-mounted
it back and listed it in ``/config/files``. A stateless Node has no ``/config``; nothing it changes is
kept. Never assume ``/config`` exists, never write there directly (FACTS.md, "Persistence on a Node").

One piece of shell, ``persist_declared <plugin>`` (paths on its standard input), persists what a plugin
declares and is not persisted yet, and says per path what it did. Hot-add runs it on a running Node;
the boot hook that image_files() puts into a rebuilt ISO runs it at every boot, so a Node with a config
volume persists the declared paths at its first boot and a stateless one says in its boot log what is
not kept. Its lines read ``ovirt-plugins-persist: <plugin>: <outcome>: <path>`` (OUTCOMES).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence

from ._errors import NodePluginError

# Where a plugin may declare persisted paths: configuration and state, not programs. Strictly below
# these (the Node refuses to persist a top-level folder such as /etc itself).
PERSIST_ROOTS: tuple[str, ...] = ("/etc", "/opt", "/var/lib")
# The Node's own bookkeeping is never a plugin's to persist.
RESERVED_PATHS: tuple[str, ...] = ("/etc/ovirt-plugins.d", "/etc/ovirt-plugins-persist.d", "/config")
# One list of declared paths per plugin, written into the image by a rebuild.
PERSIST_LISTS_DIR = "/etc/ovirt-plugins-persist.d"
# The Node's on-boot hooks (ovirt-node-hooks runs every file of this folder at boot).
BOOT_HOOK = "/usr/libexec/ovirt-node/hooks/on-boot/90-ovirt-plugins-persist"
LOG_PREFIX = "ovirt-plugins-persist"
# The Node's own scripts quote few of their variables: only characters that need no quoting.
_SAFE_PATH = re.compile(r"^(/[A-Za-z0-9._+@%,:=~-]+)+$")
_MAX_PATH = 1024

PERSISTED = "persisted"
ALREADY = "already persisted"
NOT_KEPT = "not kept, stateless Node (no config volume at /config)"
MISSING = "not persisted, it does not exist"
FAILED = "could not persist"
OUTCOMES = (PERSISTED, ALREADY, NOT_KEPT, MISSING, FAILED)

# Defines persist_declared; the Node's own persist command does the work. POSIX sh (bash, busybox ash).
PERSIST_FUNCTION = r"""ovirt_plugins_store() {
    if command -v persist >/dev/null 2>&1; then
        persist "$@"
    elif [ -r /usr/libexec/ovirt-functions ]; then
        ( . /usr/libexec/ovirt-functions && ovirt_store_config "$@" )
    elif [ -r /etc/init.d/ovirt-functions ]; then
        ( . /etc/init.d/ovirt-functions && ovirt_store_config "$@" )
    else
        echo "this Node has neither a persist command nor ovirt-functions" >&2
        return 127
    fi
}
persist_declared() {
    while IFS= read -r path || [ -n "$path" ]; do
        case $path in /?*) ;; *) continue ;; esac
        if ! grep -q '^[^ ]* /config ' /proc/mounts; then
            echo "ovirt-plugins-persist: $1: not kept, stateless Node (no config volume at /config): $path"
        elif grep -Fqx -- "$path" /config/files 2>/dev/null; then
            echo "ovirt-plugins-persist: $1: already persisted: $path"
        elif [ ! -e "$path" ]; then
            echo "ovirt-plugins-persist: $1: not persisted, it does not exist: $path"
        elif ovirt_plugins_store "$path" >&2 && grep -Fqx -- "$path" /config/files 2>/dev/null; then
            echo "ovirt-plugins-persist: $1: persisted: $path"
        else
            echo "ovirt-plugins-persist: $1: could not persist: $path"
        fi
    done
}
"""

_BOOT_HOOK_SCRIPT = f"""#!/bin/sh
# Written into this image by ovirt.node_plugins when the ISO was rebuilt with plugins.
# At boot, persists through the Node's own mechanism each path that a plugin declared (one list per
# plugin in {PERSIST_LISTS_DIR}) and the config volume does not hold yet; on a stateless Node it
# says which declared paths are not kept. A path unpersisted by hand is persisted again at the next
# boot while the plugin declares it.
{PERSIST_FUNCTION}
for list in {PERSIST_LISTS_DIR}/*; do
    [ -f "$list" ] || continue
    persist_declared "${{list##*/}}" < "$list"
done
exit 0
"""

_LINE = re.compile(rf"^{LOG_PREFIX}: (?P<plugin>[^:]+): (?P<outcome>[^:]+): (?P<path>/.*)$")


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """A file a rebuild writes into the root image: its bytes and mode."""

    content: bytes
    mode: int


@dataclasses.dataclass(frozen=True)
class PersistOutcome:
    """What persist_declared did with one declared path (outcome is one of OUTCOMES)."""

    plugin: str
    path: str
    outcome: str


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a declared persist path, or None when it can."""
    if not isinstance(path, str) or not path.startswith("/"):
        return "not an absolute path"
    if len(path) > _MAX_PATH:
        return f"longer than {_MAX_PATH} characters"
    if not _SAFE_PATH.match(path) or os.path.normpath(path) != path:
        return "not a plain path (use letters, digits and . _ + @ % , : = ~ -, no '..', no trailing '/')"
    if any(path == reserved or path.startswith(reserved + "/") for reserved in RESERVED_PATHS):
        return "the Node's own bookkeeping"
    if not any(path.startswith(root + "/") for root in PERSIST_ROOTS):
        return f"not below {', '.join(PERSIST_ROOTS)} (configuration and state, not programs)"
    return None


def check_declared(plugin: str, paths: Iterable[str], where: str | None = None) -> list[str]:
    """The declared paths, in order, after refusing (one error, every offender named) any that cannot be persisted."""
    paths = list(paths)
    problems = [f"  {path[:200]!r}: {problem}" for path in paths for problem in [path_problem(path)] if problem]
    if problems:
        raise NodePluginError(f"plugin {plugin}: {len(problems)} persist path(s) cannot be persisted on a Node",
                              path=where, details="\n".join(problems),
                              hint=f"declare files or folders strictly below {', '.join(PERSIST_ROOTS)}")
    return paths


def persist_command(plugin: str, paths: Sequence[str]) -> str:
    """A shell command that persists ``paths`` of ``plugin`` on a running Node (see parse_outcomes).

    No here-document and no final newline: Ansible appends ``&& sleep 0`` to the command it is given.
    """
    check_declared(plugin, paths)
    return f"{PERSIST_FUNCTION}printf '%s\\n' {' '.join(paths)} | persist_declared {plugin}"


def parse_outcomes(output: str) -> list[PersistOutcome]:
    """The outcome lines of persist_declared (the boot hook's or a hot-add's output), in order."""
    found = []
    for line in output.replace("\r", "").splitlines():
        match = _LINE.match(line.strip())
        if match and match.group("outcome") in OUTCOMES:
            found.append(PersistOutcome(match.group("plugin"), match.group("path"), match.group("outcome")))
    return found


def image_files(manifests: Sequence) -> dict[str, ImageFile]:
    """Files a rebuild writes into the root image so that a Node persists its plugins' declared paths at boot.

    ``manifests`` are the PluginManifests applied; the result maps absolute image paths to ImageFile:
    one list per plugin that declares paths (PERSIST_LISTS_DIR/<plugin>) and the boot hook (BOOT_HOOK).
    Plugins without persist paths add nothing; with none at all the result is empty.
    """
    files: dict[str, ImageFile] = {}
    for manifest in manifests:
        if not manifest.persist:
            continue
        paths = check_declared(manifest.name, manifest.persist)
        listing = f"# Paths the plugin {manifest.name} {manifest.version} declares for persistence (ovirt.node_plugins).\n"
        files[f"{PERSIST_LISTS_DIR}/{manifest.name}"] = ImageFile(
            (listing + "".join(f"{path}\n" for path in paths)).encode("utf-8"), 0o644)
    if files:
        files[BOOT_HOOK] = ImageFile(_BOOT_HOOK_SCRIPT.encode("utf-8"), 0o755)
    return files


# -- the packager's check --------------------------------------------------------------------------

def _post_scripts_of(rpm_path: str) -> str:
    """The %post scriptlet of an RPM file ('' when it has none)."""
    try:
        import rpm  # pylint: disable=import-outside-toplevel
    except ImportError as exc:  # pragma: no cover - the packager already needs the bindings
        raise NodePluginError("the Python rpm bindings are not installed",
                              hint="install the package 'python3-rpm' (make setup does it)") from exc
    transaction = rpm.TransactionSet()
    transaction.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES)
    descriptor = os.open(rpm_path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        header = transaction.hdrFromFdno(descriptor)
    except rpm.error as exc:
        raise NodePluginError(f"not a readable RPM package ({exc})", path=rpm_path) from exc
    finally:
        os.close(descriptor)
    text = header[rpm.RPMTAG_POSTIN] or ""
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def check_persist_paths(plugin: str, persist: Sequence[str], headers: Sequence, post_scripts: Sequence[str]) -> None:
    """Refuse, naming every offender, declared paths a Node cannot keep for the plugin.

    Each path must be a plain path strictly below PERSIST_ROOTS, and be a file or folder of the plugin's
    packages (``headers``: RpmHeaders of every shipped RPM) or created by its %post: named literally in
    a recipe %post (``post_scripts``: their bodies) or in a package's %post scriptlet. A path that exists
    after the install can be persisted at hot-add and at first boot; anything else cannot.
    """
    check_declared(plugin, persist)
    owned = {name for header in headers for name in header.files}
    scripts = list(post_scripts) + [_post_scripts_of(header.path) for header in headers]
    unknown = [path for path in persist if path not in owned and not any(_names(script, path) for script in scripts)]
    if unknown:
        raise NodePluginError(f"plugin {plugin}: {len(unknown)} persist path(s) are neither files of its packages "
                              "nor created by its %post", details="\n".join(f"  {path}" for path in unknown),
                              hint="declare paths your packages install (for example %config(noreplace) files), "
                                   "or create them in %post and name them there")


def _names(script: str, path: str) -> bool:
    """True when the script text names path as a whole word (not as the prefix of a longer path)."""
    return re.search(rf"(?<![\w./-]){re.escape(path)}(?![\w.-]|/[\w.])", script) is not None
