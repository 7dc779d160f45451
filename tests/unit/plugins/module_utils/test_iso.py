# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading ISOs with pycdlib and rewriting them with xorriso boot replay, on small real ISOs."""
from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _iso as iso_mod
from ansible_collections.ovirt.node_plugins.plugins.module_utils._bootcfg import KernelArgEdits
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _isomd5 as isomd5
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.plugins.module_utils import isohelpers


@pytest.fixture(name="tiny")
def fixture_tiny():
    return isohelpers.cached_iso()


def test_reader_lists_rock_ridge_names(tiny):
    with iso_mod.IsoReader(tiny.iso) as reader:
        assert reader.name_kind == "rr_path"
        assert reader.volume_id == tiny.volume_id
        assert reader.volume_size == os.path.getsize(tiny.iso)
        paths = [entry.path for entry in reader.files()]
        assert "/isolinux/isolinux.cfg" in paths and "/LiveOS/squashfs.img" in paths
        assert "/EFI/BOOT/BOOTX64.EFI" in paths
        assert reader.size("/isolinux/payload.bin") == 1 << 20
        assert reader.read_text("/isolinux/version") == isohelpers.VERSION_FILE
        assert reader.read_bytes("/isolinux/isolinux.cfg", 7) == b"default"
        assert not reader.exists("/isolinux/nothing")


def test_extract_streams_to_path_and_file_object(tiny, tmp_path):
    target = tmp_path / "payload.bin"
    with iso_mod.IsoReader(tiny.iso) as reader:
        reader.extract("/isolinux/payload.bin", str(target))
        buffer = io.BytesIO()
        reader.extract("/isolinux/isolinux.cfg", buffer)
        with pytest.raises(NodePluginError, match="/nothing is not in the ISO"):
            reader.extract("/nothing", str(tmp_path / "x"))
    with open(os.path.join(tiny.tree, "isolinux", "payload.bin"), "rb") as handle:
        assert target.read_bytes() == handle.read()
    assert buffer.getvalue().decode() == isohelpers.ISOLINUX_CFG


@pytest.mark.parametrize("joliet,kind", [("on", "joliet_path"), ("off", "iso_path")])
def test_reader_falls_back_to_joliet_and_iso9660_names(tmp_path, joliet, kind):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file.txt").write_text("hello\n")
    iso = str(tmp_path / "x.iso")
    subprocess.run(["xorriso", "-no_rc", "-outdev", iso, "-rockridge", "off", "-joliet", joliet, "-map", str(tree), "/"],
                   check=True, stderr=subprocess.DEVNULL)
    with iso_mod.IsoReader(iso) as reader:
        assert reader.name_kind == kind
        names = [entry.path for entry in reader.files()]
        assert names == ["/sub/file.txt"]
        assert reader.read_text("/sub/file.txt") == "hello\n"


def test_not_an_iso(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"x" * 100_000)
    with pytest.raises(NodePluginError, match="not an ISO 9660 image"):
        iso_mod.IsoReader(str(junk))
    with pytest.raises(NodePluginError, match="does not exist"):
        iso_mod.IsoReader(str(tmp_path / "missing.iso"))


def test_truncated_iso(tiny, tmp_path):
    copy = isohelpers.copy_of(tiny, str(tmp_path))
    os.truncate(copy, os.path.getsize(copy) - 4096)
    with pytest.raises(NodePluginError, match="the ISO is truncated"):
        iso_mod.check_complete(copy)


def test_hybrid_and_el_torito(tiny):
    hybrid = iso_mod.read_hybrid(tiny.iso)
    assert hybrid.mbr and hybrid.gpt and hybrid.gpt_partition_count == 2
    assert [p["type"] for p in hybrid.mbr_partitions] == ["0x00", "0xef"]
    records = iso_mod.boot_records(tiny.iso)
    assert [(e.platform, e.path) for e in records.el_torito] == [("BIOS", "/isolinux/isolinux.bin"),
                                                                 ("UEFI", "/isolinux/efiboot.img")]
    assert records.el_torito[0].load_size == 4
    plain = iso_mod.read_hybrid(isohelpers.cached_iso(hybrid=False).iso)
    assert not plain.mbr and not plain.gpt


def test_boot_configs_tree_and_efiboot(tiny):
    configs = {(c.path, c.efiboot): c for c in iso_mod.boot_configs(tiny.iso)}
    assert set(configs) == {("/isolinux/isolinux.cfg", None), ("/EFI/BOOT/grub.cfg", None),
                            ("/EFI/BOOT/grub.cfg", "/isolinux/efiboot.img")}
    assert configs[("/EFI/BOOT/grub.cfg", "/isolinux/efiboot.img")].loader == "efiboot"
    start = configs[("/isolinux/isolinux.cfg", None)].entries[0]
    assert start.default and f"root=live:CDLABEL={tiny.volume_id}" in start.kernel_args


def test_rewrite_edits_configs_keeps_boot_records_and_md5(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    edits = iso_mod.edit_boot_configs(tiny.iso, str(tmp_path / "work"),
                                      KernelArgEdits.parse(["console=ttyS0", "!quiet"]), volume_id="Edited_Node-1.0")
    assert set(edits.replace_files) == {"/isolinux/isolinux.cfg", "/EFI/BOOT/grub.cfg", "/isolinux/efiboot.img"}
    extra = tmp_path / "extra.txt"
    extra.write_text("added\n")
    out = str(tmp_path / "out" / "new.iso")
    os.makedirs(os.path.dirname(out))
    result = iso_mod.rewrite_iso(tiny.iso, out, replace_files=edits.replace_files,
                                 add_files={"/isolinux/update1/extra.txt": str(extra)},
                                 remove=["/isolinux/payload.bin"], make_dirs=["/isolinux/update2/empty"],
                                 volume_id="Edited_Node-1.0", implant=True)
    assert result.volume_id == "Edited_Node-1.0" and result.removed == ["/isolinux/payload.bin"]
    assert os.listdir(os.path.dirname(out)) == ["new.iso"]
    assert iso_mod.lost_boot_records(iso_mod.boot_records(tiny.iso), iso_mod.boot_records(out)) == []
    hybrid = iso_mod.read_hybrid(out)
    assert hybrid.mbr and hybrid.gpt
    with iso_mod.IsoReader(out) as reader:
        assert reader.volume_id == "Edited_Node-1.0"
        assert reader.read_text("/isolinux/update1/extra.txt") == "added\n"
        assert not reader.exists("/isolinux/payload.bin")
        assert reader.exists("/isolinux/update2/empty")
    for config in iso_mod.boot_configs(out):
        for entry in config.entries:
            assert "console=ttyS0" in entry.kernel_args and "quiet" not in entry.kernel_args
            assert "root=live:CDLABEL=Edited_Node-1.0" in entry.kernel_args
    assert subprocess.run(["checkisomd5", out], stdout=subprocess.DEVNULL, check=False).returncode == 0
    assert isomd5.check(out).valid
    # Same inputs and SOURCE_DATE_EPOCH: the same bytes.
    again = str(tmp_path / "out" / "again.iso")
    iso_mod.rewrite_iso(tiny.iso, again, replace_files=edits.replace_files,
                        add_files={"/isolinux/update1/extra.txt": str(extra)},
                        remove=["/isolinux/payload.bin"], make_dirs=["/isolinux/update2/empty"],
                        volume_id="Edited_Node-1.0", implant=True)
    with open(out, "rb") as first, open(again, "rb") as second:
        assert first.read() == second.read()


def test_rewrite_refusals_leave_no_debris(tiny, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "new.iso")
    with pytest.raises(NodePluginError, match="cannot replace /nothing: it is not in the base ISO"):
        iso_mod.rewrite_iso(tiny.iso, out, replace_files={"/nothing": __file__})
    with pytest.raises(NodePluginError, match="already in the base ISO"):
        iso_mod.rewrite_iso(tiny.iso, out, add_files={"/isolinux/version": __file__})
    with pytest.raises(NodePluginError, match="does not exist"):
        iso_mod.rewrite_iso(tiny.iso, out, add_files={"/new": str(tmp_path / "missing")})
    with pytest.raises(NodePluginError, match="33 characters"):
        iso_mod.rewrite_iso(tiny.iso, out, volume_id="x" * 33)
    with pytest.raises(NodePluginError, match="dracut drops the backslash"):
        iso_mod.rewrite_iso(tiny.iso, out, volume_id="Node ISO")
    with pytest.raises(NodePluginError, match="dracut drops the backslash"):
        iso_mod.edit_boot_configs(tiny.iso, str(tmp_path / "work"), volume_id="Node ISO")
    assert os.listdir(out_dir) == []


def test_xorriso_failure_leaves_no_debris(tiny, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # A xorriso that writes half an image and then fails (as on a full disk); reports still work.
    shim = tmp_path / "bin" / "xorriso"
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\nfor a in "$@"; do if [ "$prev" = -outdev ]; then head -c 65536 /dev/zero > "$a"; '
                    'echo "libburn : FAILURE : No space left on device" >&2; exit 32; fi; prev="$a"; done\n'
                    'exec /usr/bin/xorriso "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    with pytest.raises(NodePluginError, match="the output.s file system is full"):
        iso_mod.rewrite_iso(tiny.iso, str(out_dir / "new.iso"), add_files={"/x": __file__})
    assert os.listdir(out_dir) == []


def test_appended_efi_partition_refused(tmp_path):
    tree = tmp_path / "tree" / "isolinux"
    tree.mkdir(parents=True)
    shutil.copy(isohelpers.ISOLINUX_BIN, tree / "isolinux.bin")
    efi = str(tmp_path / "efi.img")
    subprocess.run(["mformat", "-C", "-f", "1440", "-i", efi, "::"], check=True)
    iso = str(tmp_path / "appended.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "APX", "-r", "-J", "-isohybrid-mbr",
                    isohelpers.ISOHDPFX, "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot",
                    "-boot-load-size", "4", "-boot-info-table", "-eltorito-alt-boot", "-append_partition", "2",
                    "0xef", efi, "-e", "--interval:appended_partition_2:all::", "-no-emul-boot",
                    "-isohybrid-gpt-basdat", "-o", iso, str(tmp_path / "tree")], check=True)
    with pytest.raises(NodePluginError, match="appended GPT partition"):
        iso_mod.rewrite_iso(iso, str(tmp_path / "out.iso"))
    assert not os.path.exists(tmp_path / "out.iso")


def test_lost_boot_records_reports_each_loss():
    entry = iso_mod.ElToritoEntry(index=2, platform="UEFI", bootable=True, emulation="none", load_size=2880,
                                  lba=37, path="/isolinux/efiboot.img")
    before = iso_mod.BootRecords(el_torito=[entry], system_area="MBR isohybrid cyl-align-on GPT",
                                 mbr_partition_types=["0x00", "0xef"], gpt_partition_count=2, image_sectors=6144)
    after = iso_mod.BootRecords(el_torito=[], system_area="MBR isohybrid", mbr_partition_types=["0x00"],
                                gpt_partition_count=0, image_sectors=6144)
    lost = iso_mod.lost_boot_records(before, after)
    assert lost == ["El Torito entry 2 (UEFI, /isolinux/efiboot.img)", "the GPT of the hybrid system area",
                    "MBR partition types ['0x00', '0xef'] became ['0x00']", "GPT partitions (2 became 0)"]
    assert iso_mod.lost_boot_records(before, before) == []


def test_read_bytes_of_the_boot_catalog_and_of_an_empty_file(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    out = str(tmp_path / "with-empty.iso")
    iso_mod.rewrite_iso(tiny.iso, out, add_files={"/isolinux/empty": str(empty)})
    with iso_mod.IsoReader(out) as reader:
        assert reader.read_bytes("/isolinux/empty") == b""
        catalog = reader.read_bytes("/isolinux/boot.cat")
        assert len(catalog) == 2048 and catalog[0] == 1  # a validation entry starts the catalog
        assert reader.read_bytes("/isolinux/boot.cat", 32) == catalog[:32]
