# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keyrings and signatures through `build --keyring` and `pack --keyring`: a missing, unreadable, endless or
garbage keyring is named as such (never "not signed"); a manifest signed by another key, by an expired key or
by a revoked one is refused saying so; RPMs signed by a revoked key are refused by the packager."""
from __future__ import annotations

import os

import pytest

from tests.hostile import crafted
from tests.hostile.crafted import PluginParts
from tests.unit import rpmhelpers


def _keyring(case, kind: str) -> str:
    path = os.path.join(case.inputs, "vendor.asc")
    if kind == "missing":
        return path
    if kind == "folder":
        os.mkdir(path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        return "/dev/zero"
    elif kind == "garbage":
        case.file("vendor.asc", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n")
    elif kind == "empty":
        case.file("vendor.asc", b"")
    elif kind == "huge":
        case.file("vendor.asc", b"\0" * (5 * 1024 ** 2))
    elif kind == "canary":
        return case.canary_file  # a host file given as the keyring: named, its content never shown
    return path


BAD_KEYRINGS = {
    "missing": "the keyring file does not exist",
    "folder": "the keyring is not a regular file",
    "fifo": "the keyring is not a regular file",
    "device": "the keyring is not a regular file",
    "garbage": "the keyring holds no OpenPGP public key",
    "empty": "the keyring holds no OpenPGP public key",
    "huge": "the keyring is larger than",
    "canary": "the keyring holds no OpenPGP public key",
}


@pytest.mark.parametrize("kind", sorted(BAD_KEYRINGS))
def test_build_names_a_bad_keyring(case, build_inputs, kind):
    build_inputs.keep_previous(case)
    keyring = _keyring(case, kind)
    outcome = case.cli(*build_inputs.args(case.out, build_inputs.good_plugin, extra=["--keyring", keyring]),
                       says=[BAD_KEYRINGS[kind]], names=[keyring], timeout=120)
    assert "not signed" not in outcome.stderr


@pytest.mark.parametrize("kind", ["garbage", "missing"])
def test_pack_names_a_bad_keyring(case, pack_inputs, kind):
    keyring = _keyring(case, kind)
    outcome = case.cli(*pack_inputs.args(case.out, "--keyring", keyring), says=[BAD_KEYRINGS[kind]], names=[keyring])
    assert "not signed" not in outcome.stderr


@pytest.fixture(scope="module")
def signing(hostile_root):
    """A valid key, an expired one (GnuPG home and public key) and the valid key's revoked public key."""
    folder = os.path.join(hostile_root, "keys")
    os.mkdir(folder)
    key = rpmhelpers.make_key("Hostile Suite Vendor")
    expired_home, expired_public = crafted.expired_key(folder)
    _revoked_home, revoked_public = crafted.revoked_copy(key, folder)
    return key, expired_home, expired_public, revoked_public


def test_an_unsigned_plugin_with_a_good_keyring_is_not_signed(case, build_inputs, signing):
    build_inputs.keep_previous(case)
    key = signing[0]
    case.cli(*build_inputs.args(case.out, build_inputs.good_plugin, extra=["--keyring", key.public_key]),
             says=["member 'manifest.json.asc' refused: missing: the plugin is not signed"],
             names=[build_inputs.good_plugin])


def test_signed_by_another_key(case, build_inputs, signing):
    build_inputs.keep_previous(case)
    key, _home, expired_public, _revoked = signing
    parts = PluginParts(build_inputs.good_plugin)
    path = parts.write(case.file("signed.plugin.tar.gz", b""), signature=crafted.sign(key, parts.data("manifest.json")))
    case.cli(*build_inputs.args(case.out, path, extra=["--keyring", expired_public]),
             says=["bad signature: no key of the keyring made it"], names=[path])


def test_signed_by_an_expired_key(case, build_inputs, signing):
    build_inputs.keep_previous(case)
    _key, expired_home, expired_public, _revoked = signing
    parts = PluginParts(build_inputs.good_plugin)
    signature = crafted.sign_as_of(expired_home, parts.data("manifest.json"))
    path = parts.write(case.file("signed.plugin.tar.gz", b""), signature=signature)
    case.cli(*build_inputs.args(case.out, path, extra=["--keyring", expired_public]),
             says=["bad signature: it was made with the key", "which expired on 2020-01-02"], names=[path])


def test_signed_by_a_revoked_key(case, build_inputs, signing):
    build_inputs.keep_previous(case)
    key, _home, _expired, revoked_public = signing
    parts = PluginParts(build_inputs.good_plugin)
    path = parts.write(case.file("signed.plugin.tar.gz", b""), signature=crafted.sign(key, parts.data("manifest.json")))
    case.cli(*build_inputs.args(case.out, path, extra=["--keyring", revoked_public]),
             says=[f"it was made with the key {key.key_id.lower()}, which is revoked"], names=[path])
    # What held: the same plugin verifies with the key before its revocation (the build goes on to the
    # compatibility check, which this plugin passes, so it is stopped by a missing output folder instead).
    missing = os.path.join(case.out, "no-such-folder", "node.iso")
    case.cli("build", "--iso", build_inputs.base_iso, "--plugin", path, "--keyring", key.public_key, "-o", missing,
             says=["does not exist"], names=[os.path.dirname(missing)])


def test_pack_refuses_rpms_signed_by_a_revoked_key(case, pack_inputs, signing):
    key, _home, _expired, revoked_public = signing
    signed = rpmhelpers.signed_rpms(key)
    args = pack_inputs.args(case.out, "--keyring", revoked_public)
    args[args.index("--rpm") + 1] = signed.by_name["agent"]
    args[args.index("--repo") + 1] = signed.dir
    case.cli(*args, names=[revoked_public],
             says=["not signed by a key of the keyring", f"signed with key {key.key_id.lower()}, which is revoked"])
