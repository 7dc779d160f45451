# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each platform family keeps the tools and files this collection runs: one table per family.

Debian (and Ubuntu) and EL/Fedora name the same things differently: ``grub-mkimage`` is
``grub2-mkimage``, QEMU may be ``/usr/libexec/qemu-kvm``, pxelinux sits in ``/usr/lib/PXELINUX`` or
``/usr/share/syslinux``, OVMF is one ``OVMF.fd`` or an edk2 code and variables pair. A lookup tries
the candidates of the running platform's family first, then those of the other family (a path that
exists works wherever it comes from), and a miss names the package to install on the platform in
use. The family comes from ``/etc/os-release`` (``ID`` and ``ID_LIKE``); ``OVIRT_NODE_PLUGINS_PLATFORM``
(``debian`` or ``el``) overrides it.

No imports beyond the standard library and _errors: module argument specs and the command line
read this before any optional library is known to be installed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Mapping

from ._errors import NodePluginError

SETTING = "OVIRT_NODE_PLUGINS_PLATFORM"
OS_RELEASE = "/etc/os-release"
# Where a tool may sit besides PATH: root's sbin folders, and EL's libexec for qemu-kvm.
_EXTRA_PATH = "/usr/sbin:/sbin"


@dataclasses.dataclass(frozen=True)
class Provided:
    """A tool (command names or absolute paths) or a file (absolute paths) and the package holding it."""

    candidates: tuple[str, ...]
    package: str


@dataclasses.dataclass(frozen=True)
class UefiFirmware:
    """OVMF for QEMU: one combined image for ``-bios``, or read-only code plus a variable store as pflash."""

    code: str
    variables: str | None = None
    package: str = ""

    def qemu_args(self) -> list[str]:
        """QEMU arguments that boot this firmware; guest writes to the variable store are thrown away."""
        if self.variables is None:
            return ["-bios", self.code]
        return ["-drive", f"if=pflash,format={_image_format(self.code)},unit=0,readonly=on,file={self.code}",
                "-drive", f"if=pflash,format={_image_format(self.variables)},unit=1,snapshot=on,file={self.variables}"]


def _image_format(path: str) -> str:
    return "qcow2" if path.endswith(".qcow2") else "raw"


@dataclasses.dataclass(frozen=True)
class PlatformFamily:
    """A family of distributions that name packages, tools and files alike."""

    name: str
    label: str
    os_ids: frozenset[str]
    tools: Mapping[str, Provided]
    files: Mapping[str, Provided]
    uefi_firmware: tuple[UefiFirmware, ...]
    # The package names this collection uses on the family (the tables above, meta/ee-bindep.txt, bindep.txt),
    # each checked to exist in the package index of the family's reference release.
    reference_release: str = ""
    known_packages: frozenset[str] = frozenset()

    def package_of(self, name: str) -> str | None:
        """The package that provides the tool or file ``name`` on this family, if the table knows it."""
        entry = self.tools.get(name) or self.files.get(name)
        return entry.package if entry else None


def _same(package: str, *tools: str) -> dict[str, Provided]:
    return {tool: Provided((tool,), package) for tool in tools}


_COMMON_TOOLS = ("xorriso", "cpio")
_SQUASHFS = ("mksquashfs", "unsquashfs")
_ISOMD5 = ("implantisomd5", "checkisomd5")
_MTOOLS = ("mcopy", "mtype", "mdir", "mformat", "mmd")
_E2FSPROGS = ("mke2fs", "e2fsck", "resize2fs", "debugfs", "dumpe2fs")
_RPM = ("rpm", "rpmkeys")

DEBIAN = PlatformFamily(
    name="debian",
    label="Debian/Ubuntu",
    os_ids=frozenset({"debian", "ubuntu"}),
    tools={
        **{tool: Provided((tool,), tool) for tool in _COMMON_TOOLS},
        **_same("squashfs-tools", *_SQUASHFS),
        **_same("isomd5sum", *_ISOMD5),
        **_same("mtools", *_MTOOLS),
        **_same("e2fsprogs", *_E2FSPROGS),
        **_same("rpm", *_RPM, "rpmbuild"),
        "createrepo_c": Provided(("createrepo_c",), "createrepo-c"),
        "gpg": Provided(("gpg",), "gnupg"),
        "qemu-system-x86_64": Provided(("qemu-system-x86_64",), "qemu-system-x86"),
        **_same("qemu-utils", "qemu-img", "qemu-io", "qemu-nbd"),
        "grub-mkimage": Provided(("grub-mkimage",), "grub-common"),
        "grub-script-check": Provided(("grub-script-check",), "grub-common"),
        "grub-mkstandalone": Provided(("grub-mkstandalone",), "grub-common"),
        "busybox": Provided(("busybox",), "busybox-static"),
        "dracut": Provided(("dracut",), "dracut-core"),
        "ssh": Provided(("ssh",), "openssh-client"),
        "scp": Provided(("scp",), "openssh-client"),
        "tftp": Provided(("tftp",), "tftp-hpa"),
    },
    files={
        "pxelinux.0": Provided(("/usr/lib/PXELINUX/pxelinux.0",), "pxelinux"),
        "ldlinux.c32": Provided(("/usr/lib/syslinux/modules/bios/ldlinux.c32",), "syslinux-common"),
        "isohdpfx.bin": Provided(("/usr/lib/ISOLINUX/isohdpfx.bin",), "isolinux"),
        "grub-x86_64-efi": Provided(("/usr/lib/grub/x86_64-efi",), "grub-efi-amd64-bin"),
        "ovmf": Provided(("/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE.fd"), "ovmf"),
    },
    uefi_firmware=(
        UefiFirmware("/usr/share/ovmf/OVMF.fd", package="ovmf"),
        UefiFirmware("/usr/share/qemu/OVMF.fd", package="ovmf"),
        UefiFirmware("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd", package="ovmf"),
        UefiFirmware("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", package="ovmf"),
    ),
    reference_release="Debian 12 (bookworm)",
    known_packages=frozenset({
        "python3-venv", "python3-dev", "python3-guestfs", "python3-rpm", "python3-solv", "python3-lzo",
        "libguestfs-tools", "linux-image-amd64", "rpm", "gnupg", "xorriso", "squashfs-tools", "isomd5sum", "mtools",
        "e2fsprogs", "cpio", "busybox-static", "pxelinux", "syslinux-common", "syslinux-utils", "isolinux",
        "grub-common", "grub-efi-amd64-bin", "grub-pc-bin", "qemu-system-x86", "qemu-utils", "ovmf",
        "openssh-client", "openssh-server", "openssh-sftp-server", "tftp-hpa", "tftpd-hpa", "createrepo-c",
        "dracut-core", "dracut-live", "file", "zstd", "xz-utils", "bzip2", "db5.3-util", "iproute2", "nginx-light",
        "curl", "dnsmasq-base",
    }),
)

EL = PlatformFamily(
    name="el",
    label="EL/Fedora",
    os_ids=frozenset({"fedora", "rhel", "centos", "rocky", "almalinux", "ol", "circle", "eurolinux"}),
    tools={
        **{tool: Provided((tool,), tool) for tool in _COMMON_TOOLS},
        **_same("squashfs-tools", *_SQUASHFS),
        **_same("isomd5sum", *_ISOMD5),
        **_same("mtools", *_MTOOLS),
        **_same("e2fsprogs", *_E2FSPROGS),
        **_same("rpm", *_RPM),
        "rpmbuild": Provided(("rpmbuild",), "rpm-build"),
        "createrepo_c": Provided(("createrepo_c",), "createrepo_c"),
        "gpg": Provided(("gpg", "gpg2"), "gnupg2"),
        # Fedora's qemu-kvm pulls qemu-system-x86_64; EL's qemu-kvm is /usr/libexec/qemu-kvm (KVM only, no TCG).
        "qemu-system-x86_64": Provided(("qemu-system-x86_64", "/usr/libexec/qemu-kvm"), "qemu-kvm"),
        **_same("qemu-img", "qemu-img", "qemu-io", "qemu-nbd"),
        "grub-mkimage": Provided(("grub2-mkimage", "grub-mkimage"), "grub2-tools"),
        "grub-script-check": Provided(("grub2-script-check", "grub-script-check"), "grub2-tools"),
        "grub-mkstandalone": Provided(("grub2-mkstandalone", "grub-mkstandalone"), "grub2-tools-extra"),
        "busybox": Provided(("busybox",), "busybox"),
        "dracut": Provided(("dracut",), "dracut"),
        "ssh": Provided(("ssh",), "openssh-clients"),
        "scp": Provided(("scp",), "openssh-clients"),
        "tftp": Provided(("tftp",), "tftp"),
    },
    files={
        "pxelinux.0": Provided(("/usr/share/syslinux/pxelinux.0",), "syslinux-nonlinux"),
        "ldlinux.c32": Provided(("/usr/share/syslinux/ldlinux.c32",), "syslinux-nonlinux"),
        "isohdpfx.bin": Provided(("/usr/share/syslinux/isohdpfx.bin",), "syslinux-nonlinux"),
        "grub-x86_64-efi": Provided(("/usr/lib/grub/x86_64-efi",), "grub2-efi-x64-modules"),
        "ovmf": Provided(("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_CODE.fd"), "edk2-ovmf"),
    },
    uefi_firmware=(
        UefiFirmware("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd", package="edk2-ovmf"),
        UefiFirmware("/usr/share/edk2/ovmf/OVMF_CODE_4M.qcow2", "/usr/share/edk2/ovmf/OVMF_VARS_4M.qcow2",
                     package="edk2-ovmf"),
        UefiFirmware("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd", package="edk2-ovmf"),
    ),
    # The base of the execution environment (execution-environment.yml); EL 9 and 10 name these alike.
    reference_release="Fedora 42",
    known_packages=frozenset({
        "python3", "python3-devel", "python3-libguestfs", "python3-rpm", "python3-solv", "python3-lzo", "libguestfs",
        "kernel-core", "rpm", "rpm-build", "gnupg2", "xorriso", "squashfs-tools", "isomd5sum", "mtools", "e2fsprogs",
        "cpio", "busybox", "syslinux-nonlinux", "grub2-tools", "grub2-tools-extra", "grub2-efi-x64-modules",
        "qemu-kvm", "qemu-img", "edk2-ovmf", "openssh-clients", "tftp", "createrepo_c", "dracut",
    }),
)

FAMILIES: tuple[PlatformFamily, ...] = (DEBIAN, EL)


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of an os-release file, quotes removed."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            fields[key] = value.strip().strip("\"'")
    return fields


def family_of(os_release: Mapping[str, str]) -> PlatformFamily | None:
    """The family of the distribution an os-release describes (its ID, else one of its ID_LIKE), or None."""
    ids = [os_release.get("ID", "").lower()] + os_release.get("ID_LIKE", "").lower().split()
    for os_id in ids:
        for family in FAMILIES:
            if os_id in family.os_ids:
                return family
    return None


def family_named(name: str) -> PlatformFamily:
    """The family called ``name`` (``debian`` or ``el``), or raise naming the choices."""
    for family in FAMILIES:
        if family.name == name.strip().lower():
            return family
    raise NodePluginError(f"{SETTING}={name[:40]!r} names no platform family",
                          hint=f"use one of {', '.join(family.name for family in FAMILIES)}, or unset it")


@functools.lru_cache(maxsize=1)
def _detected_family() -> PlatformFamily | None:
    try:
        with open(OS_RELEASE, encoding="utf-8", errors="replace") as handle:
            return family_of(parse_os_release(handle.read(65536)))
    except OSError:
        return None


def current_family() -> PlatformFamily | None:
    """The family of the running system (the setting, else /etc/os-release), or None when unknown."""
    setting = os.environ.get(SETTING, "").strip()
    return family_named(setting) if setting else _detected_family()


def _search_order(family: PlatformFamily | None) -> list[PlatformFamily]:
    return ([family] if family else []) + [other for other in FAMILIES if other is not family]


def _install_hint(name: str, family: PlatformFamily | None) -> str:
    if family is not None:
        return f"install the package '{family.package_of(name) or name}' ({family.label})"
    choices = [f"'{other.package_of(name)}' on {other.label}" for other in FAMILIES if other.package_of(name)]
    if not choices:
        return f"install the package '{name}'"
    return "install the package that provides it: " + " or ".join(choices)


def _root_path(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root != "/" else path


def find_tool(name: str, family: PlatformFamily | None = None, *, search_path: str | None = None,
              root: str = "/") -> str:
    """The absolute path of the tool ``name`` (its Debian command name) on this platform, or raise naming
    the package that provides it. ``family`` defaults to the running system's; ``search_path`` to PATH."""
    family = family if family is not None else current_family()
    path = search_path if search_path is not None else os.environ.get("PATH", os.defpath)
    path = f"{path}:{_EXTRA_PATH}" if path else _EXTRA_PATH
    candidates = [candidate for each in _search_order(family) if name in each.tools
                  for candidate in each.tools[name].candidates] or [name]
    for candidate in dict.fromkeys(candidates):
        if os.path.isabs(candidate):
            located = _root_path(root, candidate)
            if os.path.isfile(located) and os.access(located, os.X_OK):
                return located
            continue
        found = shutil.which(candidate, path=path)
        if found:
            return found
    raise NodePluginError(f"the tool '{name}' is not installed", hint=_install_hint(name, family))


def find_file(name: str, family: PlatformFamily | None = None, *, root: str = "/") -> str:
    """The absolute path of the file or folder ``name`` of the table (``pxelinux.0``, ``ldlinux.c32``,
    ``isohdpfx.bin``, ``grub-x86_64-efi``), or raise naming the package that provides it."""
    family = family if family is not None else current_family()
    known = [each for each in _search_order(family) if name in each.files]
    if not known:
        raise NodePluginError(f"no platform knows where '{name}' is", hint="this is a bug of ovirt.node_plugins")
    tried = []
    for candidate in dict.fromkeys(path for each in known for path in each.files[name].candidates):
        located = _root_path(root, candidate)
        if os.path.exists(located):
            return located
        tried.append(candidate)
    raise NodePluginError(f"'{name}' is not installed (looked in {', '.join(tried)})",
                          hint=_install_hint(name, family))


def find_uefi_firmware(family: PlatformFamily | None = None, *, root: str = "/") -> UefiFirmware:
    """The OVMF firmware of this platform: a combined image or a code and variables pair, or raise naming the package."""
    family = family if family is not None else current_family()
    tried = []
    for firmware in (firmware for each in _search_order(family) for firmware in each.uefi_firmware):
        code = _root_path(root, firmware.code)
        variables = _root_path(root, firmware.variables) if firmware.variables else None
        if os.path.isfile(code) and (variables is None or os.path.isfile(variables)):
            return UefiFirmware(code, variables, firmware.package)
        tried.append(firmware.code)
    raise NodePluginError("no UEFI firmware (OVMF) is installed (looked for " + ", ".join(dict.fromkeys(tried)) + ")",
                          hint=_install_hint("ovmf", family))


def packages(family: PlatformFamily) -> list[str]:
    """Every package the family's table names, sorted."""
    return sorted({entry.package for entry in (*family.tools.values(), *family.files.values())}
                  | {firmware.package for firmware in family.uefi_firmware})
