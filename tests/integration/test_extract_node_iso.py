# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Extraction of the fixture Node ISO, cross-checked against xorriso's and unsquashfs's own extraction."""
from __future__ import annotations

import filecmp
import os
import subprocess

from ansible_collections.ovirt.node_plugins.plugins.module_utils._extract import STAMP, ExtractRequest, extract_iso


def _tree(root: str) -> dict[str, int]:
    found = {}
    for top, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(top, name)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


def test_tree_and_root_image_match_the_reference_tools(node_iso, tmp_path):
    dest, rootfs = str(tmp_path / "tree"), str(tmp_path / "rootfs")
    first = extract_iso(ExtractRequest(src=node_iso.iso, dest=dest, rootfs_dest=rootfs))
    assert first["changed"] is True

    reference = str(tmp_path / "xorriso-tree")
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", node_iso.iso, "-extract", "/", reference], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = _tree(dest)
    assert ours.pop(STAMP) > 0
    assert ours == _tree(reference)
    mismatch = filecmp.cmpfiles(dest, reference, list(ours), shallow=False)[1:]
    assert mismatch == ([], [])

    squash_ref = str(tmp_path / "squash-ref")
    subprocess.run(["unsquashfs", "-no-progress", "-d", squash_ref, os.path.join(reference, "LiveOS", "squashfs.img")],
                   check=True, stdout=subprocess.DEVNULL)
    image = first["root_image_path"]
    assert filecmp.cmp(image, os.path.join(squash_ref, "LiveOS", node_iso.spec.root_name), shallow=False)

    second = extract_iso(ExtractRequest(src=node_iso.iso, dest=dest, rootfs_dest=rootfs))
    assert second["changed"] is False
    assert "extract tree" not in second["durations"] and "extract root image" not in second["durations"]
    assert sorted(os.listdir(tmp_path)) == ["rootfs", "squash-ref", "tree", "xorriso-tree"]
