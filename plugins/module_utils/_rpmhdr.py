# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RPM package files: headers read with the rpm bindings, the allowed-path policy, signatures.

Signatures are checked against a keyring the caller gives, in a temporary GnuPG home and a
temporary rpm database: nothing global (the user's ~/.gnupg, the host's rpm keys) is read or changed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._errors import NodePluginError
from ._outputs import run_dir
from ._run import run

try:
    import rpm
except ImportError:  # pragma: no cover - reported by read_header
    rpm = None

# docs/field-facts.md, "What edit-node did": where a plugin may install files.
ALLOWED_PATHS: tuple[str, ...] = ("/etc", "/opt", "/usr/share/man", "/usr/lib/python*", "/usr/lib/systemd")
KMOD_ALLOWED_PATHS: tuple[str, ...] = ("/etc/modprobe.d", "/etc/depmod.d", "/usr/share", "/lib/modules",
                                       "/lib/firmware")
KINDS = ("standard", "kmod")

_SIGNATURE_QUERY = ("%|DSAHEADER?{%{DSAHEADER:pgpsig}}:{%|RSAHEADER?{%{RSAHEADER:pgpsig}}:"
                    "{%|SIGGPG?{%{SIGGPG:pgpsig}}:{%|SIGPGP?{%{SIGPGP:pgpsig}}:{(none)}|}|}|}|")
_KEY_ID = re.compile(r"Key ID ([0-9a-fA-F]+)")


@dataclass(frozen=True)
class RpmHeader:
    """The facts of one RPM file that the packager and the reader need."""

    path: str
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str
    nevra: str
    files: tuple[str, ...]
    directories: frozenset[str] = field(default_factory=frozenset)
    key_id: str | None = None
    source: bool = False

    @property
    def signed(self) -> bool:
        return self.key_id is not None

    @property
    def evr(self) -> str:
        text = f"{self.version}-{self.release}"
        return f"{self.epoch}:{text}" if self.epoch else text


def _require_rpm() -> None:
    if rpm is None:
        raise NodePluginError("the Python rpm bindings are not installed",
                              hint="install the package 'python3-rpm' (make setup does it)")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_header(path: str) -> RpmHeader:
    """Read an RPM's header (signatures are not checked here; see check_signatures)."""
    _require_rpm()
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise NodePluginError(f"cannot open the RPM: {exc.strerror}", path=path) from exc
    try:
        return _header_from_fd(descriptor, path)
    finally:
        os.close(descriptor)


def read_header_bytes(data: bytes, path: str) -> RpmHeader:
    """Read the header from the first bytes of an RPM (in memory: no file is written); path names it."""
    _require_rpm()
    descriptor = os.memfd_create("rpm-header", os.MFD_CLOEXEC)
    try:
        os.write(descriptor, data)
        os.lseek(descriptor, 0, os.SEEK_SET)
        return _header_from_fd(descriptor, path)
    finally:
        os.close(descriptor)


def _header_from_fd(descriptor: int, path: str) -> RpmHeader:
    transaction = rpm.TransactionSet()
    transaction.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES)
    try:
        header = transaction.hdrFromFdno(descriptor)
    except rpm.error as exc:
        raise NodePluginError(f"not a readable RPM package ({exc})", path=path,
                              hint="give a binary .rpm file, as rpmbuild writes it") from exc
    files = tuple(_text(name) for name in header[rpm.RPMTAG_FILENAMES] or ())
    modes = header[rpm.RPMTAG_FILEMODES] or ()
    directories = frozenset(name for name, mode in zip(files, modes) if (mode & 0o170000) == 0o040000)
    signature = _text(header.format(_SIGNATURE_QUERY))
    match = _KEY_ID.search(signature)
    epoch = header[rpm.RPMTAG_EPOCH]
    return RpmHeader(path=path, name=_text(header[rpm.RPMTAG_NAME]), epoch=int(epoch) if epoch is not None else None,
                     version=_text(header[rpm.RPMTAG_VERSION]), release=_text(header[rpm.RPMTAG_RELEASE]),
                     arch=_text(header[rpm.RPMTAG_ARCH]), nevra=_text(header[rpm.RPMTAG_NEVRA]),
                     files=files, directories=directories, key_id=match.group(1).lower() if match else None,
                     source=bool(header[rpm.RPMTAG_SOURCEPACKAGE]))


def allowed_paths(kind: str = "standard", overrides: Sequence[str] = ()) -> tuple[str, ...]:
    """The path prefixes a plugin of this kind may install under, plus explicit overrides."""
    if kind not in KINDS:
        raise NodePluginError(f"unknown plugin kind '{kind}'", hint=f"use one of {', '.join(KINDS)}")
    base = ALLOWED_PATHS + (KMOD_ALLOWED_PATHS if kind == "kmod" else ())
    for override in overrides:
        if not override.startswith("/") or ".." in override.split("/"):
            raise NodePluginError(f"allowed path override '{override}' is not an absolute path",
                                  hint="give paths such as /usr/libexec/vendor")
    return base + tuple(override.rstrip("/") or "/" for override in overrides)


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _component_matches(pattern: str, part: str) -> bool:
    # Only a trailing '*' is a wildcard ('/usr/lib/python*' admits python3.11, not python/../x).
    if pattern.endswith("*"):
        return part.startswith(pattern[:-1])
    return part == pattern


def path_allowed(path: str, prefixes: Iterable[str], *, is_directory: bool = False) -> bool:
    """True when ``path`` lies under one of ``prefixes`` (component-wise, never by substring).

    A directory that is a parent of an allowed prefix (``/usr``, ``/usr/lib``) is allowed too:
    packages own such directories without putting files outside the allowed set.
    """
    parts = _components(path)
    if ".." in parts:
        return False
    for prefix in prefixes:
        wanted = _components(prefix)
        if len(parts) >= len(wanted) and all(_component_matches(w, p) for w, p in zip(wanted, parts)):
            return True
        if is_directory and len(parts) < len(wanted) and all(
                _component_matches(w, p) for w, p in zip(wanted, parts)):
            return True
    return False


def offending_paths(header: RpmHeader, prefixes: Sequence[str]) -> list[str]:
    """Every file of the package that lies outside the allowed prefixes, in package order."""
    return [name for name in header.files
            if not path_allowed(name, prefixes, is_directory=name in header.directories)]


def check_paths(headers: Iterable[RpmHeader], prefixes: Sequence[str]) -> None:
    """Raise one error listing every offending path of every package, grouped per package."""
    report = []
    for header in headers:
        bad = offending_paths(header, prefixes)
        if bad:
            report.append(f"{header.nevra} ({os.path.basename(header.path)}):")
            report.extend(f"  {name}" for name in bad)
    if report:
        count = sum(1 for line in report if line.startswith("  "))
        raise NodePluginError(
            f"{count} file(s) would be installed outside the paths a plugin may use "
            f"({', '.join(prefixes)})",
            hint="move them under an allowed path in the package, build a kmod plugin (kind kmod) for "
                 "kernel modules, or list the paths as allowed path overrides if the Node really needs them",
            details="\n".join(report))


MAX_KEYRING_BYTES = 4 * 1024 ** 2  # an exported key is a few KiB; a keyring of many keys stays far below


def read_keyring(keyring: str) -> bytes:
    """The bytes of a public key file (a regular file of at most MAX_KEYRING_BYTES), else NodePluginError saying why."""
    hint = "give an exported public key file (gpg --export --armor KEYID > FILE)"
    try:
        # O_NONBLOCK: a fifo given as the keyring must not hang the build; only regular files are read.
        descriptor = os.open(keyring, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise NodePluginError("the keyring file does not exist", path=keyring, hint=hint) from exc
    except OSError as exc:
        raise NodePluginError(f"cannot read the keyring: {exc.strerror}", path=keyring, hint=hint) from exc
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NodePluginError("the keyring is not a regular file", path=keyring, hint=hint)
        with os.fdopen(os.dup(descriptor), "rb") as handle:
            content = handle.read(MAX_KEYRING_BYTES + 1)
    except OSError as exc:
        raise NodePluginError(f"cannot read the keyring: {exc.strerror}", path=keyring, hint=hint) from exc
    finally:
        os.close(descriptor)
    if len(content) > MAX_KEYRING_BYTES:
        raise NodePluginError(f"the keyring is larger than {MAX_KEYRING_BYTES} bytes: not a public key file",
                              path=keyring, hint=hint)
    return content


def _day(epoch: str) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(int(epoch))) if epoch.isdigit() else "an unknown date"


class TemporaryKeyring:
    """A GnuPG home and an rpm database in a temporary folder, holding only the given keys."""

    def __init__(self, keyring: str) -> None:
        content = read_keyring(keyring)
        self.keyring = keyring
        try:
            self.home = tempfile.mkdtemp(prefix="ovirt-plugin-keys-", dir=run_dir())
        except OSError as exc:
            raise NodePluginError(f"cannot make a temporary folder for the keyring: {exc.strerror}",
                                  path=tempfile.gettempdir(), hint="set TMPDIR to a writable folder") from exc
        try:
            self.gnupg_home = os.path.join(self.home, "gnupg")
            os.mkdir(self.gnupg_home, 0o700)
            self._rpmdb: str | None = None
            result = self.gpg(["--import"], check=False, input=content)
            self.fingerprints, self.key_problems = self._keys()
        except BaseException:
            self.close()
            raise
        if not self.fingerprints:
            stderr = (result.stderr or b"").decode("utf-8", "replace").strip()
            self.close()
            raise NodePluginError("the keyring holds no OpenPGP public key", path=keyring,
                                  hint="gpg found no usable OpenPGP public key in it; give an exported public key "
                                       "file (gpg --export --armor KEYID > FILE)",
                                  details=stderr[-1000:] or None)

    def gpg(self, args: Sequence[str], *, check: bool = True, input: bytes | None = None):
        return run(["gpg", "--batch", "--no-tty", "--homedir", self.gnupg_home, "--trust-model", "always",
                    *args], check=check, input=input)

    def _keys(self) -> tuple[list[str], dict[str, str]]:
        """Fingerprints of the primary keys, and what is wrong with each (sub)key that is expired or revoked."""
        listing = self.gpg(["--with-colons", "--fixed-list-mode", "--list-keys"], check=False).stdout.decode()
        fingerprints, problems, previous = [], {}, ""
        for line in listing.splitlines():
            fields = line.split(":")
            if fields[0] in ("pub", "sub") and len(fields) > 6:
                if fields[1] == "r":
                    problems[fields[4].lower()] = "is revoked"
                elif fields[1] == "e":
                    problems[fields[4].lower()] = f"expired on {_day(fields[6])}"
            if fields[0] == "fpr" and previous == "pub":
                fingerprints.append(fields[9].lower())
            previous = fields[0] if fields[0] != "fpr" else previous
        return fingerprints, problems

    def verify_detached(self, signature: bytes, data: bytes, what: str) -> str:
        """Verify a detached signature of ``data``; return the signing key's fingerprint.

        A signature by an expired or revoked key is refused, saying so.
        """
        signature_file = os.path.join(self.home, "data.asc")
        data_file = os.path.join(self.home, "data")
        with open(signature_file, "wb") as handle:
            handle.write(signature)
        with open(data_file, "wb") as handle:
            handle.write(data)
        result = self.gpg(["--status-fd", "1", "--verify", signature_file, data_file], check=False)
        status = result.stdout.decode("utf-8", "replace")
        hint = "get the plugin and the vendor's key again from the vendor"
        by_key = re.search(r"^\[GNUPG:\] (EXPKEYSIG|REVKEYSIG) ([0-9A-Fa-f]+)", status, re.MULTILINE)
        if by_key:
            key_id = by_key.group(2).lower()
            expired = re.search(r"^\[GNUPG:\] KEYEXPIRED ([0-9]+)", status, re.MULTILINE)
            problem = ("is revoked" if by_key.group(1) == "REVKEYSIG"
                       else f"expired on {_day(expired.group(1)) if expired else 'an earlier date'}")
            raise NodePluginError(f"bad signature: it was made with the key {key_id}, which {problem}", path=what,
                                  hint="ask the vendor for a plugin signed with a valid key, and its new public key")
        if re.search(r"^\[GNUPG:\] EXPSIG ", status, re.MULTILINE):
            raise NodePluginError("bad signature: the signature has expired", path=what, hint=hint)
        valid = re.search(r"^\[GNUPG:\] VALIDSIG ([0-9A-Fa-f]+)", status, re.MULTILINE)
        if result.returncode != 0 or not valid:
            reason = "no key of the keyring made it" if "NO_PUBKEY" in status else "it does not match the data"
            raise NodePluginError(f"bad signature: {reason}", path=what, hint=hint)
        return valid.group(1).lower()

    def _rpm_database(self) -> str:
        if self._rpmdb is None:
            self._rpmdb = os.path.join(self.home, "rpmdb")
            os.mkdir(self._rpmdb)
            for fingerprint in self.fingerprints:
                exported = self.gpg(["--export", "--armor", fingerprint]).stdout
                key_file = os.path.join(self.home, f"{fingerprint}.asc")
                with open(key_file, "wb") as handle:
                    handle.write(exported)
                run(["rpmkeys", "--dbpath", self._rpmdb, "--import", key_file])
        return self._rpmdb

    def check_rpm(self, path: str) -> bool:
        """True when the RPM's signatures and digests verify against the keyring's keys."""
        result = run(["rpmkeys", "--dbpath", self._rpm_database(), "--define", "_pkgverify_level signature",
                      "--checksig", path], check=False)
        return result.returncode == 0

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> TemporaryKeyring:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def check_signatures(headers: Sequence[RpmHeader], keyring: str) -> None:
    """Raise naming every package whose signature does not verify with the keyring (unsigned included).

    rpm does not know when a key expired or was revoked; gpg does, and such a key verifies nothing.
    """
    with TemporaryKeyring(keyring) as keys:
        bad = []
        for header in headers:
            problem = keys.key_problems.get(header.key_id or "")
            if problem or not keys.check_rpm(header.path):
                signer = f"signed with key {header.key_id}" if header.signed else "not signed"
                bad.append(f"  {header.nevra} ({os.path.basename(header.path)}): {signer}"
                           + (f", which {problem}" if problem else ""))
    if bad:
        raise NodePluginError(f"{len(bad)} package(s) are not signed by a key of the keyring", path=keyring,
                              hint="sign them (rpmsign --addsign) with the vendor's key, or give the right keyring",
                              details="\n".join(bad))


def sign_detached(data: bytes, sign_key: str, *, gnupg_home: str | None = None) -> bytes:
    """An ASCII-armoured detached OpenPGP signature of ``data`` made with the secret key ``sign_key``."""
    env = {"GNUPGHOME": gnupg_home} if gnupg_home else None
    result = run(["gpg", "--batch", "--no-tty", "--armor", "--detach-sign", "--local-user", sign_key,
                  "--output", "-"], env=env, input=data, check=False)
    if result.returncode != 0:
        raise NodePluginError(f"could not sign with the key '{sign_key}'",
                              hint="check the key id (gpg --list-secret-keys) and the GnuPG home",
                              details=(result.stderr or b"").decode("utf-8", "replace").strip()[-2000:])
    return result.stdout
