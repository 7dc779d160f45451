# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""isomd5sum compatibility: our implant/check against Debian's implantisomd5/checkisomd5, both ways."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _isomd5 as isomd5
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from tests.unit.plugins.module_utils import isohelpers


def _checkisomd5(iso: str) -> int:
    return subprocess.run(["checkisomd5", iso], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode


@pytest.fixture(name="iso_pair")
def fixture_iso_pair(tmp_path):
    source = isohelpers.cached_iso()
    ours = isohelpers.copy_of(source, str(tmp_path), "ours.iso")
    theirs = isohelpers.copy_of(source, str(tmp_path), "theirs.iso")
    return ours, theirs


def test_implant_is_byte_identical_to_implantisomd5(iso_pair):
    ours, theirs = iso_pair
    md5_hex = isomd5.implant(ours)
    subprocess.run(["implantisomd5", theirs], check=True, stdout=subprocess.DEVNULL)
    with open(ours, "rb") as first, open(theirs, "rb") as second:
        assert first.read() == second.read()
    field = isomd5.read_field(ours)
    assert field.raw.startswith(f"ISO MD5SUM = {md5_hex};SKIPSECTORS = 15;RHLISOSTATUS=0;FRAGMENT SUMS = ".encode())
    assert field.field_offset == 16 * 2048 + 883
    assert _checkisomd5(ours) == 0


def test_check_accepts_implantisomd5_output(iso_pair):
    _ours, theirs = iso_pair
    subprocess.run(["implantisomd5", theirs], check=True, stdout=subprocess.DEVNULL)
    result = isomd5.check(theirs)
    assert result.implanted and result.valid
    assert result.md5 == result.computed_md5 and len(result.fragment_sums) == 60


def test_corrupted_byte_fails_both(iso_pair):
    ours, _theirs = iso_pair
    isomd5.implant(ours)
    with open(ours, "r+b") as handle:
        handle.seek(1_500_000)
        byte = handle.read(1)
        handle.seek(1_500_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = isomd5.check(ours)
    assert result.implanted and result.valid is False
    assert result.first_bad_fragment is not None
    assert _checkisomd5(ours) != 0


def test_not_implanted(iso_pair):
    ours, _theirs = iso_pair
    result = isomd5.check(ours)
    assert not result.implanted and result.valid is None


def test_refuses_used_field_unless_forced(iso_pair):
    ours, theirs = iso_pair
    isomd5.implant(ours)
    with pytest.raises(NodePluginError, match="already in use"):
        isomd5.implant(ours)
    # Force after a content change: the new md5 is right, like implantisomd5 -f.
    with open(ours, "r+b") as handle:
        handle.seek(2_000_000)
        handle.write(b"changed")
    isomd5.implant(ours, force=True)
    assert isomd5.check(ours).valid
    shutil.copyfile(ours, theirs)
    subprocess.run(["implantisomd5", "-f", theirs], check=True, stdout=subprocess.DEVNULL)
    with open(ours, "rb") as first, open(theirs, "rb") as second:
        assert first.read() == second.read()


def test_tiny_iso_refused(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("tiny\n")
    iso = str(tmp_path / "tiny.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, str(tree)], check=True)
    with pytest.raises(NodePluginError, match="too small for isomd5sum"):
        isomd5.implant(iso)


def test_truncated_and_non_iso(tmp_path):
    iso = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path))
    with open(iso, "r+b") as handle:
        handle.truncate(1_000_000)
    with pytest.raises(NodePluginError, match="truncated"):
        isomd5.implant(iso)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"\0" * 100_000)
    with pytest.raises(NodePluginError, match="not an ISO 9660 image"):
        isomd5.check(str(plain))
