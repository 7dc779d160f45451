# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_iso_extract's engine: earlier updates, links kept as links, check mode, debris-free failures."""
from __future__ import annotations

import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _iso as iso_mod
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._extract import STAMP, ExtractRequest, extract_iso
from tests.unit.plugins.module_utils import isohelpers


@pytest.fixture(name="updated_iso")
def fixture_updated_iso(tmp_path):
    """The tiny ISO with two earlier edits (isolinux/update1, update2), one holding a link to /etc."""
    update1 = tmp_path / "update1"
    update1.mkdir()
    (update1 / "installed_plugins").write_text("vendor-agent\n")
    os.symlink("/etc", update1 / "escape")
    update2 = tmp_path / "update2"
    update2.mkdir()
    (update2 / "manifest-rpm.txt").write_text("a-1-1.noarch\n")
    iso = str(tmp_path / "updated.iso")
    iso_mod.rewrite_iso(isohelpers.cached_iso().iso, iso, add_files={"/isolinux/update1": str(update1),
                                                                     "/isolinux/update2": str(update2)})
    return iso


def test_updates_and_links(updated_iso, tmp_path):
    dest = tmp_path / "tree"
    facts = extract_iso(ExtractRequest(src=updated_iso, dest=str(dest)))
    assert facts["updates"] == [
        {"number": 1, "path": "/isolinux/update1", "files": ["escape", "installed_plugins"]},
        {"number": 2, "path": "/isolinux/update2", "files": ["manifest-rpm.txt"]}]
    link = dest / "isolinux" / "update1" / "escape"
    assert link.is_symlink() and os.readlink(link) == "/etc"
    assert (dest / STAMP).is_file()
    # Nothing was written on the host through the link.
    assert not os.path.exists("/etc/installed_plugins")


def test_check_mode_writes_nothing(tmp_path):
    tiny = isohelpers.cached_iso()
    facts = extract_iso(ExtractRequest(src=tiny.iso, dest=str(tmp_path / "tree"), rootfs_dest=str(tmp_path / "root"),
                                       packages=True, check_mode=True))
    assert facts["changed"] is True and facts["packages"] == ["ovirt-node-testpkg-1:1.2-3.noarch"]
    assert os.listdir(tmp_path) == []


def test_destinations_must_be_separate(tmp_path):
    tiny = isohelpers.cached_iso()
    with pytest.raises(NodePluginError, match="must not contain each other"):
        extract_iso(ExtractRequest(src=tiny.iso, dest=str(tmp_path / "a"), rootfs_dest=str(tmp_path / "a" / "b")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NodePluginError, match="exists and is not a folder"):
        extract_iso(ExtractRequest(src=tiny.iso, dest=str(tmp_path / "file")))


def test_a_refused_iso_leaves_previous_content(tmp_path):
    tiny = isohelpers.cached_iso()
    dest = tmp_path / "tree"
    extract_iso(ExtractRequest(src=tiny.iso, dest=str(dest)))
    before = sorted(os.listdir(dest))
    broken = str(tmp_path / "other.iso")
    iso_mod.rewrite_iso(tiny.iso, broken, remove=["/LiveOS"])
    with pytest.raises(NodePluginError, match="not a LiveOS ISO"):
        extract_iso(ExtractRequest(src=broken, dest=str(dest)))
    assert sorted(os.listdir(dest)) == before
    assert sorted(os.listdir(tmp_path)) == ["other.iso", "tree"]


def test_a_failure_in_the_middle_of_the_extraction_rolls_back(tmp_path, monkeypatch):
    """Files of another ISO are half written when reading fails: the old tree stays, no staging folder is left."""
    tiny = isohelpers.cached_iso()
    dest = tmp_path / "tree"
    extract_iso(ExtractRequest(src=tiny.iso, dest=str(dest)))
    before = {path: (dest / path).read_bytes() for path in ("isolinux/isolinux.cfg", STAMP)}
    other = str(tmp_path / "other.iso")
    extra = tmp_path / "extra.txt"
    extra.write_text("new file\n")
    iso_mod.rewrite_iso(tiny.iso, other, add_files={"/isolinux/extra.txt": str(extra)})
    calls = []
    real_extract = iso_mod.IsoReader.extract

    def failing_extract(self, path, target):
        calls.append(path)
        if len(calls) == 3:
            raise NodePluginError("cannot read out of the ISO (injected)", path=self.path)
        return real_extract(self, path, target)

    monkeypatch.setattr(iso_mod.IsoReader, "extract", failing_extract)
    with pytest.raises(NodePluginError, match="injected"):
        extract_iso(ExtractRequest(src=other, dest=str(dest)))
    assert len(calls) == 3  # the extraction had started and written files before it failed
    assert {path: (dest / path).read_bytes() for path in before} == before
    assert not (dest / "isolinux" / "extra.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["extra.txt", "other.iso", "tree"]
