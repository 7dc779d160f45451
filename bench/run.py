# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: the rebuild measured against baselines run on the same machine, in the same run.

Baselines (docs/field-facts.md, docs/design-notes.md "Performance"):
  copy          a plain copy of the ISO: the floor for any rebuild
  edit-livecd   the classic pipeline: unsquash everything, change the root image, mksquashfs it
                whole, mkisofs the whole tree again, implantisomd5
  ours          node_plugin_apply (the same plugin), stage by stage
Timings vary with the machine's load, so only the ratios printed at the end mean anything. The
input is the fixture ISO padded with --fill-mib MiB of mixed content (default 256).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time

from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import ApplyRequest, apply_plugins
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import squashfs_superblock
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from tests.fixtures.nodeiso import FixtureSpec, build_fixture_iso
from tests.fixtures.rpms import build_example_rpms


def _timed(label: str, results: dict[str, float], argv_list: list[list[str]], cwd: str | None = None) -> None:
    started = time.monotonic()
    for argv in argv_list:
        subprocess.run(argv, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results[label] = time.monotonic() - started


def edit_livecd_pipeline(iso: str, volume_id: str, rpm: str, work: str) -> float:
    """The classic rebuild: everything unpacked and packed again. Returns seconds."""
    superblock = squashfs_superblock(iso)
    tree, squashfs_root = os.path.join(work, "tree"), os.path.join(work, "squashfs-root")
    steps: dict[str, float] = {}
    _timed("extract tree", steps, [["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", tree]])
    os.chmod(tree, 0o755)
    _timed("unsquashfs", steps, [["unsquashfs", "-no-progress", "-d", squashfs_root, os.path.join(tree, "LiveOS", "squashfs.img")]])
    root_image = next(os.path.join(squashfs_root, "LiveOS", name) for name in os.listdir(os.path.join(squashfs_root, "LiveOS")))
    # The change itself (edit-livecd installs in a chroot): one file written into the ext image.
    _timed("modify", steps, [["debugfs", "-w", "-R", f"write {rpm} /opt/bench-plugin.rpm", root_image]])
    os.unlink(os.path.join(tree, "LiveOS", "squashfs.img"))
    _timed("mksquashfs", steps, [["mksquashfs", squashfs_root, os.path.join(tree, "LiveOS", "squashfs.img"), "-noappend",
                                  "-no-progress", "-comp", superblock.compressor, "-b", str(superblock.block_size)]])
    out = os.path.join(work, "edit-livecd.iso")
    _timed("mkisofs", steps, [["xorriso", "-as", "mkisofs", "-o", out, "-V", volume_id, "-J", "-joliet-long", "-r",
                               "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin", "-c", "isolinux/boot.cat",
                               "-b", "isolinux/isolinux.bin", "-no-emul-boot", "-boot-load-size", "4",
                               "-boot-info-table", "-eltorito-alt-boot", "-e", "isolinux/efiboot.img",
                               "-no-emul-boot", "-isohybrid-gpt-basdat", tree]])
    _timed("implantisomd5", steps, [["implantisomd5", out]])
    for name, seconds in steps.items():
        print(f"    edit-livecd {name:<14} {seconds:7.1f} s")
    return sum(steps.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fill-mib", type=int, default=int(os.environ.get("BENCH_FILL_MIB", "256")),
                        help="MiB of content padding the root filesystem (default 256, or $BENCH_FILL_MIB)")
    options = parser.parse_args()
    fixture = build_fixture_iso(FixtureSpec(fill_mib=options.fill_mib))
    rpms = build_example_rpms()
    size_mib = os.path.getsize(fixture.iso) / 2 ** 20
    print(f"input: {fixture.iso} ({size_mib:.0f} MiB, root filesystem padded with {options.fill_mib} MiB)")
    with tempfile.TemporaryDirectory(prefix="ovirt-node-bench-", dir=os.path.dirname(fixture.iso)) as work:
        plugin = build_plugin(PluginBuildRequest(
            name="vendor-agent", version="1.0", rpms=[rpms.by_name["vendor-agent"]], output=work, repos=[rpms.dir],
            target_iso=fixture.iso, node_versions=">=2.5.0, <2.6")).path
        results: dict[str, float] = {}
        _timed("copy", results, [["cp", fixture.iso, os.path.join(work, "copy.iso")]])
        os.unlink(os.path.join(work, "copy.iso"))
        baseline = os.path.join(work, "baseline")
        os.makedirs(baseline)
        results["edit-livecd"] = edit_livecd_pipeline(fixture.iso, fixture.volume_id, rpms.by_name["vendor-agent"], baseline)
        shutil.rmtree(baseline)
        started = time.monotonic()
        applied = apply_plugins(ApplyRequest(src=fixture.iso, plugins=[plugin], dest=os.path.join(work, "ours.iso")))
        results["ours"] = time.monotonic() - started
        for name, seconds in applied.durations.items():
            print(f"    ours {name:<21} {seconds:7.1f} s")
        started = time.monotonic()
        apply_plugins(ApplyRequest(src=fixture.iso, plugins=[plugin], dest=os.path.join(work, "ours.iso")))
        results["ours, rerun (no-op)"] = time.monotonic() - started
    print("\nresults (seconds, and ratios measured in this run):")
    for name, seconds in results.items():
        print(f"  {name:<22} {seconds:8.1f} s   {seconds / results['copy']:8.1f} x copy   "
              f"{seconds / results['edit-livecd']:6.2f} x edit-livecd")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
