# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small RPMs and OpenPGP keys for tests, built with the real rpmbuild and gpg and cached by content.

Cache: $OVIRT_NODE_PLUGINS_CACHE (default: .cache in the checkout)/test-rpms/<hash>/ and
test-keys/<hash>/. A cache entry is complete when its 'done' marker exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cache_root() -> str:
    return os.environ.get("OVIRT_NODE_PLUGINS_CACHE") or os.path.join(TOP, ".cache")


@dataclass(frozen=True)
class RpmSpec:
    """One test package: its files (path -> text), its dependency tags and an optional %post scriptlet
    (rpmbuild then adds Requires(post): /bin/sh by itself, as for any vendor RPM)."""

    name: str
    version: str = "1.0"
    release: str = "1"
    epoch: int | None = None
    arch: str = "noarch"
    files: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    summary: str = "test package"
    post: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"

    def spec_text(self) -> str:
        lines = [f"Name: {self.name}", f"Version: {self.version}", f"Release: {self.release}",
                 f"Summary: {self.summary}", "License: MIT", f"BuildArch: {self.arch}",
                 "AutoReqProv: no"]
        if self.epoch is not None:
            lines.append(f"Epoch: {self.epoch}")
        lines += [f"Requires: {item}" for item in self.requires]
        lines += [f"Provides: {item}" for item in self.provides]
        lines += [f"Conflicts: {item}" for item in self.conflicts]
        lines += ["", "%description", self.summary, "", "%install"]
        for path, content in self.files:
            lines.append(f"mkdir -p %{{buildroot}}{os.path.dirname(path)}")
            lines.append(f"printf '%s\\n' {json.dumps(content)} > %{{buildroot}}{path}")
        if self.post:
            lines += ["", "%post", self.post]
        lines += ["", "%files"] + [path for path, _content in self.files] + [""]
        return "\n".join(lines)


@dataclass
class GpgKey:
    """A test signing key: its GnuPG home, key id, fingerprint and exported public key file."""

    home: str
    fingerprint: str
    public_key: str

    @property
    def key_id(self) -> str:
        return self.fingerprint[-16:]


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cached(kind: str, key: str, make) -> str:
    folder = os.path.join(cache_root(), kind, key)
    if os.path.exists(os.path.join(folder, "done")):
        return folder
    staging = tempfile.mkdtemp(prefix=f".{key}-", dir=os.path.dirname(folder) if os.path.isdir(
        os.path.dirname(folder)) else _makedirs(os.path.dirname(folder)))
    try:
        make(staging)
        with open(os.path.join(staging, "done"), "w", encoding="ascii") as handle:
            handle.write("ok\n")
        try:
            os.rename(staging, folder)
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _makedirs(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def stop_agent(home: str) -> None:
    """Stop the gpg-agent that gpg started for this GnuPG home (tests leave no processes behind)."""
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False, capture_output=True)


def make_key(name: str = "Test Vendor") -> GpgKey:
    """A passphrase-less RSA signing key, cached per name."""
    def make(folder: str) -> None:
        home = os.path.join(folder, "gnupg")
        os.mkdir(home, 0o700)
        subprocess.run(["gpg", "--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key",
                        f"{name} <{name.lower().replace(' ', '.')}@example.com>", "rsa2048", "sign", "never"],
                       check=True, capture_output=True)
        listing = subprocess.run(["gpg", "--batch", "--homedir", home, "--with-colons", "--list-keys"],
                                 check=True, capture_output=True, text=True).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        exported = subprocess.run(["gpg", "--batch", "--homedir", home, "--export", "--armor", fingerprint],
                                  check=True, capture_output=True).stdout
        with open(os.path.join(folder, "public.asc"), "wb") as handle:
            handle.write(exported)
        with open(os.path.join(folder, "fingerprint"), "w", encoding="ascii") as handle:
            handle.write(fingerprint)
        stop_agent(home)  # its socket would move with the folder, bound to the old path
    folder = _cached("test-keys", _digest(["key-v1", name]), make)
    with open(os.path.join(folder, "fingerprint"), encoding="ascii") as handle:
        fingerprint = handle.read().strip()
    return GpgKey(os.path.join(folder, "gnupg"), fingerprint, os.path.join(folder, "public.asc"))


@dataclass
class RpmSet:
    """Built packages: the folder and each package's path by name."""

    dir: str
    by_name: dict[str, str] = field(default_factory=dict)


def build_rpms(specs: list[RpmSpec], *, sign_with: GpgKey | None = None, label: str = "set") -> RpmSet:
    """Build the packages (signed when a key is given) into one cached folder."""
    key = _digest(["rpms-v1", label, [asdict(spec) for spec in specs],
                   sign_with.fingerprint if sign_with else None])

    def make(folder: str) -> None:
        with tempfile.TemporaryDirectory(prefix="rpmbuild-") as top:
            for spec in specs:
                spec_file = os.path.join(top, f"{spec.name}.spec")
                with open(spec_file, "w", encoding="utf-8") as handle:
                    handle.write(spec.spec_text())
                subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", f"_rpmdir {folder}",
                                "--define", "_build_id_links none", "--define", "_rpmfilename %{NAME}-%{VERSION}-"
                                "%{RELEASE}.%{ARCH}.rpm", "--define", "source_date_epoch_from_changelog 0",
                                "--define", "use_source_date_epoch_as_buildtime 1", spec_file],
                               check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
        if sign_with:
            paths = [os.path.join(folder, spec.file_name) for spec in specs]
            subprocess.run(["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg",
                            "--define", f"_gpg_name {sign_with.fingerprint}",
                            "--define", f"_gpg_path {sign_with.home}", *paths],
                           check=True, capture_output=True, stdin=subprocess.DEVNULL)
            stop_agent(sign_with.home)

    folder = _cached("test-rpms", key, make)
    return RpmSet(folder, {spec.name: os.path.join(folder, spec.file_name) for spec in specs})


# The packages most tests use: a plugin with a Requires chain ending in a soname the image provides,
# a package with files outside the allowed paths, one that conflicts with the image, and a kmod.
AGENT = RpmSpec("agent", files=(("/opt/agent/bin/agent", "#!/bin/sh"), ("/etc/agent/agent.conf", "port=1")),
                requires=("agent-lib", "base >= 1.0"))
AGENT_LIB = RpmSpec("agent-lib", files=(("/opt/agent/lib/data", "lib"),), requires=("libbase.so.1()(64bit)",))
UNRELATED = RpmSpec("unrelated", files=(("/opt/unrelated/x", "x"),))
BAD_PATHS = RpmSpec("bad-paths", files=(("/usr/bin/bad", "x"), ("/var/lib/bad/state", "x"),
                                        ("/etc/bad.conf", "ok"), ("/optional/x", "x"),
                                        ("/usr/lib/python3.11/site-packages/bad.py", "ok")))
CONFLICTING = RpmSpec("conflicting", files=(("/opt/conflicting/x", "x"),), conflicts=("base",))
KMOD = RpmSpec("kmod-vendor", files=(("/lib/modules/6.1.0/extra/vendor.ko", "ko"),
                                     ("/etc/modprobe.d/vendor.conf", "options vendor x=1")))
BASE_PROVIDES = ("libbase.so.1()(64bit)",)
IMAGE_PACKAGES_JSON = json.dumps([
    {"name": "base", "epoch": None, "version": "1.2", "release": "3", "arch": "x86_64", "provides": list(BASE_PROVIDES)},
    {"name": "ovirt-node", "epoch": None, "version": "2.5.0", "release": "1.0.fc17", "arch": "noarch",
     "provides": []},
])


def standard_rpms() -> RpmSet:
    return build_rpms([AGENT, AGENT_LIB, UNRELATED, BAD_PATHS, CONFLICTING, KMOD], label="standard")


def signed_rpms(key: GpgKey) -> RpmSet:
    return build_rpms([AGENT, AGENT_LIB], sign_with=key, label="signed")


def dependency_repo(folder: str, rpms: RpmSet, names: tuple[str, ...] = ("agent-lib", "unrelated")) -> str:
    """A folder holding copies of some packages (a repository without repodata)."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        shutil.copy(rpms.by_name[name], folder)
    return folder


def image_packages_file(folder: str) -> str:
    path = os.path.join(folder, "image-packages.json")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(IMAGE_PACKAGES_JSON)
    return path
