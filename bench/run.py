# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: the rebuild and the certification measured against baselines run in the same run.

At two sizes of the fixture ISO (the root file system padded with --small-fill-mib and --fill-mib,
default 0 and 1024 MiB, i.e. a 64 MiB and a 1.5 GiB xz root image), each figure is a ratio of times
taken here, in this run (docs/design-notes.md, "Performance"):

  rebuild / edit-livecd     node_plugin_apply of one small plugin against the classic pipeline
                            (unsquash everything, change the root image, mksquashfs it whole,
                            mkisofs, implantisomd5); the appliance launch is printed apart
  growth                    rebuild time growth from the small to the big ISO, over the growth of
                            `sha256sum` of the ISO (the floor: any tool must read the ISO once)
  verify / floor            verify with the base given, over `sha256sum` of both ISOs + one
                            appliance launch
  build rerun               `ovirt-plugin-build build` again with unchanged inputs (seconds)
  peak memory               RSS of the process tree, QEMU aside, of the rebuild and of verify
  bytes                     decompressed and compressed by the rebuild
Every command runs as a process of its own; timings vary with the machine's load, ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tests.fixtures.nodeiso import FixtureSpec, build_fixture_iso
from tests.fixtures.rpms import build_example_rpms

CLI = os.path.join(os.path.dirname(sys.executable), "ovirt-plugin-build")
GOALS = {"rebuild": 0.10, "rebuild without launch": 0.05, "growth": 2.0, "verify": 1.5, "rerun": 1.0,
         "memory_mib": 500}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class PeakMemory(threading.Thread):
    """The largest RSS sum of a process tree, QEMU's processes left out, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.stop = pid, 0, threading.Event()

    @staticmethod
    def _children() -> dict[int, list[int]]:
        tree: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                        parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                    tree.setdefault(parent, []).append(int(entry))
                except (OSError, ValueError, IndexError):
                    continue
        return tree

    def _rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as handle:
                if handle.read().startswith("qemu"):
                    return 0
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.stop.is_set():
            tree, pending, total = self._children(), [self.pid], 0
            while pending:
                pid = pending.pop()
                total += self._rss(pid)
                pending += tree.get(pid, [])
            self.peak_kib = max(self.peak_kib, total)
            self.stop.wait(0.2)


def timed(argv: list[str], *, memory: bool = False, env: dict | None = None,
          accept: tuple[int, ...] = (0,)) -> tuple[float, int, str]:
    """Run a command; (seconds, peak RSS KiB of its tree without QEMU, stdout). Other exit codes stop the bench."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    sampler = PeakMemory(process.pid) if memory else None
    if sampler:
        sampler.start()
    out, err = process.communicate()
    seconds = time.monotonic() - started
    if sampler:
        sampler.stop.set()
        sampler.join()
    if process.returncode not in accept:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({process.returncode}):\n{err[-3000:]}")
    return seconds, sampler.peak_kib if sampler else 0, out


def edit_livecd_pipeline(iso: str, volume_id: str, rpm: str, work: str) -> dict[str, float]:
    """The classic rebuild: everything unpacked and packed again; seconds per step."""
    tree, squashfs_root = os.path.join(work, "tree"), os.path.join(work, "squashfs-root")
    steps: dict[str, float] = {}

    def step(name: str, argv: list[str]) -> None:
        say(f"edit-livecd: {name}")
        steps[name] = timed(argv)[0]

    step("extract tree", ["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", tree])
    os.chmod(tree, 0o755)
    squashfs = os.path.join(tree, "LiveOS", "squashfs.img")
    listing = subprocess.run(["unsquashfs", "-s", squashfs], capture_output=True, text=True, check=True).stdout
    compressor = next(line.split()[1] for line in listing.splitlines() if line.startswith("Compression"))
    block_size = next(line.split()[-1] for line in listing.splitlines() if line.startswith("Block size"))
    step("unsquashfs", ["unsquashfs", "-no-progress", "-d", squashfs_root, squashfs])
    root_image = next(os.path.join(squashfs_root, "LiveOS", name)
                      for name in os.listdir(os.path.join(squashfs_root, "LiveOS")))
    # The change itself (edit-livecd installs in a chroot): one file written into the ext image.
    step("modify", ["debugfs", "-w", "-R", f"write {rpm} /opt/bench-plugin.rpm", root_image])
    os.unlink(squashfs)
    step("mksquashfs", ["mksquashfs", squashfs_root, squashfs, "-noappend", "-no-progress", "-comp", compressor,
                        "-b", block_size])
    out = os.path.join(work, "edit-livecd.iso")
    step("mkisofs", ["xorriso", "-as", "mkisofs", "-o", out, "-V", volume_id, "-J", "-joliet-long", "-r",
                     "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin", "-c", "isolinux/boot.cat",
                     "-b", "isolinux/isolinux.bin", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                     "-eltorito-alt-boot", "-e", "isolinux/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat",
                     tree])
    step("implantisomd5", ["implantisomd5", out])
    return steps


APPLY = """
import json, sys
from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import ApplyRequest, apply_plugins
result = apply_plugins(ApplyRequest(src=sys.argv[1], plugins=[sys.argv[2]], dest=sys.argv[3]))
json.dump({"durations": result.durations, "squashfs": result.squashfs, "changed": result.changed}, sys.stdout)
"""
LAUNCH = """
import sys
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import find_root_image_path
from ansible_collections.ovirt.node_plugins.plugins.module_utils._nodeiso import NodeIso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rootfs import RootImageSession
with NodeIso(sys.argv[1]) as iso:
    root = iso.squashfs_image().open_file(find_root_image_path(iso.squashfs_image(), source=iso.path))
    with RootImageSession(root, readonly=True) as session:
        print(session.launch_seconds)
"""
ROOT_SIZE = """
import sys
from ansible_collections.ovirt.node_plugins.plugins.module_utils._nodeiso import NodeIso
with NodeIso(sys.argv[1]) as iso:
    print(iso.root_filesystem().superblock.blocks_count * iso.root_filesystem().block_size)
"""


def measure(fill_mib: int, plugin_rpm: str, repo: str, work: str) -> dict:
    say(f"fixture with {fill_mib} MiB of fill (built once, then cached; a big one takes many minutes)")
    fixture = build_fixture_iso(FixtureSpec(fill_mib=fill_mib))
    size_mib = os.path.getsize(fixture.iso) / 2 ** 20
    say(f"fixture: {fixture.iso} ({size_mib:.0f} MiB)")
    folder = os.path.join(work, f"fill-{fill_mib}")
    os.makedirs(folder)
    root_bytes = int(timed([sys.executable, "-c", ROOT_SIZE, fixture.iso])[2])
    figures: dict = {"iso_mib": round(size_mib), "root_mib": round(root_bytes / 2 ** 20)}
    say("pack the plugin")
    subprocess.run([CLI, "pack", "--name", "bench-agent", "--version", "1.0", "--rpm", plugin_rpm, "--repo", repo,
                    "--target-iso", fixture.iso, "--node-versions", ">=2.5.0, <2.6", "-o", folder],
                   check=True, capture_output=True)
    plugin = os.path.join(folder, "bench-agent-1.0.plugin.tar.gz")
    say("sha256sum of the ISO (twice: the first warms the page cache as every other step finds it)")
    timed(["sha256sum", fixture.iso])
    figures["sha256sum"] = timed(["sha256sum", fixture.iso])[0]
    baseline = os.path.join(folder, "edit-livecd")
    os.makedirs(baseline)
    steps = edit_livecd_pipeline(fixture.iso, fixture.volume_id, plugin_rpm, baseline)
    shutil.rmtree(baseline)
    figures["edit_livecd"], figures["edit_livecd_steps"] = sum(steps.values()), steps
    say("ours: node_plugin_apply")
    ours = os.path.join(folder, "ours.iso")
    seconds, peak, out = timed([sys.executable, "-c", APPLY, fixture.iso, plugin, ours], memory=True)
    applied = json.loads(out)
    figures.update(rebuild=seconds, rebuild_peak_mib=peak / 1024, rebuild_durations=applied["durations"],
                   squashfs=applied["squashfs"], launch=applied["durations"].get("image: appliance launch", 0.0))
    say("one appliance launch alone (the floor of anything that runs vendor code or the image's rpm)")
    figures["launch_alone"] = float(timed([sys.executable, "-c", LAUNCH, fixture.iso])[2].strip() or 0)
    say("verify with the base given")
    timed(["sha256sum", ours])
    figures["sha256sum_ours"] = timed(["sha256sum", ours])[0]
    seconds, peak, out = timed([CLI, "verify", "--iso", ours, "--base", fixture.iso, "--json"], memory=True,
                               accept=(0, 1))
    figures["verify_certified"] = json.loads(out)["certified"]
    figures.update(verify=seconds, verify_peak_mib=peak / 1024)
    say("ovirt-plugin-build build, then again with the same inputs")
    out_dir = os.path.join(folder, "build")
    os.makedirs(out_dir)
    timed([CLI, "build", "--iso", fixture.iso, "--plugin", plugin, "-o", out_dir, "--json"])
    figures["build_rerun"] = timed([CLI, "build", "--iso", fixture.iso, "--plugin", plugin, "-o", out_dir,
                                    "--json"])[0]
    shutil.rmtree(folder)
    return figures


def verdict(value: float, goal: float) -> str:
    return f"{'met' if value <= goal else 'NOT met'} (goal <= {goal:g})"


def report(small: dict, big: dict) -> None:
    print("\n== ovirt.node_plugins benchmark (seconds measured in this run; compare ratios) ==")
    for name, figures in (("small", small), ("big", big)):
        squashfs = figures["squashfs"]
        print(f"\n{name}: {figures['iso_mib']} MiB ISO, {figures['root_mib']} MiB root image")
        print(f"  sha256sum of the ISO           {figures['sha256sum']:8.1f} s")
        print(f"  edit-livecd pipeline           {figures['edit_livecd']:8.1f} s   "
              + ", ".join(f"{step} {seconds:.1f}" for step, seconds in figures["edit_livecd_steps"].items()))
        print(f"  rebuild (node_plugin_apply)    {figures['rebuild']:8.1f} s   "
              + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in figures["rebuild_durations"].items()))
        print(f"    squashfs path: {squashfs.get('path_taken')}; {squashfs.get('reason')}; "
              f"{squashfs.get('bytes_decompressed', 0) >> 10} KiB decompressed, "
              f"{squashfs.get('bytes_compressed', 0) >> 10} KiB compressed to "
              f"{squashfs.get('bytes_compressed_stored', 0) >> 10} KiB, "
              f"{squashfs.get('bytes_copied', 0) >> 20} MiB of compressed blocks copied")
        print(f"  verify with the base           {figures['verify']:8.1f} s   "
              f"{'certified' if figures['verify_certified'] else 'NOT CERTIFIED'}")
        print(f"  one appliance launch alone     {figures['launch_alone']:8.1f} s")
        print(f"  build rerun, unchanged inputs  {figures['build_rerun']:8.2f} s   "
              f"{verdict(figures['build_rerun'], GOALS['rerun'])}")
        print(f"  peak memory without QEMU       rebuild {figures['rebuild_peak_mib']:.0f} MiB, verify "
              f"{figures['verify_peak_mib']:.0f} MiB   "
              f"{verdict(max(figures['rebuild_peak_mib'], figures['verify_peak_mib']), GOALS['memory_mib'])}")
        rebuild_ratio = figures["rebuild"] / figures["edit_livecd"]
        without_launch = (figures["rebuild"] - figures["launch"]) / figures["edit_livecd"]
        print(f"  rebuild / edit-livecd          {rebuild_ratio:8.3f}     {verdict(rebuild_ratio, GOALS['rebuild'])}")
        print(f"    without the appliance launch ({figures['launch']:.1f} s)  {without_launch:6.3f}     "
              f"{verdict(without_launch, GOALS['rebuild without launch'])}")
        floor = figures["sha256sum"] + figures["sha256sum_ours"] + figures["launch_alone"]
        print(f"  verify / (sha256sum of both ISOs + one launch = {floor:.1f} s)  {figures['verify'] / floor:6.2f}   "
              f"{verdict(figures['verify'] / floor, GOALS['verify'])}")
    growth = (big["rebuild"] / small["rebuild"]) / (big["sha256sum"] / small["sha256sum"])
    print(f"\ngrowth of the rebuild ({big['rebuild'] / small['rebuild']:.2f}x) over the growth of sha256sum "
          f"({big['sha256sum'] / small['sha256sum']:.2f}x): {growth:.2f}   {verdict(growth, GOALS['growth'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fill-mib", type=int, default=int(os.environ.get("BENCH_FILL_MIB", "1024")),
                        help="MiB of content padding the big fixture's root file system (default 1024: a 1.5 GiB root "
                             "image; or $BENCH_FILL_MIB)")
    parser.add_argument("--small-fill-mib", type=int, default=int(os.environ.get("BENCH_SMALL_FILL_MIB", "0")),
                        help="the same for the small fixture (default 0; or $BENCH_SMALL_FILL_MIB)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    options = parser.parse_args()
    rpms = build_example_rpms()
    plugin_rpm, repo = rpms.by_name["vendor-agent"], rpms.dir
    with tempfile.TemporaryDirectory(prefix="ovirt-node-bench-", dir=os.path.dirname(build_fixture_iso().iso)) as work:
        small = measure(options.small_fill_mib, plugin_rpm, repo, work)
        big = measure(options.fill_mib, plugin_rpm, repo, work)
    report(small, big)
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump({"small": small, "big": big}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
