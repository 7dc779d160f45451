# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The appliance on the fixture's root image served over NBD: writes land in the overlay, reads are lazy.

Prints what it measures (bytes served, seconds, blocks dirtied); asserts only correctness.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._blockio import FileRegion
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._liveos import (
    extract_root_image, read_root_file, squashfs_extent)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rootfs import RootImageSession
from ansible_collections.ovirt.node_plugins.plugins.module_utils._squashfs import SquashfsImage

LABEL = "the root image LiveOS/ext3fs.img"
BASE_MOUNT = "/mnt/base"
CHUNK = 4 * 1024 * 1024


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def root_image(node_iso, tmp_path_factory):
    return extract_root_image(node_iso.iso, str(tmp_path_factory.mktemp("nbd-root")))


@pytest.fixture(scope="module")
def installed(node_iso, root_image, example_rpms, tmp_path_factory):
    """One writable session over the root image through NBD: the example plugin installed, a file written."""
    work = tmp_path_factory.mktemp("nbd-overlay")
    overlay = str(work / "root.qcow2")
    before = _sha256(root_image)
    started = time.monotonic()
    with FileRegion(root_image) as source:
        with RootImageSession(source, overlay=overlay, block_size=node_iso.squashfs_block_size, label=LABEL) as session:
            launched = time.monotonic() - started
            install = session.install_rpms([example_rpms.by_name["vendor-agent"],
                                            example_rpms.by_name["vendor-agent-lib"]])
            session.write("/etc/written-through-nbd", b"the overlay took this\n")
    seconds = time.monotonic() - started
    changes = session.changes
    stats = session.root_export.stats
    print(f"\n[measure] rpm -U of the example plugin through NBD + overlay: {len(changes.blocks)} of "
          f"{changes.block_count} blocks of {changes.block_size} bytes changed "
          f"({changes.data_bytes / 2**20:.2f} MiB of new content); session {seconds:.1f} s "
          f"(launch {launched:.1f} s); {stats.bytes_served / 2**20:.1f} MiB served in {stats.read_requests} reads "
          f"over {stats.connections} connections")
    return {"work": work, "overlay": overlay, "before": before, "install": install, "changes": changes}


def test_the_install_ran_and_the_base_image_is_untouched(installed, root_image):
    assert installed["install"].ok, installed["install"].output
    assert _sha256(root_image) == installed["before"]


def test_changed_blocks_are_few_and_rebuild_what_qemu_sees(installed, root_image):
    changes = installed["changes"]
    assert 0 < len(changes.blocks) < changes.block_count // 4
    assert changes.size == changes.base_size == os.path.getsize(root_image)
    # What QEMU itself makes of the overlay, with the base file as its backing.
    converted = str(installed["work"] / "converted.raw")
    spec = {"driver": "qcow2", "file": {"driver": "file", "filename": installed["overlay"]},
            "backing": {"driver": "raw", "file": {"driver": "file", "filename": root_image}}}
    subprocess.run(["qemu-img", "convert", "-O", "raw", "json:" + json.dumps(spec), converted], check=True, timeout=300)
    with FileRegion(root_image) as base, open(converted, "rb") as expected:
        rebuilt = changes.new_image(base)
        assert rebuilt.size == os.path.getsize(converted)
        for offset in range(0, rebuilt.size, CHUNK):
            assert rebuilt.read(offset, CHUNK) == expected.read(CHUNK), f"differs in the 4 MiB from {offset}"
    # Only the listed blocks differ from the base: the rest is the base's, as promised.
    with open(root_image, "rb") as base, open(converted, "rb") as expected:
        differing = set()
        for index in range(changes.block_count):
            if base.read(changes.block_size) != expected.read(changes.block_size):
                differing.add(index)
    assert differing <= set(changes.indices)
    assert read_root_file(converted, "/etc/written-through-nbd") == b"the overlay took this\n"
    assert read_root_file(converted, "/etc/vendor-agent/agent.conf") == b"server=manager.example.com\nport=7777\n"


def _rpm_listing(session: RootImageSession, dbpath: str | None = None) -> tuple[list[str], float]:
    argv = [session.rpm_binary(), "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"]
    if dbpath:
        argv[1:1] = ["--dbpath", dbpath]
    started = time.monotonic()
    outcome = session.run(argv)
    assert outcome.ok, outcome.output
    return sorted(outcome.output.split()), time.monotonic() - started


def test_a_readonly_session_over_nbd_sees_what_the_raw_file_session_sees(root_image, tmp_path):
    before = _sha256(root_image)
    started = time.monotonic()
    with RootImageSession(root_image, readonly=True) as session:
        launched_raw = time.monotonic() - started
        raw_packages, raw_rpm = _rpm_listing(session)
    raw_total = time.monotonic() - started

    base_copy = str(tmp_path / "base.img")
    shutil.copyfile(root_image, base_copy)
    started = time.monotonic()
    with FileRegion(root_image) as source, FileRegion(base_copy) as base:
        with RootImageSession(source, readonly=True, label=LABEL, extra_images={BASE_MOUNT: base}) as session:
            launched_nbd = time.monotonic() - started
            nbd_packages, nbd_rpm = _rpm_listing(session)
            base_packages, _seconds = _rpm_listing(session, f"{BASE_MOUNT}/var/lib/rpm")
            scratch = session.run(["sh", "-c", "echo scratch > /var/tmp/scratch && cat /var/tmp/scratch"])
    nbd_total = time.monotonic() - started
    stats = session.root_export.stats
    print(f"\n[measure] launch + rpm -qa, raw file: {raw_total:.1f} s (launch {launched_raw:.1f} s, "
          f"rpm {raw_rpm:.1f} s), {os.path.getsize(root_image) / 2**20:.0f} MiB image")
    print(f"[measure] launch + rpm -qa, NBD from a FileRegion (and the base as a second export): {nbd_total:.1f} s "
          f"(launch {launched_nbd:.1f} s, rpm {nbd_rpm:.1f} s); root image: {stats.bytes_served / 2**20:.1f} MiB "
          f"served in {stats.read_requests} reads over {stats.connections} connections, "
          f"{stats.source_seconds:.3f} s in the source")
    assert raw_packages and nbd_packages == raw_packages == base_packages
    assert scratch.ok and scratch.output.strip() == "scratch"
    assert _sha256(root_image) == before
    assert _sha256(base_copy) == before
    assert stats.bytes_served < os.path.getsize(root_image)


def test_an_unreadable_source_fails_the_session_naming_the_block(root_image, tmp_path):
    damaged = str(tmp_path / "damaged.img")
    shutil.copyfile(root_image, damaged)
    source = FileRegion(damaged)
    os.truncate(damaged, 1024 * 1024)  # cut after opening: every read past the first MiB fails
    with source, pytest.raises(NodePluginError) as caught:
        with RootImageSession(source, readonly=True, label=LABEL, block_size=131072) as session:
            session.run(["sh", "-c", "find / -xdev -type f -exec cat {} + > /dev/null"])
    message = str(caught.value)
    assert "the appliance could not read block" in message and LABEL in message
    assert "ended early" in message


def test_a_corrupted_squashfs_block_is_named_after_the_session(node_iso, tmp_path):
    """The lazy path end to end: ISO -> squashfs -> root image over NBD; one damaged compressed block."""
    iso = str(tmp_path / "damaged.iso")
    shutil.copyfile(node_iso.iso, iso)
    offset, size = squashfs_extent(iso)
    with FileRegion(iso, offset, size) as squashfs_bytes:
        first = SquashfsImage(squashfs_bytes).open_file("LiveOS/ext3fs.img").blocks[0]
    with open(iso, "r+b") as handle:  # the ext superblock's block: every mount reads it
        handle.seek(offset + first.offset + first.stored_size // 2)
        handle.write(b"\xde\xad\xbe\xef" * 8)
    with FileRegion(iso, offset, size) as squashfs_bytes, pytest.raises(NodePluginError) as caught:
        root = SquashfsImage(squashfs_bytes, name="LiveOS/squashfs.img").open_file("LiveOS/ext3fs.img")
        with RootImageSession(root, readonly=True, label=LABEL, block_size=node_iso.squashfs_block_size):
            pass
    message = str(caught.value)
    assert f"the appliance could not read block 0 (of {node_iso.squashfs_block_size} bytes) of {LABEL}" in message
    assert "squashfs" in message
