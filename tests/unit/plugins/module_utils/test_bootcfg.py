# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot config edits against golden files (data/bootcfg/<case>.in -> <case>.out) and efiboot.img."""
from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _bootcfg as bootcfg
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.plugins.module_utils import isohelpers

DATA = os.path.join(os.path.dirname(__file__), "data", "bootcfg")

# case -> (format, operation); the operation is either ("args", words) or ("label", old, new).
CASES = {
    "isolinux_node": (bootcfg.ISOLINUX, ("args", ["console=ttyS0", "!quiet", "!rhgb", "plugin.test=1"])),
    "isolinux_odd": (bootcfg.ISOLINUX, ("args", ["!console", "!quiet", "nomodeset"])),
    "grub_node": (bootcfg.GRUB, ("args", ["console=ttyS0", "!quiet"])),
    "grub_odd": (bootcfg.GRUB, ("args", ["!console=tty0", "rd.debug", "!quiet"])),
    "bootx64_legacy": (bootcfg.GRUB_LEGACY, ("args", ["!rhgb", "!check", "console=ttyS0,115200"])),
    "label_isolinux_node": (bootcfg.ISOLINUX, ("label", "ovirt-node-iso-2.5.0-1.0.fc17", "ovirt-node-iso-2.5.0-1.0.fc17-ed")),
    "label_isolinux_space": (bootcfg.ISOLINUX, ("label", "Node ISO", "Edited Node")),
    "label_grub_space": (bootcfg.GRUB, ("label", "Node ISO", "Node ISO 2")),
    "label_grub_node": (bootcfg.GRUB, ("label", "ovirt-node-iso-4.4.10-2022", "my node")),
}


# Configs written on Windows: the repository keeps text files with LF endings (ansible-test's
# line-endings rule), so these goldens are turned into CRLF when read, input and output alike.
CRLF_CASES = {"grub_odd", "isolinux_odd", "label_grub_space", "label_isolinux_space"}


def _read(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8", newline="") as handle:
        text = handle.read()
    assert "\r" not in text, f"{name}: keep golden files with LF endings (see CRLF_CASES)"
    return text.replace("\n", "\r\n") if name.rsplit(".", 1)[0] in CRLF_CASES else text


def _apply(text: str, fmt: str, operation: tuple) -> bootcfg.ConfigEdit:
    if operation[0] == "args":
        return bootcfg.edit_kernel_args(text, fmt, bootcfg.KernelArgEdits.parse(operation[1]))
    return bootcfg.replace_volume_label(text, fmt, operation[1], operation[2])


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    fmt, operation = CASES[case]
    edit = _apply(_read(f"{case}.in"), fmt, operation)
    if os.environ.get("REGENERATE_GOLDEN"):
        # Goldens are stored with LF endings; _read turns the CRLF cases back into CRLF.
        with open(os.path.join(DATA, f"{case}.out"), "w", encoding="utf-8", newline="") as handle:
            handle.write(edit.text.replace("\r\n", "\n") if case in CRLF_CASES else edit.text)
    assert edit.text == _read(f"{case}.out")
    assert edit.changes
    # Applying the same edit again changes nothing: the edit is idempotent.
    if operation[0] == "args" or operation[1] not in operation[2]:
        again = _apply(edit.text, fmt, operation)
        assert again.text == edit.text and again.changes == []


def test_every_golden_input_has_a_case():
    inputs = {name[:-3] for name in os.listdir(DATA) if name.endswith(".in")}
    assert inputs == set(CASES)


def test_crlf_and_tabs_survive():
    text = _read("isolinux_odd.in")
    edit = bootcfg.edit_kernel_args(text, bootcfg.ISOLINUX, bootcfg.KernelArgEdits(add=("x=1",)))
    assert edit.text.count("\r\n") == text.count("\r\n")
    assert "\tAPPEND\tinitrd=initrd0.img  root=" in edit.text
    # The commented line and the quoted argument are untouched.
    assert "  # append console=ttyS1 (commented, kept)\r\n" in edit.text
    assert 'inst.ks="hd:LABEL=my disk:/ks.cfg" x=1' in edit.text


def test_remove_by_name_with_and_without_value():
    edit = bootcfg.edit_kernel_args("append console console=ttyS0 consoleblank=0 quiet\n", bootcfg.ISOLINUX,
                                    bootcfg.KernelArgEdits(remove=("console",)))
    assert edit.text == "append consoleblank=0 quiet\n"
    assert edit.changes == ["line 1: removed 'console', removed 'console=ttyS0'"]


def test_remove_first_word_keeps_separation():
    edit = bootcfg.edit_kernel_args("  append quiet root=x\n", bootcfg.ISOLINUX, bootcfg.KernelArgEdits(remove=("quiet",)))
    assert edit.text == "  append root=x\n"


def test_add_existing_word_is_not_duplicated():
    edit = bootcfg.edit_kernel_args("append quiet\n", bootcfg.ISOLINUX, bootcfg.KernelArgEdits(add=("quiet",)))
    assert not edit.changed and edit.text == "append quiet\n"


def test_invalid_argument_refused():
    with pytest.raises(NodePluginError, match="invalid kernel argument"):
        bootcfg.KernelArgEdits(add=("a b",))
    with pytest.raises(NodePluginError, match="'!' alone"):
        bootcfg.KernelArgEdits.parse(["!"])


def test_one_removal_policy_for_configs_and_menus():
    """!console=ttyS0 removes console="ttyS0" from a config line and from a PXE word list alike."""
    edits = bootcfg.KernelArgEdits.parse(["!console=ttyS0", "a=1"])
    edit = bootcfg.edit_kernel_args('append quiet console="ttyS0" ro\n', bootcfg.ISOLINUX, edits)
    assert edit.text == "append quiet ro a=1\n"
    assert edits.apply(["quiet", 'console="ttyS0"', "ro"]) == ["quiet", "ro", "a=1"]
    assert edits.words() == ["a=1", "!console=ttyS0"]
    assert not bootcfg.KernelArgEdits() and edits.then(bootcfg.KernelArgEdits.parse(["!ro"])).remove == (
        "console=ttyS0", "ro")


def test_list_isolinux_entries():
    entries = bootcfg.list_entries(_read("isolinux_node.in"), bootcfg.ISOLINUX)
    assert [e.label for e in entries] == ["start", "check0", "uninstall", "memtest", "local"]
    start = entries[0]
    assert start.default and start.title == "Boot" and start.kernel == "vmlinuz0"
    assert start.initrd == "initrd0.img"
    assert start.kernel_args[:2] == ["initrd=initrd0.img", "root=live:CDLABEL=ovirt-node-iso-2.5.0-1.0.fc17"]
    assert entries[1].kernel_args[-1] == "rd.live.check" and not entries[1].default


def test_list_isolinux_odd_entries():
    entries = bootcfg.list_entries(_read("isolinux_odd.in"), bootcfg.ISOLINUX)
    assert [e.label for e in entries] == ["linux", "rescue", "bare"]
    assert entries[0].default and entries[0].title == "Linux (tabs, upper case)"
    assert entries[0].kernel_args[-1] == 'inst.ks="hd:LABEL=my disk:/ks.cfg"'
    assert entries[2].kernel_args == []


def test_list_grub_entries():
    entries = bootcfg.list_entries(_read("grub_node.in"), bootcfg.GRUB)
    assert len(entries) == 3 and entries[0].default
    assert entries[0].title == "Install oVirt Node 4.4.10"
    assert entries[0].kernel == "/images/pxeboot/vmlinuz" and entries[0].initrd == "/images/pxeboot/initrd.img"
    assert entries[2].kernel_args == ["inst.stage2=hd:LABEL=ovirt-node-iso-4.4.10-2022", "nomodeset", "quiet"]
    odd = bootcfg.list_entries(_read("grub_odd.in"), bootcfg.GRUB)
    assert [e.default for e in odd] == [False, True]
    assert odd[0].kernel_args[-1] == "inst.ks='hd:LABEL=my disk:/ks.cfg'"
    assert odd[1].kernel == "/isolinux/vmlinuz0" and odd[1].initrd == "/isolinux/initrd0.img"


def test_list_grub_legacy_entries():
    entries = bootcfg.list_entries(_read("bootx64_legacy.in"), bootcfg.GRUB_LEGACY)
    assert [e.default for e in entries] == [True, False]
    assert entries[1].kernel_args[-1] == "rd.live.check" and entries[1].initrd == "/isolinux/initrd0.img"


def test_detect_format():
    assert bootcfg.detect_format("isolinux/isolinux.cfg") == bootcfg.ISOLINUX
    assert bootcfg.detect_format("EFI/BOOT/grub.cfg") == bootcfg.GRUB
    assert bootcfg.detect_format("EFI/BOOT/BOOTX64.conf") == bootcfg.GRUB_LEGACY
    assert bootcfg.detect_format("x/menu.cfg", "label a\n kernel b\n") == bootcfg.ISOLINUX
    with pytest.raises(NodePluginError, match="unknown boot configuration format"):
        bootcfg.detect_format("vmlinuz0")


def test_udev_escape_and_label_checks():
    assert bootcfg.udev_escape("Node ISO/x") == "Node\\x20ISO\\x2fx"
    bootcfg.check_volume_id("a" * 32)
    with pytest.raises(NodePluginError, match="33 characters"):
        bootcfg.check_volume_id("a" * 33)
    with pytest.raises(NodePluginError, match="quote"):
        bootcfg.check_volume_id("it's")
    with pytest.raises(NodePluginError, match="dracut drops the backslash"):
        bootcfg.check_volume_id("Node ISO")
    bootcfg.check_volume_id("Node ISO", boot_safe=False)
    bootcfg.check_volume_id("ovirt-node-iso-2.5.0-1.0.fc17_ed")


def test_label_replacement_respects_word_boundaries():
    text = "append root=live:CDLABEL=node-1 other=node-10 x=prefix-node-1\n"
    edit = bootcfg.replace_volume_label(text, bootcfg.ISOLINUX, "node-1", "node-2")
    assert edit.text == "append root=live:CDLABEL=node-2 other=node-10 x=prefix-node-1\n"


def test_efiboot_read_and_replace(tmp_path):
    image = str(tmp_path / "efiboot.img")
    isohelpers.write_efiboot(image, "menuentry 'a' {\n linuxefi /vmlinuz quiet\n}\n", legacy_conf="title a\n")
    assert bootcfg.efiboot_configs(image) == ["/EFI/BOOT/grub.cfg", "/EFI/BOOT/BOOTX64.conf"]
    assert sorted(bootcfg.efiboot_files(image)) == ["/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/BOOTX64.conf",
                                                    "/EFI/BOOT/grub.cfg"]
    text = bootcfg.read_efiboot_file(image, "/EFI/BOOT/grub.cfg")
    edit = bootcfg.edit_kernel_args(text, bootcfg.GRUB, bootcfg.KernelArgEdits(add=("console=ttyS0",)))
    bootcfg.write_efiboot_file(image, "/EFI/BOOT/grub.cfg", edit.text)
    # Cross-check with mtools' own reader.
    shown = subprocess.run(["mtype", "-i", image, "::/EFI/BOOT/grub.cfg"], check=True, capture_output=True,
                           env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout.decode()
    assert "linuxefi /vmlinuz quiet console=ttyS0" in shown
    assert sorted(os.listdir(tmp_path)) == ["efiboot.img"]


def test_efiboot_missing_file_is_a_clear_error(tmp_path):
    image = str(tmp_path / "efiboot.img")
    isohelpers.write_efiboot(image, "x\n")
    with pytest.raises(NodePluginError, match="cannot read /EFI/BOOT/nothing.cfg inside the EFI boot image"):
        bootcfg.read_efiboot_file(image, "/EFI/BOOT/nothing.cfg")
    with pytest.raises(NodePluginError, match="cannot list the FAT image"):
        bootcfg.efiboot_files(str(tmp_path / "missing.img"))
