# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vendor's packager: RPMs + recipe + metadata -> a plugin tarball (format 1).

One function, build_plugin(), serves the module node_plugin_build and ``ovirt-plugin-build pack``.
Steps: read the RPM headers; find the target image's packages; close the dependencies with libsolv
(only what the image lacks is shipped); check every file against the allowed paths and, with a
keyring, every signature; write the recipe and manifest; sign; write the tarball reproducibly.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

from ._digests import file_sha256
from ._errors import NodePluginError
from ._outputs import run_dir
from ._persist import check_persist_paths
from ._plugin import (MANIFEST, RECIPE, RPMS_DIR, SIGNATURE, Member, NodeCompat, PackageEntry, PluginArchive,
                      PluginManifest, RecipeEntry, created_now, open_plugin, plugin_file_name,
                      source_date_epoch, tarball_digest, validate_manifest, write_tarball, check_recipe_repos)
from ._recipe import generate_recipe, parse_recipe, read_recipe_text
from ._rpmdeps import InstalledPackage, read_package_list, resolve_closure
from ._rpmhdr import KINDS, RpmHeader, allowed_paths, check_paths, check_signatures, read_header, sign_detached
from ._run import StageTimer, run
from ._versions import parse_range

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~^]*$")


@dataclass
class PluginBuildRequest:
    """Everything the packager needs; the module's options and the CLI's flags map one to one."""

    name: str
    version: str
    rpms: list[str]
    output: str
    vendor: str = ""
    summary: str = ""
    repos: list[str] = field(default_factory=list)
    target_packages: str | None = None
    target_iso: str | None = None
    node_product: str = ""
    node_versions: str = "*"
    recipe: str | None = None
    persist: list[str] = field(default_factory=list)
    allow_paths: list[str] = field(default_factory=list)
    kind: str = "standard"
    keyring: str | None = None
    sign_key: str | None = None
    gnupg_home: str | None = None
    check_mode: bool = False


@dataclass
class PluginBuildResult:
    """What was (or, in check mode, would be) written."""

    path: str
    sha256: str | None
    size: int | None
    changed: bool
    packages: list[dict]
    manifest: dict
    satisfied_by_image: list[str]
    durations: dict[str, float]

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "changed": self.changed,
                "packages": self.packages, "manifest": self.manifest,
                "satisfied_by_image": self.satisfied_by_image, "durations": self.durations}


def _validate(request: PluginBuildRequest) -> None:
    if not _NAME.match(request.name or ""):
        raise NodePluginError(f"plugin name '{request.name}' is not valid",
                              hint="use letters, digits and . _ + - (starting with a letter or digit)")
    if not _VERSION.match(request.version or ""):
        raise NodePluginError(f"plugin version '{request.version}' is not valid",
                              hint="use an rpm-style version such as 1.0 or 2.1.3 (no dash)")
    if not request.rpms:
        raise NodePluginError("no RPM given", hint="give the plugin's own packages (--rpm FILE)")
    if bool(request.target_packages) == bool(request.target_iso):
        raise NodePluginError("give exactly one of target packages (a package list) or target ISO",
                              hint="the packager ships only what the target image lacks, so it must know the image")
    if request.kind not in KINDS:
        raise NodePluginError(f"unknown plugin kind '{request.kind}'", hint=f"use one of {', '.join(KINDS)}")
    parse_range(request.node_versions)
    for path in request.persist:
        if not path.startswith("/") or ".." in path.split("/") or path.rstrip("/") == "":
            raise NodePluginError(f"persist path '{path}' is not an absolute path below /",
                                  hint="give files or folders such as /etc/vendor-agent/agent.conf")


def image_packages(request: PluginBuildRequest, workdir: str) -> list[InstalledPackage]:
    """The target image's packages, from a package list file or from the ISO's rpm database (with file lists)."""
    if request.target_packages:
        return read_package_list(request.target_packages)
    if not request.target_iso:
        raise NodePluginError("neither target packages nor a target ISO given",
                              hint="the packager ships only what the target image lacks, so it must know the image")
    try:
        from ._rpmdb import rpm_database_from_iso  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise NodePluginError("reading packages from an ISO is not available in this version",
                              hint="give the ISO's isolinux/manifest-rpm.txt as target packages") from exc
    return list(rpm_database_from_iso(request.target_iso, workdir).packages)


def _headers(paths: list[str]) -> list[RpmHeader]:
    headers: list[RpmHeader] = []
    names: dict[str, str] = {}  # package name -> the file that gave it
    for path in paths:
        header = read_header(path)
        if header.source:
            raise NodePluginError("is a source RPM", path=path, hint="give binary RPMs")
        if header.name in names:
            raise NodePluginError(f"package {header.name} is given twice ({names[header.name]} and {path})",
                                  hint="give one version of each package")
        names[header.name] = path
        headers.append(header)
    return headers


def _member_name(header: RpmHeader) -> str:
    return f"{RPMS_DIR}/{header.name}-{header.version}-{header.release}.{header.arch}.rpm"


def _recipe_text(request: PluginBuildRequest, plugin_names: list[str], shipped: set[str],
                 image_names: set[str]) -> str:
    if not request.recipe:
        return generate_recipe(plugin_names, request.name)
    text = read_recipe_text(request.recipe)  # bounded: a device or a huge file is refused, not read whole
    recipe = parse_recipe(text, source=request.recipe)
    check_recipe_repos(recipe, request.recipe)
    unknown = [name for name in recipe.packages if name not in shipped and name not in image_names]
    if unknown:
        raise NodePluginError(f"%packages names {', '.join(unknown)}, which neither the plugin nor the image has",
                              path=request.recipe, hint="give the RPM (--rpm) or fix the name")
    return text


def _output_path(request: PluginBuildRequest) -> str:
    output = request.output
    if not output:
        raise NodePluginError("no output given", hint="give a file or a folder for the plugin")
    if os.path.isdir(output) or output.endswith("/"):
        output = os.path.join(output, plugin_file_name(request.name, request.version))
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise NodePluginError("the output folder does not exist", path=folder, hint="create it first")
    return os.path.abspath(output)


def _existing(path: str) -> PluginArchive | None:
    if not os.path.isfile(path):
        return None
    try:
        return open_plugin(path)
    except NodePluginError:
        return None


def _gpg_env(request: PluginBuildRequest) -> dict[str, str] | None:
    return {"GNUPGHOME": request.gnupg_home} if request.gnupg_home else None


def _signing_fingerprints(request: PluginBuildRequest, sign_key: str) -> set[str]:
    listing = run(["gpg", "--batch", "--no-tty", "--with-colons", "--list-secret-keys", sign_key],
                  env=_gpg_env(request), check=False)
    fingerprints = {line.split(":")[9].lower() for line in listing.stdout.decode().splitlines()
                    if line.startswith("fpr:")}
    if listing.returncode != 0 or not fingerprints:
        raise NodePluginError(f"no secret key '{sign_key}' to sign with",
                              hint="check the key id (gpg --list-secret-keys) and the GnuPG home")
    return fingerprints


def _signature_valid(request: PluginBuildRequest, signature: bytes, data: bytes, fingerprints: set[str]) -> bool:
    with tempfile.TemporaryDirectory(prefix="ovirt-plugin-sig-", dir=run_dir()) as scratch:
        signature_file, data_file = os.path.join(scratch, "s.asc"), os.path.join(scratch, "d")
        with open(signature_file, "wb") as handle:
            handle.write(signature)
        with open(data_file, "wb") as handle:
            handle.write(data)
        result = run(["gpg", "--batch", "--no-tty", "--status-fd", "1", "--verify", signature_file, data_file],
                     env=_gpg_env(request), check=False)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] VALIDSIG "):
            fields = line.split()
            return result.returncode == 0 and bool({fields[2].lower(), fields[-1].lower()} & fingerprints)
    return False


def _sign(request: PluginBuildRequest, sign_key: str, manifest_bytes: bytes) -> bytes:
    return sign_detached(manifest_bytes, sign_key, gnupg_home=request.gnupg_home)


def build_plugin(request: PluginBuildRequest) -> PluginBuildResult:
    """Make (or, in check mode, plan) the plugin tarball; raise NodePluginError with an actionable message."""
    _validate(request)
    timer = StageTimer()
    output = _output_path(request)
    workdir = tempfile.mkdtemp(prefix="ovirt-plugin-build-", dir=run_dir())
    try:
        with timer.stage("read packages"):
            plugin_headers = _headers(request.rpms)
            image = image_packages(request, workdir)
        with timer.stage("resolve dependencies"):
            # An ISO's database lists every file; a package list may not (then file requirements are assumed met).
            resolution = resolve_closure([header.path for header in plugin_headers], request.repos, image,
                                         download_dir=workdir,
                                         assume_image_files=None if request.target_packages else False)
            headers = {header.path: header for header in plugin_headers}
            for package in resolution.packages:
                if package.path not in headers:
                    headers[package.path] = read_header(package.path)
        shipped = [(package, headers[package.path]) for package in resolution.packages]
        shipped_headers = [header for _package, header in shipped]
        with timer.stage("check packages"):
            check_paths(shipped_headers, allowed_paths(request.kind, request.allow_paths))
            if request.keyring:
                check_signatures(shipped_headers, request.keyring)
        recipe_text = _recipe_text(request, [header.name for header in plugin_headers],
                                   {header.name for header in shipped_headers}, {package.name for package in image})
        check_persist_paths(request.name, request.persist, shipped_headers,
                            [script.body for script in parse_recipe(recipe_text).scripts if script.kind == "post"])
        with timer.stage("digest packages"):
            entries, members = [], []
            for package, header in shipped:
                entry = PackageEntry(file=_member_name(header), name=header.name, nevra=header.nevra,
                                     size=os.path.getsize(header.path), sha256=file_sha256(header.path),
                                     role=package.role, signed=header.signed, key_id=header.key_id)
                entries.append(entry)
                members.append(Member(entry.file, source=header.path))
        recipe_bytes = recipe_text.encode("utf-8")
        manifest = PluginManifest(
            name=request.name, version=request.version, vendor=request.vendor, summary=request.summary,
            node=NodeCompat(product=request.node_product, versions=str(parse_range(request.node_versions))),
            packages=tuple(entries), recipe=RecipeEntry(RECIPE, hashlib.sha256(recipe_bytes).hexdigest()),
            created=created_now(), kind=request.kind, persist=tuple(sorted(set(request.persist))),
            allowed_path_overrides=tuple(sorted(set(request.allow_paths))))
        existing = _existing(output)
        if existing is not None and source_date_epoch() is None:
            # The same contents packed again keep their first creation time (idempotent without SOURCE_DATE_EPOCH).
            same_time = PluginManifest(**{**manifest.__dict__, "created": existing.manifest.created})
            if same_time.to_bytes() == existing.manifest_bytes:
                manifest = same_time
        manifest_bytes = manifest.to_bytes()
        validate_manifest(manifest.to_dict(), where=f"{output}: {MANIFEST}")
        members += [Member(MANIFEST, data=manifest_bytes), Member(RECIPE, data=recipe_bytes)]
        mtime = source_date_epoch() or 0
        signature = None
        with timer.stage("sign"):
            if request.sign_key:
                fingerprints = _signing_fingerprints(request, request.sign_key)
                if existing is not None and existing.signature is not None and \
                        existing.manifest_bytes == manifest_bytes and \
                        _signature_valid(request, existing.signature, manifest_bytes, fingerprints):
                    signature = existing.signature
                elif not request.check_mode:
                    signature = _sign(request, request.sign_key, manifest_bytes)
        unknown_signature = bool(request.sign_key) and signature is None
        if signature is not None:
            members.append(Member(SIGNATURE, data=signature))
        with timer.stage("write"):
            if existing is not None and existing.manifest_bytes == manifest_bytes and \
                    existing.signature == signature and existing.members_mtime == mtime:
                # Every member of the existing plugin was verified against this very manifest: same content,
                # so nothing to write (and no need to compress it all again to find out).
                sha256, size, changed = existing.sha256, existing.size, False
            elif request.check_mode:
                if unknown_signature:
                    sha256, size, changed = None, None, True
                else:
                    sha256, size = tarball_digest(members, mtime)
                    changed = existing is None or existing.sha256 != sha256
            else:
                written = write_tarball(output, members, mtime)
                sha256, size, changed = written.sha256, written.size, written.changed
        packages = [{"name": entry.name, "nevra": entry.nevra, "role": entry.role, "file": entry.file,
                     "size": entry.size, "sha256": entry.sha256, "signed": entry.signed, "key_id": entry.key_id}
                    for entry in entries]
        return PluginBuildResult(path=output, sha256=sha256, size=size, changed=changed, packages=packages,
                                 manifest=manifest.to_dict(), satisfied_by_image=resolution.satisfied_by_image,
                                 durations=timer.durations)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
