# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ISO layer on the real Node-like fixture ISO: every fact on every variant, and a rewritten ISO
(new kernel argument and a new volume label, in isolinux.cfg, EFI/BOOT/grub.cfg and the
grub.cfg inside efiboot.img) that still boots on all four ISO paths with the change visible."""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _iso as iso_mod
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _isomd5 as isomd5
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _liveos as liveos
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _nodeinfo as nodeinfo
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _rpmdb as rpmdb
from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import BOOT_PATHS, boot_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._bootcfg import KernelArgEdits
from ansible_collections.ovirt.node_plugins.plugins.module_utils._extract import ExtractRequest, extract_iso
from tests.fixtures.nodeiso import FixtureSpec

VARIANTS = [FixtureSpec(compressor="xz", root_name="ext3fs.img"),
            FixtureSpec(compressor="gzip", root_name="rootfs.img"),
            FixtureSpec(compressor="zstd", root_name="ext3fs.img")]
NEW_ARG = "node.iso_layer=edited"
NEW_LABEL = "ovirt-node-iso-2.5.0-1.0.fc17_ed"


def _nevra_without_epoch(nevra: str) -> str:
    name, _sep, rest = nevra.rpartition("-")
    name, _sep, version = name.rpartition("-")
    return f"{name}-{version.split(':', 1)[-1]}-{rest}"


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda spec: f"{spec.compressor}-{spec.root_name}")
def test_every_fact_on_each_variant(node_iso_factory, spec, tmp_path):
    fx = node_iso_factory(spec)
    facts = extract_iso(ExtractRequest(src=fx.iso, rootfs_dest=str(tmp_path / "rootfs"), packages=True,
                                       check_md5=True))
    assert facts["volume_id"] == fx.volume_id
    assert (facts["product"], facts["version"], facts["release"]) == (spec.product, spec.version, spec.release)
    assert facts["version_source"] == "isolinux/version"
    assert facts["squashfs"]["compressor"] == spec.compressor
    assert facts["squashfs"]["block_size"] == fx.squashfs_block_size
    assert facts["root_image"]["name"] == spec.root_name
    assert facts["md5"] == {"implanted": True, "valid": True, "md5": facts["md5"]["md5"]}
    el_torito = [(entry["platform"], entry["path"]) for entry in facts["el_torito"]]
    assert el_torito == [("BIOS", "/isolinux/isolinux.bin"), ("UEFI", "/isolinux/efiboot.img")]
    assert facts["hybrid"]["mbr"] and facts["hybrid"]["gpt"]
    assert sorted(_nevra_without_epoch(n) for n in facts["packages"]) == sorted(fx.packages)
    assert facts["plugins"] == []
    default_args = fx.default_kernel_args.split()
    isolinux_default = [e for e in facts["boot_entries"]["isolinux"] if e["default"]]
    assert [e["kernel_args"] for e in isolinux_default] == [default_args]
    for loader in ("grub", "efiboot"):
        first = facts["boot_entries"][loader][0]
        assert first["default"] and first["kernel_args"] == default_args[1:]  # GRUB has no initrd= argument
    # The root image on disk is the one inside the squashfs, and its own files agree with the ISO's.
    image = facts["root_image_path"]
    assert os.path.getsize(image) == facts["root_image"]["size"]
    with liveos.open_root_image(image) as root:
        info = nodeinfo.node_info_from_root(root)
    assert info.source == "/etc/default/version" and (info.version, info.release) == (spec.version, spec.release)
    release = liveos.read_root_file(image, "/etc/system-release").decode()
    assert release.startswith(f"{spec.product} release {spec.version} ({spec.release})")
    assert [p.nevra for p in rpmdb.image_packages(fx.iso)] == facts["packages"]
    # Our md5 check agrees with checkisomd5 on the fixture (implanted by the C tool).
    assert subprocess.run(["checkisomd5", fx.iso], stdout=subprocess.DEVNULL, check=False).returncode == 0


@pytest.fixture(scope="module", name="edited")
def fixture_edited(node_iso, tmp_path_factory):
    """The default fixture rewritten: NEW_ARG and rd.live.check added, 'quiet' removed, volume renamed; md5 implanted."""
    work = tmp_path_factory.mktemp("edited")
    # rd.live.check makes dracut run checkisomd5 on the medium at boot: our implant is checked there too.
    edits = iso_mod.edit_boot_configs(node_iso.iso, str(work / "configs"),
                                      KernelArgEdits.parse([NEW_ARG, "!quiet", "rd.live.check"]), volume_id=NEW_LABEL)
    out = str(work / "edited.iso")
    result = iso_mod.rewrite_iso(node_iso.iso, out, replace_files=edits.replace_files, volume_id=NEW_LABEL)
    isomd5.implant(out, force=True)
    return {"iso": out, "edits": edits, "result": result, "base": node_iso}


@pytest.fixture(scope="module", name="boots")
def fixture_boots(edited):
    """Each ISO boot path booted once per session, two at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {path: pool.submit(boot_iso, edited["iso"], path, timeout=300) for path in BOOT_PATHS}
        return {path: future.result() for path, future in futures.items()}


def test_rewrite_touched_every_config_and_kept_boot_records(edited):
    assert set(edited["edits"].replace_files) == {"/isolinux/isolinux.cfg", "/EFI/BOOT/grub.cfg",
                                                  "/isolinux/efiboot.img"}
    base, out = edited["base"].iso, edited["iso"]
    assert iso_mod.lost_boot_records(iso_mod.boot_records(base), iso_mod.boot_records(out)) == []
    assert iso_mod.read_hybrid(out).mbr and iso_mod.read_hybrid(out).gpt
    assert subprocess.run(["checkisomd5", out], stdout=subprocess.DEVNULL, check=False).returncode == 0
    assert isomd5.check(out).valid
    escaped = f"root=live:CDLABEL={NEW_LABEL}"
    for config in iso_mod.boot_configs(out):
        for entry in config.entries:
            assert NEW_ARG in entry.kernel_args and "quiet" not in entry.kernel_args
            assert escaped in entry.kernel_args
    with iso_mod.IsoReader(out) as reader:
        assert reader.volume_id == NEW_LABEL
        assert f"search --no-floppy --set=root -l '{NEW_LABEL}'" in reader.read_text("/EFI/BOOT/grub.cfg")


@pytest.mark.parametrize("path", BOOT_PATHS)
def test_rewritten_iso_boots_with_new_arguments(boots, path):
    result = boots[path]
    assert result.ok, f"{path}: {result.reason}\n{result.log[-3000:]}"
    cmdline = result.marker["cmdline"].split()
    assert NEW_ARG in cmdline and "quiet" not in cmdline
    assert f"root=live:CDLABEL={NEW_LABEL}" in cmdline
    # dracut's media check ran checkisomd5 on the booted medium and it passed.
    assert "rd.live.check" in cmdline
    assert "the result is: PASS" in result.log
    assert result.marker["version"] == "2.5.0"
