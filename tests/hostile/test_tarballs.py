# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile plugin tarballs, opened by `build`: member names (absolute, '..', escapes), types (links to the
canary, devices, fifos), duplicates, unlisted and missing members, wrong digests, wrong order, oversize
claims and gzip bombs (bounded small here: refusals come before the data is read), headers tarfile would
read without a bound, and files that are not tarballs at all."""
from __future__ import annotations

import os
import tarfile

import pytest

from tests.hostile.crafted import PluginParts, RawMember, raw_header, write_blocks, zeros

RPM = "rpms/vendor-agent-1.0-1.noarch.rpm"


def _bent(case, build_inputs, bend) -> str:
    parts = PluginParts(build_inputs.good_plugin)
    extra = bend(parts, case) or []
    return parts.write_raw(case.file("vendor-agent-1.0.plugin.tar.gz", b""), extra)


def _drop(name):
    def bend(parts, _case):
        parts.members = [member for member in parts.members if member.name != name]
    return bend


def _first(name):
    def bend(parts, _case):
        parts.members.sort(key=lambda member: member.name != name)
    return bend


def _flip_byte(name):
    def bend(parts, _case):
        data = parts.data(name)
        parts.replace(name, data[:-1] + bytes([data[-1] ^ 1]))
    return bend


def _grow(name, count):
    def bend(parts, _case):
        parts.replace(name, parts.data(name) + b"\0" * count)
    return bend


CASES = {
    "absolute": (lambda parts, case: [RawMember("/etc/cron.d/evil", b"* * * * * root id\n")],
                 "member '/etc/cron.d/evil' refused: absolute name"),
    "dotdot": (lambda parts, case: [RawMember("rpms/../../../../etc/evil", b"x")], "refused: '..' in name"),
    "dot": (lambda parts, case: [RawMember("rpms/./x.rpm", b"x")], "not in canonical form"),
    "backslash": (lambda parts, case: [RawMember("rpms\\..\\x", b"x")], "not in canonical form"),
    "escapes": (lambda parts, case: [RawMember("rpms/\x1b[2J\x1b]0;pwned\x07.rpm", b"x")],
                "member 'rpms/\\x1b[2J\\x1b]0;pwned\\x07.rpm' refused: not listed"),
    "symlink-canary": (lambda parts, case: [RawMember(RPM + ".lnk", None, tarfile.SYMTYPE, case.canary_file)],
                       "refused: symbolic link"),
    "symlink-over-member": (lambda parts, case: parts.members.insert(1, RawMember(
        "recipe.ks", None, tarfile.SYMTYPE, "/etc/shadow")), "member 'recipe.ks' refused: symbolic link"),
    "hardlink": (lambda parts, case: [RawMember("rpms/hard.rpm", None, tarfile.LNKTYPE, "/etc/shadow")],
                 "refused: hard link"),
    "chardev": (lambda parts, case: [RawMember("rpms/zero", None, tarfile.CHRTYPE)], "refused: device file"),
    "blockdev": (lambda parts, case: [RawMember("rpms/sda", None, tarfile.BLKTYPE)], "refused: device file"),
    "fifo": (lambda parts, case: [RawMember("rpms/fifo", None, tarfile.FIFOTYPE)], "refused: fifo"),
    "duplicate": (lambda parts, case: [RawMember("recipe.ks", parts.data("recipe.ks"))],
                  "member 'recipe.ks' refused: appears twice"),
    "duplicate-manifest": (lambda parts, case: [RawMember("manifest.json", parts.data("manifest.json"))],
                           "member 'manifest.json' refused: appears twice"),
    "unlisted": (lambda parts, case: [RawMember("rpms/extra-1-1.noarch.rpm", b"x" * 100)], "not listed in"),
    "unlisted-dir": (lambda parts, case: [RawMember("etc", None, tarfile.DIRTYPE)], "not listed in"),
    "missing-rpm": (_drop(RPM), f"member '{RPM}' refused: listed in manifest.json but missing"),
    "missing-recipe": (_drop("recipe.ks"), "member 'recipe.ks' refused: listed in manifest.json but missing"),
    "manifest-not-first": (_first("recipe.ks"), "manifest.json must be the first member"),
    "no-manifest": (_drop("manifest.json"), "manifest.json must be the first member"),
    "rpm-digest": (_flip_byte(RPM), f"member '{RPM}' refused: digest mismatch"),
    "recipe-digest": (_flip_byte("recipe.ks"), "member 'recipe.ks' refused: digest mismatch"),
    "rpm-grows": (_grow(RPM, 4096), f"member '{RPM}' refused: oversize"),
    "pax-escape": (lambda parts, case: [RawMember("rpms/x.rpm", b"x", pax={"path": "../../etc/passwd"})],
                   "refused: '..' in name"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_member_rules(case, build_inputs, name):
    bend, says = CASES[name]
    build_inputs.keep_previous(case)
    path = _bent(case, build_inputs, bend)
    outcome = case.cli(*build_inputs.args(case.out, path), says=[says], names=[path])
    assert "\x1b" not in outcome.stderr


_PAX_RECORD = raw_header("././@PaxHeader", tarfile.XHDTYPE, 19) + b"19 comment=chained\n".ljust(512, b"\0")


def _after_manifest(build_inputs, blocks) -> list[bytes]:
    """The good plugin's manifest as the first member, then raw blocks."""
    manifest = PluginParts(build_inputs.good_plugin).data("manifest.json")
    head = raw_header("manifest.json", tarfile.REGTYPE, len(manifest))
    return [head, manifest + b"\0" * (-len(manifest) % 512), *blocks]


@pytest.mark.parametrize("name, blocks, says", [
    # A member that claims 3 GiB: refused from its header, before a byte of it is read.
    ("oversize-claim", lambda: [raw_header(RPM, tarfile.REGTYPE, 3 * 1024 ** 3), *zeros(1024 ** 2)],
     f"member '{RPM}' refused: oversize: 3221225472 bytes"),
    # An unlisted member holding 64 MiB of zeros (a small gzip bomb): refused by name before its data.
    ("bomb-unlisted", lambda: [raw_header("rpms/bomb.rpm", tarfile.REGTYPE, 64 * 1024 ** 2), *zeros(64 * 1024 ** 2)],
     "member 'rpms/bomb.rpm' refused: not listed in manifest.json"),
    # tarfile reads a pax header whole into memory: 128 MiB of it must be refused from the header.
    ("pax-bomb", lambda: [raw_header("././@PaxHeader", tarfile.XHDTYPE, 128 * 1024 ** 2), *zeros(128 * 1024 ** 2)],
     "an extended header of 134217728 bytes"),
    # Chained extended headers make tarfile recurse once per header.
    ("pax-chain", lambda: [_PAX_RECORD] * 5000, "more than 4 extended headers in a row"),
    ("sparse", lambda: [raw_header(RPM, tarfile.GNUTYPE_SPARSE, 0)], "a sparse member"),
])
def test_headers_refused_before_their_data(case, build_inputs, name, blocks, says):
    build_inputs.keep_previous(case)
    path = write_blocks(case.file(f"{name}.plugin.tar.gz", b""), _after_manifest(build_inputs, blocks()))
    case.cli(*build_inputs.args(case.out, path), says=[says], names=[path], memory_mib=1024)


@pytest.mark.parametrize("content, says", [
    (b"", "not a gzip'd tar plugin"),
    (b"this is not gzip", "not a gzip'd tar plugin"),
    (b"\x1f\x8b\x08\x00" + b"\0" * 6 + b"garbage", ("the tarball is damaged", "not a gzip'd tar plugin")),
])
def test_not_a_tarball(case, build_inputs, content, says):
    build_inputs.keep_previous(case)
    path = case.file("junk.plugin.tar.gz", content)
    case.cli(*build_inputs.args(case.out, path), says=[says], names=[path])


def test_a_truncated_tarball(case, build_inputs):
    build_inputs.keep_previous(case)
    with open(build_inputs.good_plugin, "rb") as handle:
        data = handle.read()
    path = case.file("short.plugin.tar.gz", data[: len(data) // 2])
    case.cli(*build_inputs.args(case.out, path), says=[("the tarball is damaged", "missing")], names=[path])


def test_a_folder_a_device_and_a_missing_plugin(case, build_inputs):
    build_inputs.keep_previous(case)
    for path, says in [(case.inputs, "not a regular file"), ("/dev/zero", "not a regular file"),
                       (os.path.join(case.inputs, "missing.plugin.tar.gz"), "cannot read the plugin")]:
        case.cli(*build_inputs.args(case.out, path), says=[says], names=[path])
