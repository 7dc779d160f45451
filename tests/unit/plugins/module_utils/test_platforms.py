# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tool and file lookup per platform family (Debian, EL/Fedora) on fake roots laid out like each family."""
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _platforms
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._platforms import (
    DEBIAN, EL, UefiFirmware, current_family, family_of, find_file, find_tool, find_uefi_firmware, parse_os_release)

OS_RELEASES = {
    "debian": ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n', DEBIAN),
    "ubuntu": ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n', DEBIAN),
    "fedora": ('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=42\n', EL),
    "centos": ('NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\n', EL),
    "rocky": ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n', EL),
    "almalinux": ('ID="almalinux"\nID_LIKE="rhel centos fedora"\n', EL),
    "arch": ('NAME="Arch Linux"\nID=arch\n', None),
}


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_family_from_os_release(name):
    text, family = OS_RELEASES[name]
    assert family_of(parse_os_release(text)) is family


def test_this_machine_is_debian():
    assert current_family() is DEBIAN


def test_the_setting_overrides_detection(monkeypatch):
    monkeypatch.setenv(_platforms.SETTING, "el")
    assert current_family() is EL
    monkeypatch.setenv(_platforms.SETTING, "suse")
    with pytest.raises(NodePluginError, match="names no platform family"):
        current_family()


def _tool(folder, name: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(path, 0o755)
    return path


def _file(root, relative: str) -> str:
    path = os.path.join(root, relative.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"\0")
    return path


@pytest.mark.parametrize("family, command", [(DEBIAN, "grub-mkimage"), (EL, "grub2-mkimage")])
def test_grub_tools_by_their_platform_names(tmp_path, family, command):
    made = _tool(tmp_path / "bin", command)
    assert find_tool("grub-mkimage", family, search_path=str(tmp_path / "bin"), root=str(tmp_path)) == made


def test_qemu_of_el_is_found_in_libexec(tmp_path):
    made = _tool(tmp_path / "usr" / "libexec", "qemu-kvm")
    assert find_tool("qemu-system-x86_64", EL, search_path=str(tmp_path / "empty"), root=str(tmp_path)) == made


def test_a_debian_name_is_found_on_el_too(tmp_path):
    """An EL host with a tool by its Debian name (a local build) is not refused."""
    made = _tool(tmp_path / "bin", "grub-script-check")
    assert find_tool("grub-script-check", EL, search_path=str(tmp_path / "bin"), root=str(tmp_path)) == made


@pytest.mark.parametrize("tool, family, package", [
    ("qemu-img", DEBIAN, "qemu-utils"), ("qemu-img", EL, "qemu-img"),
    ("qemu-system-x86_64", DEBIAN, "qemu-system-x86"), ("qemu-system-x86_64", EL, "qemu-kvm"),
    ("grub-mkimage", DEBIAN, "grub-common"), ("grub-mkimage", EL, "grub2-tools"),
    ("grub-script-check", EL, "grub2-tools"), ("gpg", EL, "gnupg2"),
    ("busybox", DEBIAN, "busybox-static"), ("busybox", EL, "busybox"), ("tftp", EL, "tftp"),
])
def test_a_missing_tool_names_the_package_of_the_platform(tmp_path, tool, family, package):
    with pytest.raises(NodePluginError) as caught:
        find_tool(tool, family, search_path=str(tmp_path), root=str(tmp_path))
    assert f"the tool '{tool}' is not installed" in str(caught.value)
    assert f"install the package '{package}' ({family.label})" in str(caught.value)


def test_an_unknown_platform_names_both_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(_platforms, "current_family", lambda: None)
    with pytest.raises(NodePluginError) as caught:
        find_tool("qemu-img", search_path=str(tmp_path), root=str(tmp_path))
    assert "'qemu-utils' on Debian/Ubuntu or 'qemu-img' on EL/Fedora" in str(caught.value)


def test_a_tool_outside_the_table_names_itself(tmp_path):
    with pytest.raises(NodePluginError, match="install the package 'surely-not-a-tool'"):
        find_tool("surely-not-a-tool", DEBIAN, search_path=str(tmp_path), root=str(tmp_path))


@pytest.mark.parametrize("family, layout", [
    (DEBIAN, {"pxelinux.0": "/usr/lib/PXELINUX/pxelinux.0",
              "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32",
              "isohdpfx.bin": "/usr/lib/ISOLINUX/isohdpfx.bin"}),
    (EL, {"pxelinux.0": "/usr/share/syslinux/pxelinux.0", "ldlinux.c32": "/usr/share/syslinux/ldlinux.c32",
          "isohdpfx.bin": "/usr/share/syslinux/isohdpfx.bin"}),
])
def test_loaders_and_the_hybrid_mbr_where_each_family_keeps_them(tmp_path, family, layout):
    for name, path in layout.items():
        made = _file(tmp_path, path)
        assert find_file(name, family, root=str(tmp_path)) == made


def test_the_grub_module_folder(tmp_path):
    folder = tmp_path / "usr" / "lib" / "grub" / "x86_64-efi"
    folder.mkdir(parents=True)
    assert find_file("grub-x86_64-efi", EL, root=str(tmp_path)) == str(folder)


@pytest.mark.parametrize("name, family, package", [
    ("pxelinux.0", DEBIAN, "pxelinux"), ("pxelinux.0", EL, "syslinux-nonlinux"),
    ("ldlinux.c32", DEBIAN, "syslinux-common"), ("grub-x86_64-efi", DEBIAN, "grub-efi-amd64-bin"),
    ("grub-x86_64-efi", EL, "grub2-efi-x64-modules"), ("isohdpfx.bin", DEBIAN, "isolinux"),
])
def test_a_missing_file_names_the_package_of_the_platform(tmp_path, name, family, package):
    with pytest.raises(NodePluginError) as caught:
        find_file(name, family, root=str(tmp_path))
    assert f"'{name}' is not installed" in str(caught.value)
    assert f"install the package '{package}' ({family.label})" in str(caught.value)


def test_ovmf_of_debian_is_one_image_for_bios(tmp_path):
    code = _file(tmp_path, "/usr/share/ovmf/OVMF.fd")
    firmware = find_uefi_firmware(DEBIAN, root=str(tmp_path))
    assert firmware == UefiFirmware(code, None, "ovmf")
    assert firmware.qemu_args() == ["-bios", code]


def test_ovmf_of_el_is_a_code_and_variables_pair(tmp_path):
    code = _file(tmp_path, "/usr/share/edk2/ovmf/OVMF_CODE.fd")
    variables = _file(tmp_path, "/usr/share/edk2/ovmf/OVMF_VARS.fd")
    firmware = find_uefi_firmware(EL, root=str(tmp_path))
    assert (firmware.code, firmware.variables) == (code, variables)
    assert firmware.qemu_args() == [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,snapshot=on,file={variables}"]


def test_ovmf_code_without_its_variables_is_not_enough(tmp_path):
    _file(tmp_path, "/usr/share/edk2/ovmf/OVMF_CODE.fd")
    with pytest.raises(NodePluginError, match=r"install the package 'edk2-ovmf' \(EL/Fedora\)"):
        find_uefi_firmware(EL, root=str(tmp_path))


def test_this_machine_finds_every_tool_and_file_the_library_runs():
    """make setup installs what the Debian table names (bindep.txt, meta/ee-bindep.txt)."""
    for tool in ("xorriso", "mksquashfs", "unsquashfs", "mcopy", "mdir", "mke2fs", "rpm", "rpmkeys", "gpg",
                 "qemu-system-x86_64", "qemu-img", "grub-mkimage", "grub-script-check", "cpio", "busybox"):
        assert os.path.isabs(find_tool(tool))
    for name in ("pxelinux.0", "ldlinux.c32", "isohdpfx.bin", "grub-x86_64-efi"):
        assert os.path.exists(find_file(name))
    assert os.path.isfile(find_uefi_firmware().code)
