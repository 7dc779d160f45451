# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plugin format: schema, reproducible writing, and every reading rule on tampered tarballs."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import tracemalloc

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _outputs as outputs
from ansible_collections.ovirt.node_plugins.plugins.module_utils import _plugin_schema
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin import (
    Limits, canonical_json, open_plugin, parse_manifest, validate_manifest)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rpmhdr import check_signatures, read_header
from tests.hostile import crafted
from tests.unit import rpmhelpers

TOP = rpmhelpers.TOP


@pytest.fixture(scope="module")
def rpms():
    return rpmhelpers.standard_rpms()


@pytest.fixture(scope="module")
def key():
    found = rpmhelpers.make_key()
    yield found
    rpmhelpers.stop_agent(found.home)


def _request(tmp_path, rpms, **overrides) -> PluginBuildRequest:
    values = {"name": "agent", "version": "1.0", "rpms": [rpms.by_name["agent"]],
              "repos": [rpmhelpers.dependency_repo(str(tmp_path / "deps"), rpms)],
              "target_packages": rpmhelpers.image_packages_file(str(tmp_path)),
              "output": str(tmp_path / "agent-1.0.plugin.tar.gz"), "vendor": "Example", "summary": "test agent",
              "node_product": "ovirt-node-iso", "node_versions": ">=2.5.0, <2.6"}
    values.update(overrides)
    return PluginBuildRequest(**values)


@pytest.fixture
def good_plugin(tmp_path, rpms, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return build_plugin(_request(tmp_path, rpms)).path


def _members(path: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path, "r:gz") as archive:
        return [(info, archive.extractfile(info).read() if info.isreg() else None) for info in archive]


def _write(path: str, members) -> str:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for info, data in members:
                if data is not None:
                    info.size = len(data)
                archive.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(path, "wb") as handle:
        handle.write(raw.getvalue())
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def _with_manifest(members, change) -> list:
    """Members with manifest.json rewritten by change(dict) (digests stay as they were unless changed)."""
    result = []
    for info, data in members:
        if info.name == "manifest.json":
            manifest = json.loads(data)
            change(manifest)
            data = canonical_json(manifest)
        result.append((info, data))
    return result


def _refused(path: str, *words: str, **kwargs) -> str:
    with pytest.raises(NodePluginError) as caught:
        open_plugin(path, **kwargs)
    message = str(caught.value)
    for word in words:
        assert word in message
    return message


def test_schema_file_matches_the_code():
    with open(os.path.join(TOP, "docs", "plugin-manifest.schema.json"), encoding="utf-8") as handle:
        assert handle.read() == _plugin_schema.schema_json()


def test_good_plugin_reads_back(good_plugin):
    archive = open_plugin(good_plugin)
    assert archive.manifest.name == "agent" and archive.manifest.node.versions == ">=2.5.0, <2.6"
    assert [(p.name, p.role) for p in archive.manifest.packages] == [("agent", "plugin"), ("agent-lib", "dependency")]
    assert archive.manifest.created == "2023-11-14T22:13:20Z"
    assert archive.recipe.packages == ["agent"]
    assert archive.sha256 == hashlib.sha256(open(good_plugin, "rb").read()).hexdigest()
    assert archive.signature is None and archive.signer is None


def test_members_are_normalized_and_sorted(good_plugin):
    members = _members(good_plugin)
    assert [info.name for info, _data in members] == [
        "manifest.json", "recipe.ks", "rpms", "rpms/agent-1.0-1.noarch.rpm", "rpms/agent-lib-1.0-1.noarch.rpm"]
    for info, _data in members:
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "root", "root", 1700000000)
        assert info.mode == (0o755 if info.isdir() else 0o644)
    with open(good_plugin, "rb") as handle:
        header = handle.read(10)
    assert header[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert header[3] & 0x08 == 0       # no file name in the gzip header


def test_extract_writes_verified_members(good_plugin, tmp_path):
    dest = tmp_path / "out"
    written = open_plugin(good_plugin).extract(str(dest))
    assert sorted(os.path.relpath(path, dest) for path in written) == [
        "manifest.json", "recipe.ks", "rpms/agent-1.0-1.noarch.rpm", "rpms/agent-lib-1.0-1.noarch.rpm"]
    with pytest.raises(NodePluginError, match="File exists"):  # never overwrites
        open_plugin(good_plugin).extract(str(dest))
    assert sorted(os.listdir(dest)) == ["manifest.json", "recipe.ks", "rpms"]


def test_extract_removes_what_it_wrote_when_the_file_changed_underneath(good_plugin, tmp_path):
    archive = open_plugin(good_plugin)
    members = _members(good_plugin)
    tampered = [(info, data[:-1] + bytes([data[-1] ^ 1]) if info.name.endswith("lib-1.0-1.noarch.rpm") else data)
                for info, data in members]
    _write(good_plugin, tampered)
    dest = tmp_path / "out"
    with pytest.raises(NodePluginError, match="digest mismatch"):
        archive.extract(str(dest))
    assert not os.path.exists(dest / "rpms" / "agent-1.0-1.noarch.rpm")


@pytest.mark.parametrize("case, words", [
    ("absolute", ["member '/etc/cron.d/evil' refused: absolute name"]),
    ("dotdot", ["member 'rpms/../../evil' refused: '..' in name"]),
    ("symlink", ["member 'rpms/link.rpm' refused: symbolic link (to '/etc/shadow')"]),
    ("hardlink", ["member 'rpms/hard.rpm' refused: hard link (to 'recipe.ks')"]),
    ("device", ["member 'rpms/dev' refused: device file"]),
    ("fifo", ["member 'rpms/fifo' refused: fifo"]),
    ("duplicate", ["member 'recipe.ks' refused: appears twice"]),
    ("unlisted", ["member 'rpms/extra.rpm' refused: not listed in manifest.json"]),
    ("unlisted-dir", ["member 'etc' refused: not listed in manifest.json"]),
    ("oversize", ["member 'rpms/agent-1.0-1.noarch.rpm' refused: oversize"]),
    ("digest", ["member 'rpms/agent-lib-1.0-1.noarch.rpm' refused: digest mismatch"]),
    ("nevra", ["member 'rpms/agent-1.0-1.noarch.rpm' refused: RPM header says 'agent-1.0-1.noarch', "
               "the manifest says agent-9.9-1.noarch"]),
    ("recipe", ["recipe.ks: line 1: 'network' is not supported"]),
    ("recipe-repo", ["repo 'x' points at 'file:///srv/repo'"]),
    ("missing", ["member 'rpms/agent-lib-1.0-1.noarch.rpm' refused: listed in manifest.json but missing"]),
    ("not-first", ["member 'recipe.ks' refused: manifest.json must be the first member"]),
    ("schema", ["manifest does not match the plugin format 1 schema at packages/0/role"]),
    ("recipe-digest", ["member 'recipe.ks' refused: digest mismatch"]),
])
def test_tampered_plugins_are_refused(good_plugin, tmp_path, case, words):
    members = _members(good_plugin)
    by_name = {info.name: data for info, data in members}
    path = str(tmp_path / "tampered.plugin.tar.gz")
    lib = "rpms/agent-lib-1.0-1.noarch.rpm"
    if case == "absolute":
        members.append((_info("/etc/cron.d/evil"), b"x"))
    elif case == "dotdot":
        members.append((_info("rpms/../../evil"), b"x"))
    elif case == "symlink":
        members.insert(3, (_info("rpms/link.rpm", tarfile.SYMTYPE, "/etc/shadow"), None))
    elif case == "hardlink":
        members.append((_info("rpms/hard.rpm", tarfile.LNKTYPE, "recipe.ks"), None))
    elif case == "device":
        members.append((_info("rpms/dev", tarfile.CHRTYPE), None))
    elif case == "fifo":
        members.append((_info("rpms/fifo", tarfile.FIFOTYPE), None))
    elif case == "duplicate":
        members.insert(2, (_info("recipe.ks"), by_name["recipe.ks"]))
    elif case == "unlisted":
        members.append((_info("rpms/extra.rpm"), b"x"))
    elif case == "unlisted-dir":
        members.append((_info("etc", tarfile.DIRTYPE), None))
    elif case == "oversize":
        members = [(info, data + b"\0" * 10 if info.name == "rpms/agent-1.0-1.noarch.rpm" else data)
                   for info, data in members]
    elif case == "digest":
        members = [(info, data[:-1] + bytes([data[-1] ^ 1]) if info.name == lib else data) for info, data in members]
    elif case == "nevra":
        members = _with_manifest(members, lambda m: m["packages"][0].update(nevra="agent-9.9-1.noarch"))
    elif case in ("recipe", "recipe-repo"):
        recipe = (b"network --bootproto=dhcp\n" if case == "recipe"
                  else b"repo --name=x --baseurl=file:///srv/repo\n%packages\nagent\n%end\n")
        members = [(info, recipe if info.name == "recipe.ks" else data) for info, data in members]
        members = _with_manifest(members, lambda m: m["recipe"].update(sha256=hashlib.sha256(recipe).hexdigest()))
    elif case == "recipe-digest":
        members = [(info, b"# changed\n" + data if info.name == "recipe.ks" else data) for info, data in members]
    elif case == "missing":
        members = [(info, data) for info, data in members if info.name != lib]
    elif case == "not-first":
        members = members[1:2] + members[:1] + members[2:]
    elif case == "schema":
        members = _with_manifest(members, lambda m: m["packages"][0].update(role="extra"))
    _refused(_write(path, members), *words)


def test_each_refusal_is_one_line_naming_the_file(good_plugin, tmp_path):
    members = _members(good_plugin) + [(_info("/abs"), b"x")]
    message = _refused(_write(str(tmp_path / "t.plugin.tar.gz"), members))
    first = message.splitlines()[0]
    assert first.startswith(str(tmp_path / "t.plugin.tar.gz") + ": member '/abs' refused")


def test_limits_bound_every_member_and_the_total(good_plugin):
    _refused(good_plugin, "oversize", "at most 1000 allowed", limits=Limits(max_member_bytes=1000))
    _refused(good_plugin, "more than 5000 bytes", limits=Limits(max_total_bytes=5000))
    _refused(good_plugin, "member 'manifest.json' refused: oversize", limits=Limits(max_manifest_bytes=10))
    _refused(good_plugin, "more than 2 members", limits=Limits(max_members=2))


def test_size_counted_not_trusted(good_plugin, tmp_path):
    """A member whose tar header claims fewer bytes than the manifest is caught by counting."""
    members = _members(good_plugin)
    members = [(info, data[:100] if info.name == "rpms/agent-lib-1.0-1.noarch.rpm" else data)
               for info, data in members]
    _refused(_write(str(tmp_path / "short.plugin.tar.gz"), members), "digest mismatch")


def test_not_a_tarball(tmp_path):
    path = tmp_path / "junk.plugin.tar.gz"
    path.write_bytes(b"this is not gzip")
    _refused(str(path), "not a gzip'd tar plugin")
    empty = _write(str(tmp_path / "empty.plugin.tar.gz"), [])
    _refused(empty, "no manifest.json")


def test_signed_plugin_verifies_and_tampering_is_caught(tmp_path, rpms, key, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    request = _request(tmp_path, rpms, sign_key=key.fingerprint, gnupg_home=key.home)
    result = build_plugin(request)
    archive = open_plugin(result.path, keyring=key.public_key)
    assert archive.signer == key.fingerprint.lower()
    assert archive.signature.startswith(b"-----BEGIN PGP SIGNATURE-----")
    # Second run: the existing signature is still valid, so nothing changes.
    assert build_plugin(request).changed is False
    # A manifest changed after signing (the digests updated consistently) fails the signature.
    members = _with_manifest(_members(result.path), lambda m: m.update(summary="changed"))
    _refused(_write(str(tmp_path / "t.plugin.tar.gz"), members),
             "member 'manifest.json.asc' refused: bad signature: it does not match the data", keyring=key.public_key)
    other = rpmhelpers.make_key("Other Vendor")
    _refused(result.path, "bad signature: no key of the keyring made it", keyring=other.public_key)


def test_unsigned_plugin_with_keyring_is_refused(good_plugin, key):
    _refused(good_plugin, "member 'manifest.json.asc' refused: missing", keyring=key.public_key)
    _refused(good_plugin, "no keyring was given", require_signature=True)


def test_manifest_semantics(good_plugin):
    manifest = json.loads(_members(good_plugin)[0][1])
    assert validate_manifest(manifest).to_dict() == manifest
    for change, words in [
        (lambda m: m["node"].update(versions=">=2.5,,"), "node/versions"),
        (lambda m: m["packages"].append(dict(m["packages"][0])), "listed twice"),
        (lambda m: m["packages"][0].update(role="dependency"), "no package has the role 'plugin'"),
        (lambda m: m.update(persist=["/"]), "'/' cannot be persisted"),
        (lambda m: m.update(persist=["/etc/../x"]), "schema at persist/0"),
        (lambda m: m.update(format=2), "schema at format"),
        (lambda m: m.update(extra=1), "Additional properties"),
    ]:
        changed = json.loads(json.dumps(manifest))
        change(changed)
        with pytest.raises(NodePluginError, match=words):
            validate_manifest(changed)
    with pytest.raises(NodePluginError, match="not UTF-8 JSON"):
        parse_manifest(b"{")


# -- pathological JSON, dates and bounded messages ------------------------------------------------

DEEP = 200_000


@pytest.mark.parametrize("raw, words", [
    (b"[" * DEEP + b"]" * DEEP, "nests arrays or objects more than 8 deep"),
    (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "nests arrays or objects more than 8 deep"),
    (b'{"format": [[[[[[[[[1]]]]]]]]]}', "nests arrays or objects more than 8 deep"),
    (b"1" * 100_000, "a number has more than 18 digits"),
    (b'{"format": -1' + b"0" * 5000 + b"}", "a number has more than 18 digits"),
    (b'{"format": 1.0}', "'1.0' is not an integer"),
    (b'{"format": 1e400}', "'1e400' is not an integer"),
    (b'{"format": NaN}', "NaN is not a number JSON allows"),
    (b'{"format": -Infinity}', "-Infinity is not a number JSON allows"),
    (b'{"format": 1, "format": 1}', "the key 'format' appears twice in one object"),
    (b'{"name": "agent\\n"}', "name: control character U+000A"),
    (b'{"packages": [{"file": "x\\u0000"}]}', "packages/0/file: control character U+0000"),
    (b'{"summary": "\\ud800"}', "summary: control character U+D800"),
    (b'{"\\u001b[2J": 1}', "control character U+001B"),
    (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
    (b'{"name": "\xff"}', "not UTF-8 JSON (byte 0xff at offset 10)"),
    (b"", "not UTF-8 JSON"),
    (b'"' + b"[" * DEEP + b'"', "schema at (top)"),  # brackets inside a string are not nesting
])
def test_pathological_json_is_refused_cleanly(raw, words):
    with pytest.raises(NodePluginError) as caught:
        parse_manifest(raw, where="p.plugin.tar.gz: manifest.json")
    message = str(caught.value)
    assert message.startswith("p.plugin.tar.gz: manifest.json: ") and words in message, message
    assert len(message) < 600 and "\x1b" not in message


def _good_manifest(good_plugin) -> dict:
    return json.loads(_members(good_plugin)[0][1])


@pytest.mark.parametrize("created", [
    "2023-13-01T00:00:00Z", "2023-02-30T00:00:00Z", "2023-11-14T24:00:00Z", "2023-11-14T22:13:60Z",
    "\u0662\u0660\u0662\u0663-11-14T22:13:20Z", "2023-11-14T22:13:20+00:00", "2023-11-14 22:13:20Z",
    "2023-11-14T22:13:20.5Z", "2023-11-14T22:13:20z",
])
def test_created_must_be_an_rfc3339_utc_time(good_plugin, created):
    manifest = _good_manifest(good_plugin)
    manifest["created"] = created
    with pytest.raises(NodePluginError, match="created"):
        parse_manifest(canonical_json(manifest))


def test_schema_messages_are_bounded_and_escaped(good_plugin):
    manifest = _good_manifest(good_plugin)
    manifest["name"] = "x" * 100_000 + "\u202e"
    with pytest.raises(NodePluginError) as caught:
        validate_manifest(manifest)
    assert len(str(caught.value)) < 700 and "\u202e" not in str(caught.value)


def test_huge_arrays_stop_at_the_schema_quickly(good_plugin):
    manifest = _good_manifest(good_plugin)
    manifest["packages"] = [dict(manifest["packages"][0], file=f"rpms/a{index}.rpm") for index in range(20_000)]
    with pytest.raises(NodePluginError, match="schema at packages"):
        validate_manifest(manifest)
    manifest = _good_manifest(good_plugin)
    manifest["persist"] = [f"/etc/x{index}" for index in range(300)]
    with pytest.raises(NodePluginError, match="schema at persist"):
        validate_manifest(manifest)


# -- tar headers tarfile would read without a bound ------------------------------------------------

def _raw_header(name: str, kind: bytes, size: int, fmt=tarfile.GNU_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o644
    return info.tobuf(format=fmt)


def _gzip_blocks(path: str, blocks) -> str:
    """Write a gzip'd tar from raw 512-byte-aligned pieces (an iterable of bytes), streamed."""
    with gzip.open(path, "wb", compresslevel=1) as handle:
        for block in blocks:
            handle.write(block)
        handle.write(b"\0" * 1024)
    return path


def _zeros(count: int, chunk: int = 1024 ** 2):
    while count > 0:
        yield b"\0" * min(chunk, count)
        count -= chunk


def test_a_huge_pax_header_is_refused_before_it_is_read(good_plugin, tmp_path):
    size = 256 * 1024 ** 2  # tarfile reads an extended header into memory at once
    path = _gzip_blocks(str(tmp_path / "bomb.plugin.tar.gz"),
                        [_raw_header("././@PaxHeader", tarfile.XHDTYPE, size), *_zeros(size)])
    tracemalloc.start()
    try:
        _refused(path, f"an extended header of {size} bytes (at most 65536)")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 ** 2


def test_chained_and_sparse_headers_are_refused(good_plugin, tmp_path):
    record = b"19 comment=chained\n"
    pax = _raw_header("././@PaxHeader", tarfile.XHDTYPE, len(record)) + record.ljust(512, b"\0")
    chained = _gzip_blocks(str(tmp_path / "chain.plugin.tar.gz"), [pax] * 5000 + [_raw_header("manifest.json",
                                                                                              tarfile.REGTYPE, 0)])
    _refused(chained, "more than 4 extended headers in a row")
    long_names = _gzip_blocks(str(tmp_path / "long.plugin.tar.gz"),
                              [_raw_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 512) + b"a" * 512] * 5000)
    _refused(long_names, "more than 4 extended headers in a row")
    sparse = _gzip_blocks(str(tmp_path / "sparse.plugin.tar.gz"),
                          [_raw_header("manifest.json", tarfile.GNUTYPE_SPARSE, 0)])
    _refused(sparse, "a sparse member")
    members = _members(good_plugin)
    members[0][0].pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "x"}
    _refused(_write(str(tmp_path / "pax-sparse.plugin.tar.gz"), members), "a sparse member")


def test_member_names_in_messages_are_escaped_and_bounded(good_plugin, tmp_path):
    name = "rpms/" + "\x1b[31m" * 10 + "x" * 10_000
    message = _refused(_write(str(tmp_path / "t.plugin.tar.gz"), _members(good_plugin) + [(_info(name), b"x")]),
                       "refused: not listed in manifest.json")
    assert "\x1b" not in message and len(message) < 600


# -- keyrings and signatures -------------------------------------------------------------------------

@pytest.mark.parametrize("case, words", [
    ("missing", "the keyring file does not exist"),
    ("folder", "the keyring is not a regular file"),
    ("fifo", "the keyring is not a regular file"),
    ("device", "the keyring is not a regular file"),
    ("empty", "the keyring holds no OpenPGP public key"),
    ("garbage", "the keyring holds no OpenPGP public key"),
    ("huge", "the keyring is larger than"),
])
def test_a_bad_keyring_is_named_never_called_not_signed(good_plugin, tmp_path, case, words):
    keyring = tmp_path / "vendor.asc"
    if case == "folder":
        keyring.mkdir()
    elif case == "fifo":
        os.mkfifo(keyring)
    elif case == "device":
        keyring = "/dev/zero"
    elif case == "empty":
        keyring.write_bytes(b"")
    elif case == "garbage":
        keyring.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n")
    elif case == "huge":
        keyring.write_bytes(b"x" * (5 * 1024 ** 2))
    message = _refused(good_plugin, words, keyring=str(keyring))
    assert message.startswith(f"{keyring}: ") and "not signed" not in message


def test_a_missing_tmpdir_falls_back_to_tmp(rpms, key, tmp_path, monkeypatch):
    """The keyring's GnuPG home lives in the run folder, which falls back to /tmp when TMPDIR is missing."""
    signed = build_plugin(_request(tmp_path, rpms, sign_key=key.fingerprint, gnupg_home=key.home)).path
    missing = str(tmp_path / "no-such-tmpdir")
    monkeypatch.setattr(tempfile, "tempdir", missing)
    monkeypatch.setattr(outputs, "_run_dir", None)
    archive = open_plugin(signed, keyring=key.public_key)
    assert archive.signer == key.fingerprint.lower()
    assert outputs.run_dir().startswith("/tmp/") and not os.path.exists(missing)


@pytest.fixture(scope="module")
def expired(tmp_path_factory):
    return crafted.expired_key(str(tmp_path_factory.mktemp("expired")))


def _signed_copy(good_plugin: str, dest: str, signature: bytes) -> str:
    return crafted.PluginParts(good_plugin).write(dest, signature=signature)


def test_a_signature_by_an_expired_key_says_so(good_plugin, tmp_path, expired):
    home, public = expired
    signature = crafted.sign_as_of(home, _members(good_plugin)[0][1])
    plugin = _signed_copy(good_plugin, str(tmp_path / "signed.plugin.tar.gz"), signature)
    _refused(plugin, "member 'manifest.json.asc' refused: bad signature: it was made with the key",
             "which expired on 2020-01-02", keyring=public)


def test_a_revoked_key_verifies_nothing(good_plugin, tmp_path):
    key = rpmhelpers.make_key("Revoked Vendor")
    signature = crafted.sign(key, _members(good_plugin)[0][1])
    _home, public = crafted.revoked_copy(key, str(tmp_path))
    plugin = _signed_copy(good_plugin, str(tmp_path / "signed.plugin.tar.gz"), signature)
    _refused(plugin, f"bad signature: it was made with the key {key.key_id.lower()}, which is revoked", keyring=public)
    open_plugin(plugin, keyring=key.public_key)  # the same signature, before the revocation
    headers = [read_header(path) for path in rpmhelpers.signed_rpms(key).by_name.values()]
    with pytest.raises(NodePluginError, match=f"signed with key {key.key_id.lower()}, which is revoked"):
        check_signatures(headers, public)
    check_signatures(headers, key.public_key)
