# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rebuild and certification pipelines, in seconds: a tiny real ISO, a real plugin, a fake image session.

The appliance is the only part replaced (FakeSession answers rpm queries from a package list and
keeps written files in memory); ISO reading and writing, squashfs, boot configs and records are real.
What the appliance really does is proven by the integration tests.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pycdlib
import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _records as records
from ansible_collections.ovirt.node_plugins.plugins.module_utils._apply import ApplyRequest, apply_plugins
from ansible_collections.ovirt.node_plugins.plugins.module_utils._build import BuildRequest, build_and_certify
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._iso import IsoReader, rewrite_iso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._nodeiso import NodeIso
from ansible_collections.ovirt.node_plugins.plugins.module_utils._overlay import ImageChanges
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin
from ansible_collections.ovirt.node_plugins.plugins.module_utils._persist import BOOT_HOOK, PERSIST_LISTS_DIR
from ansible_collections.ovirt.node_plugins.plugins.module_utils._rootfs import CommandResult, SelinuxState
from ansible_collections.ovirt.node_plugins.plugins.module_utils._verify import VerifyRequest, verify_iso
from tests.unit.plugins.module_utils import isohelpers

PLUGIN_SPEC = """Name: orch-plugin
Version: 1.0
Release: 1
Summary: plugin of the orchestration tests
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
test
%install
mkdir -p %{buildroot}/opt/orch
echo hello > %{buildroot}/opt/orch/hello.txt
%files
/opt/orch
"""
BASE_PACKAGES = ["ovirt-node-testpkg-1.2-3.noarch"]


class FakeSession:
    """Stands in for RootImageSession: rpm answers from a package list, files kept in memory.

    An edit starts from the base's packages (with ``chain``, from what the last edit left: an edit of an edited
    ISO); a read-only session (verify) sees what the last edit left.
    """

    opened: list[dict] = []
    # What %pre/%post --nochroot scripts "wrote" under $LIVE_ROOT: ISO path (relative) -> bytes.
    live_edits: dict[str, bytes] = {}
    state: dict = {}
    # Package name -> names it requires (what rpm -e --test reports as "needed by").
    requires: dict[str, list[str]] = {}
    # What a fake dracut writes; every command line the session ran.
    initramfs: bytes = b"rebuilt initramfs\n"
    # What the fake lsinitrd lists of it.
    initramfs_listing = "usr/lib/modules/6.1.0-99-test/extra/orch_mod.ko\n"
    commands: list[tuple[str, ...]] = []
    chain = False

    def __init__(self, root_image, **options):
        FakeSession.opened.append({"root_image": root_image, **options})
        size = root_image.size if not isinstance(root_image, str) else os.path.getsize(root_image)
        grown = (options.get("grow_to_mib") or 0) * 1024 * 1024
        # What the overlay would say: no block changed (the fake writes nothing into the image).
        self.changes = ImageChanges(overlay=options.get("overlay") or "", block_size=options.get("block_size", 131072),
                                    base_size=size, size=max(size, grown), blocks=())
        if not FakeSession.state or not (options.get("readonly") or FakeSession.chain):  # an edit of the base image
            FakeSession.state.clear()
            FakeSession.state.update(packages=list(BASE_PACKAGES), files={
                "/etc/system-release": b"oVirt Node Hypervisor release 3.1.0 (0.1.el6)\n"})
        self.packages = FakeSession.state["packages"]
        self.files = FakeSession.state["files"]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def rpm_binary(self):
        return "/usr/bin/rpm"

    def run_rpm(self, args):
        return self.run([self.rpm_binary(), *args])

    def remove(self, paths, **_options):
        FakeSession.commands.append(("rm", "-f", *paths))
        for path in paths:
            self.files.pop(path, None)

    def _names(self):
        return {nevra.rsplit("-", 2)[0]: nevra for nevra in self.packages}

    def run(self, argv, **_options):
        FakeSession.commands.append(tuple(argv))
        if argv[:2] == ["rm", "-f"]:
            for path in argv[2:]:
                self.files.pop(path, None)
            return CommandResult(tuple(argv), 0, "", 0.0)
        if argv[:2] == ["sh", "-c"] and argv[3:4] == ["rebuild-initramfs"]:
            listing = f"@@ovirt-node-plugins: the initramfs holds\n{FakeSession.initramfs_listing}"
            return CommandResult(tuple(argv), 0, f"depmod and dracut ran\n{listing}", 0.0)
        if "-e" in argv:  # rpm -e [--test] names: refused while an installed package requires one of them
            names = [word for word in argv[argv.index("-e") + 1:] if not word.startswith("-")]
            needed = [f"\t{wanted} is needed by (installed) {nevra}" for name, nevra in self._names().items()
                      if name not in names for wanted in FakeSession.requires.get(name, []) if wanted in names]
            if needed:
                return CommandResult(tuple(argv), 1, "error: Failed dependencies:\n" + "\n".join(needed), 0.0)
            if "--test" not in argv:
                self.packages[:] = [nevra for nevra in self.packages if nevra.rsplit("-", 2)[0] not in names]
            return CommandResult(tuple(argv), 0, "", 0.0)
        if "--qf" in argv and argv[argv.index("--qf") + 1].startswith("@@name="):
            asked = list(argv[argv.index("--qf") + 2:])
            found = [name for name in self._names() if name in asked]
            return CommandResult(tuple(argv), 0, "".join(f"@@name={name}\n" for name in found), 0.0)
        if "--dbpath" in argv:  # the base image's packages
            return CommandResult(tuple(argv), 0, "".join(f"{nevra}\n" for nevra in BASE_PACKAGES), 0.0)
        if "-qa" in argv:
            lines = [f"rpm\t{nevra} (none)" for nevra in self.packages]
            lines += [f"installed\t{nevra.rsplit('-', 2)[0]}\t{'-'.join(nevra.rsplit('-', 2)[1:])}\tMon Nov 30 2026"
                      for nevra in self.packages]
            return CommandResult(tuple(argv), 0, "\n".join(lines) + "\n", 0.0)
        if "--qf" not in argv:  # rpm -V, sh -c listings: nothing to report
            return CommandResult(tuple(argv), 0, "", 0.0)
        names = argv[argv.index("--qf") + 2:]
        lines = [f"{nevra.rsplit('-', 2)[0]}\t{'-'.join(nevra.rsplit('-', 2)[1:])}\tMon Nov 30 2026"
                 for nevra in self.packages if nevra.rsplit("-", 2)[0] in names]
        return CommandResult(tuple(argv), 0, "\n".join(lines) + "\n", 0.0)

    def run_script(self, body, **_options):
        return CommandResult(("sh",), 0, "", 0.0)

    def install_rpms(self, rpm_files, **_options):
        for path in rpm_files:
            nevra = os.path.basename(path)[:-len(".rpm")]
            self.packages[:] = [have for have in self.packages if have.rsplit("-", 2)[0] != nevra.rsplit("-", 2)[0]]
            self.packages.append(nevra)
        return CommandResult(("rpm", "-U"), 0, "", 0.0)

    def read(self, path):
        return self.files[path]

    def write(self, path, content, **_options):
        self.files[path] = content

    def exists(self, path):
        return path in self.files

    def listdir(self, path):
        return sorted(name[len(path) + 1:] for name in self.files if name.startswith(path + "/"))

    def use_view(self, view):
        return None

    def download_tree(self, path, local_dir):
        if path.endswith("-initramfs"):
            os.makedirs(local_dir, exist_ok=True)
            with open(os.path.join(local_dir, "initramfs.img"), "wb") as handle:
                handle.write(FakeSession.initramfs)
            return
        for relative, content in FakeSession.live_edits.items():
            target = os.path.join(local_dir, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(content)

    def selinux_state(self):
        return SelinuxState(False, None, None)

    def relabel(self):
        return "not needed: the image has no enforced SELinux policy"


@functools.cache
def _plugin_rpm() -> str:
    top = os.path.join(isohelpers._session_dir(), "orch-rpmbuild")  # pylint: disable=protected-access
    os.makedirs(os.path.join(top, "SPECS"), exist_ok=True)
    spec = os.path.join(top, "SPECS", "orch.spec")
    with open(spec, "w", encoding="utf-8") as handle:
        handle.write(PLUGIN_SPEC)
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", spec], check=True,
                   stdout=subprocess.DEVNULL)
    folder = os.path.join(top, "RPMS", "noarch")
    return os.path.join(folder, os.listdir(folder)[0])


def _pack(tmp_path, recipe: str | None = None, persist: tuple[str, ...] = ()) -> str:
    packages = tmp_path / "image-packages.txt"
    packages.write_text("".join(f"{nevra}\n" for nevra in BASE_PACKAGES))
    recipe_path = None
    if recipe is not None:
        recipe_path = tmp_path / "recipe.ks"
        recipe_path.write_text(recipe)
    return build_plugin(PluginBuildRequest(name="orch-plugin", version="1.0", rpms=[_plugin_rpm()],
                                           output=str(tmp_path), target_packages=str(packages),
                                           recipe=str(recipe_path) if recipe_path else None,
                                           node_versions=">=3.0", persist=list(persist))).path


@pytest.fixture(name="plugin")
def fixture_plugin(tmp_path):
    return _pack(tmp_path)


NOCHROOT_RECIPE = """repo --name=orch --baseurl=file://rpms
bootloader --append "orch.debug=1 !rhgb"
%packages
orch-plugin
%end
%post --nochroot
echo note > "$LIVE_ROOT/isolinux/orch-note.txt"
%end
"""


@pytest.fixture(autouse=True)
def fresh_sessions():
    FakeSession.opened = []
    FakeSession.live_edits = {}
    FakeSession.state = {}
    FakeSession.requires = {}
    FakeSession.commands = []
    FakeSession.chain = False
    FakeSession.initramfs_listing = "usr/lib/modules/6.1.0-99-test/extra/orch_mod.ko\n"


@pytest.fixture(name="opens")
def fixture_opens(monkeypatch):
    """Counts pycdlib opens per file."""
    counts: collections.Counter = collections.Counter()
    real_open = pycdlib.PyCdlib.open

    def counting_open(self, filename, *args, **kwargs):
        counts[os.path.realpath(filename)] += 1
        return real_open(self, filename, *args, **kwargs)

    monkeypatch.setattr(pycdlib.PyCdlib, "open", counting_open)
    return counts


def _apply(src, plugin, dest, **options):
    return apply_plugins(ApplyRequest(src=src, plugins=[plugin], dest=dest, **options), session_factory=FakeSession)


def test_one_apply_opens_the_base_once_and_one_verify_opens_the_output_once(tmp_path, plugin, opens, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    result = _apply(base, plugin, str(tmp_path / "out.iso"))
    assert result.changed and result.update == 1
    assert opens[os.path.realpath(base)] == 1
    opens.clear()
    verify_iso(VerifyRequest(src=result.path, base=base), session_factory=FakeSession)
    assert opens[os.path.realpath(result.path)] == 1
    assert opens[os.path.realpath(base)] == 1


def test_check_mode_reports_the_update_number_and_writes_nothing(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    planned = _apply(base, plugin, str(tmp_path), check_mode=True, extra_kernel_args=["a=1"])
    assert planned.changed and planned.reason == "would build" and planned.update == 1
    assert planned.path == str(tmp_path / "base-orch-plugin.iso")
    assert "a=1" in planned.kernel_args["/isolinux/isolinux.cfg#start"]
    assert "a=1" in planned.kernel_args["/isolinux/efiboot.img:/EFI/BOOT/grub.cfg#Start oVirt Node Hypervisor"]
    assert "a=1" not in planned.kernel_args_before["/isolinux/isolinux.cfg#start"]
    assert FakeSession.opened == []
    assert sorted(os.listdir(tmp_path)) == ["base.iso", "image-packages.txt", "orch-plugin-1.0.plugin.tar.gz"]


def test_a_rerun_is_a_no_op_and_a_forced_rebuild_gives_the_same_bytes(tmp_path, plugin, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    first = _apply(base, plugin, str(tmp_path / "out.iso"))
    again = _apply(base, plugin, str(tmp_path / "out.iso"))
    assert not again.changed and again.reason.startswith("up to date") and again.sha256 == first.sha256
    forced = _apply(base, plugin, str(tmp_path / "out.iso"), force=True)
    assert forced.changed and forced.sha256 == first.sha256
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith(".")) == []


def test_an_edit_of_an_edit_counts_updates_and_keeps_history(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    first = _apply(base, plugin, str(tmp_path / "one.iso"))
    second = _apply(first.path, plugin, str(tmp_path / "two.iso"), extra_kernel_args=["b=2"])
    assert second.update == 2
    with IsoReader(second.path) as reader:
        record = records.BuildRecord.from_json(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
        assert reader.exists("/isolinux/update1/manifest-rpm.txt") and reader.exists("/isolinux/update2")
    assert record.update == 2 and record.base_sha256 == first.sha256
    assert [entry["update"] for entry in record.history] == [1]
    assert record.plugins[0].manifest.name == "orch-plugin"


def test_a_missing_output_folder_and_the_base_as_output_are_refused(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    with pytest.raises(NodePluginError, match="folder does not exist"):
        _apply(base, plugin, str(tmp_path / "missing" / "out.iso"))
    with pytest.raises(NodePluginError, match="overwrite the base"):
        _apply(base, plugin, base)
    assert FakeSession.opened == [] and not (tmp_path / "missing").exists()


def _tree_check(result):
    return next(check for check in result.checks if check.name == "iso_tree")


def test_the_iso_tree_is_accounted_for_with_and_without_the_base(tmp_path):
    FakeSession.live_edits = {"isolinux/orch-note.txt": b"note\n"}
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, _pack(tmp_path, NOCHROOT_RECIPE), str(tmp_path / "out.iso"), volume_id="Renamed_Node")
    for given in (base, None):
        check = _tree_check(verify_iso(VerifyRequest(src=built.path, base=given), session_factory=FakeSession))
        assert check.passed, check.violations
        assert any("1 files the plugins' scripts added" in line for line in check.evidence)
        assert any("/isolinux/vmlinuz0" in line for line in check.evidence if line.startswith("boot files"))


@pytest.mark.parametrize("tamper, complaint", [
    ({"/isolinux/vmlinuz0": b"not a kernel\n"}, "boot file /isolinux/vmlinuz0 was changed in the ISO"),
    ({"/isolinux/initrd0.img": b"not an initrd\n"}, "boot file /isolinux/initrd0.img was changed"),
    ({"/isolinux/isolinux.cfg": b"default evil\n"}, "the boot config /isolinux/isolinux.cfg differs"),
    ({"/isolinux/orch-note.txt": b"swapped\n"}, "differs from what the plugins' scripts wrote"),
])
def test_a_changed_boot_file_or_config_is_not_certified(tmp_path, tamper, complaint):
    FakeSession.live_edits = {"isolinux/orch-note.txt": b"note\n"}
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, _pack(tmp_path, NOCHROOT_RECIPE), str(tmp_path / "out.iso"))
    replace = {}
    for iso_path, content in tamper.items():
        local = tmp_path / iso_path.strip("/").replace("/", "_")
        local.write_bytes(content)
        replace[iso_path] = str(local)
    tampered = str(tmp_path / "tampered.iso")
    rewrite_iso(built.path, tampered, replace_files=replace, implant=True)
    for given in (base, None):
        check = _tree_check(verify_iso(VerifyRequest(src=tampered, base=given), session_factory=FakeSession))
        assert any(complaint in violation for violation in check.violations), check.violations


def test_the_wrong_base_is_named_as_such(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, plugin, str(tmp_path / "out.iso"))
    other = isohelpers.cached_iso(compressor="xz").iso
    check = _tree_check(verify_iso(VerifyRequest(src=built.path, base=other), session_factory=FakeSession))
    assert "is not the one this ISO was built from" in check.violations[0]


@pytest.mark.parametrize("path", ["isolinux/vmlinuz0", "EFI/BOOT/grub.cfg", "isolinux/ovirt-plugins-build.json",
                                  "isolinux/update1/manifest-rpm.txt", "isolinux/version"])
def test_scripts_may_not_touch_the_boot_chain_or_the_records(tmp_path, path):
    FakeSession.live_edits = {path: b"replaced by a script\n"}
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    with pytest.raises(NodePluginError, match=f"script of orch-plugin changed /{path}"):
        _apply(base, _pack(tmp_path, NOCHROOT_RECIPE), str(tmp_path / "out.iso"))
    assert sorted(os.listdir(tmp_path)) == ["base.iso", "image-packages.txt", "orch-plugin-1.0.plugin.tar.gz",
                                            "recipe.ks"]


def test_a_stale_boot_info_table_is_caught(tmp_path, plugin):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils._isomd5 import implant
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, plugin, str(tmp_path / "out.iso"))
    with IsoReader(built.path) as reader:
        offset, _size = reader.extent("/isolinux/isolinux.bin")
    with open(built.path, "r+b") as handle:  # a wrong checksum in the table, as a careless remaster leaves it
        handle.seek(offset + 20)
        handle.write(b"\xde\xad\xbe\xef")
    implant(built.path, force=True)
    result = verify_iso(VerifyRequest(src=built.path, base=base), session_factory=FakeSession)
    boot = next(check for check in result.checks if check.name == "boot_records")
    assert any("boot info table of /isolinux/isolinux.bin is stale (wrong checksum)" in v for v in boot.violations), \
        [check.to_dict() for check in result.checks][:3]


def _build(base, plugin, dest, **options):
    request = BuildRequest(apply=ApplyRequest(src=base, plugins=[plugin], dest=dest, **options))
    return build_and_certify(request, session_factory=FakeSession)


def _digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_build_puts_only_a_certified_iso_in_place_and_reuses_its_certification(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    out = tmp_path / "out"
    out.mkdir()
    first = _build(base, plugin, str(out / "node.iso"))
    assert first.certified and not first.reused and first.applied.path == str(out / "node.iso")
    report = json.loads((out / "node.iso.certification.json").read_text())
    assert report["certified"] and report["iso"] == str(out / "node.iso") and report["sha256"] == _digest(out / "node.iso")
    assert sorted(os.listdir(out)) == ["node.iso", "node.iso.certification.json"]
    FakeSession.opened = []
    again = _build(base, plugin, str(out / "node.iso"))
    assert again.certified and again.reused and FakeSession.opened == []  # no appliance at all
    (out / "node.iso.certification.json").unlink()
    third = _build(base, plugin, str(out / "node.iso"))
    assert third.certified and not third.reused and not third.applied.changed  # certified again, not rebuilt
    assert [session.get("readonly") for session in FakeSession.opened] == [True]


def test_an_uncertified_build_is_kept_apart_and_the_certified_output_stays(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    out = tmp_path / "out"
    out.mkdir()
    _build(base, plugin, str(out / "node.iso"))
    before = {name: _digest(out / name) for name in os.listdir(out)}
    original_write = FakeSession.write
    try:
        # The plugin's record never reaches the image: certification must fail.
        FakeSession.write = lambda self, path, content, **options: None if path.startswith(
            records.RECORDS_DIR) else original_write(self, path, content)
        rejected = _build(base, plugin, str(out / "node.iso"), extra_kernel_args=["x=1"])
    finally:
        FakeSession.write = original_write
    assert not rejected.certified and rejected.rejected == str(out / "node.rejected.iso")
    assert {name: _digest(out / name) for name in before} == before
    assert sorted(os.listdir(out)) == ["node.iso", "node.iso.certification.json", "node.rejected.iso",
                                       "node.rejected.iso.certification.json"]
    assert json.loads((out / "node.rejected.iso.certification.json").read_text())["certified"] is False


def test_a_report_or_rejected_path_that_is_an_input_is_refused_before_any_work(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    request = BuildRequest(apply=ApplyRequest(src=base, plugins=[plugin], dest=str(tmp_path / "o.iso")), report=base)
    with pytest.raises(NodePluginError, match="report would overwrite the base ISO"):
        build_and_certify(request, session_factory=FakeSession)
    assert FakeSession.opened == [] and not (tmp_path / "o.iso").exists()
    with pytest.raises(NodePluginError, match="report would overwrite the ISO to certify"):
        verify_iso(VerifyRequest(src=base, report=base), session_factory=FakeSession)


def _squashfs_listing(iso_path):
    with IsoReader(iso_path) as reader:
        offset, _size = reader.extent("/LiveOS/squashfs.img")
    listing = subprocess.run(["unsquashfs", "-lls", "-o", str(offset), iso_path], capture_output=True, text=True,
                             check=True).stdout
    return sorted(line.split(None, 5)[-1].split(" -> ")[0] for line in listing.splitlines()
                  if "squashfs-root" in line)


def test_the_squashfs_reuses_the_base_blocks_and_says_so(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, plugin, str(tmp_path / "out.iso"))
    assert built.squashfs["path_taken"] == "incremental" and built.squashfs["blocks_compressed"] == 0
    assert built.squashfs["blocks_reused"] + built.squashfs["blocks_sparse"] == built.squashfs["blocks_total"]
    assert _squashfs_listing(built.path) == _squashfs_listing(base)


def test_another_compressor_takes_the_full_path_and_says_why(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, plugin, str(tmp_path / "out.iso"), compression="xz")
    assert built.squashfs["path_taken"] == "full"
    assert built.squashfs["reason"] == "the compressor changes (gzip -> xz): every block is new"
    with NodeIso(built.path) as iso:
        assert iso.squashfs.superblock.compressor == "xz"
    assert _squashfs_listing(built.path) == _squashfs_listing(base)


def test_a_layout_the_writer_cannot_keep_takes_the_full_path_and_keeps_every_file(tmp_path, plugin):
    """The root image's blocks shared with another file (mksquashfs deduplicates equal files)."""
    tiny = isohelpers.cached_iso()
    tree = tmp_path / "squash"
    (tree / "LiveOS").mkdir(parents=True)
    shutil.copyfile(tiny.root_image, tree / "LiveOS" / "ext3fs.img")
    shutil.copyfile(tiny.root_image, tree / "LiveOS" / "spare-copy.img")
    squashfs = tmp_path / "squashfs.img"
    subprocess.run(["mksquashfs", str(tree), str(squashfs), "-comp", "gzip", "-noappend", "-no-progress", "-quiet"],
                   check=True)
    base = str(tmp_path / "base.iso")
    rewrite_iso(tiny.iso, base, replace_files={"/LiveOS/squashfs.img": str(squashfs)}, implant=True)
    built = _apply(base, plugin, str(tmp_path / "out.iso"))
    assert built.squashfs["path_taken"] == "full" and built.squashfs["reason"]
    assert _squashfs_listing(built.path) == _squashfs_listing(base) == [
        "squashfs-root", "squashfs-root/LiveOS", "squashfs-root/LiveOS/ext3fs.img",
        "squashfs-root/LiveOS/spare-copy.img"]


def test_declared_persist_paths_get_the_boot_hook_in_the_image(tmp_path):
    written = {}
    original_write = FakeSession.write

    def recording_write(self, path, content, **options):
        written[path] = (content, options.get("mode"))
        original_write(self, path, content)

    FakeSession.write = recording_write
    try:
        base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
        _apply(base, _pack(tmp_path, persist=("/opt/orch/hello.txt",)), str(tmp_path / "out.iso"))
    finally:
        FakeSession.write = original_write
    assert written[PERSIST_LISTS_DIR + "/orch-plugin"][0].endswith(b"\n/opt/orch/hello.txt\n")
    hook, mode = written[BOOT_HOOK]
    assert hook.startswith(b"#!/bin/sh") and mode == 0o755


def test_a_plugin_without_persist_paths_adds_no_hook(tmp_path, plugin):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    _apply(base, plugin, str(tmp_path / "out.iso"))
    assert BOOT_HOOK not in FakeSession.state["files"]


# -- the plugin lifecycle: upgrades, removals, rebase, kernel modules ---------------------------------------

LIFECYCLE_SPEC = """Name: {name}
Version: {version}
Release: 1
Summary: package of the lifecycle tests
License: MIT
BuildArch: noarch
AutoReqProv: no
{requires}
%description
test
%install
mkdir -p %{{buildroot}}{folder}
echo {version} > %{{buildroot}}{folder}/{name}.txt
%files
{folder}
"""


@functools.cache
def _rpm(name: str, version: str, requires: str = "", folder: str = "") -> str:
    top = os.path.join(isohelpers._session_dir(), f"lifecycle-{name}-{version}")  # pylint: disable=protected-access
    os.makedirs(os.path.join(top, "SPECS"), exist_ok=True)
    spec = os.path.join(top, "SPECS", f"{name}.spec")
    with open(spec, "w", encoding="utf-8") as handle:
        handle.write(LIFECYCLE_SPEC.format(name=name, version=version, folder=folder or f"/opt/{name}",
                                           requires=f"Requires: {requires}" if requires else ""))
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", spec], check=True,
                   stdout=subprocess.DEVNULL)
    found = os.path.join(top, "RPMS", "noarch")
    return os.path.join(found, os.listdir(found)[0])


def _pack_plugin(tmp_path, name: str, version: str, rpms: list[str], *, recipe: str | None = None,
                 node_versions: str = ">=3.0", kind: str = "standard", persist: tuple[str, ...] = ()) -> str:
    folder = pathlib.Path(tempfile.mkdtemp(prefix=f"{name}-{version}-", dir=tmp_path))
    packages = folder / "image-packages.txt"
    packages.write_text("".join(f"{nevra}\n" for nevra in BASE_PACKAGES))
    recipe_path = None
    if recipe is not None:
        recipe_path = folder / "recipe.ks"
        recipe_path.write_text(recipe)
    return build_plugin(PluginBuildRequest(name=name, version=version, rpms=rpms, output=str(folder),
                                           target_packages=str(packages), node_versions=node_versions, kind=kind,
                                           recipe=str(recipe_path) if recipe_path else None,
                                           persist=list(persist))).path


AGENT_RECIPE = """repo --name=agent --baseurl=file://rpms
bootloader --append "orch.debug=1 !quiet !rhgb"
%packages
orch-agent
orch-lib
%end
"""


def _agent_v1(tmp_path, **options) -> str:
    return _pack_plugin(tmp_path, "orch-agent", "1.0", [_rpm("orch-agent", "1.0", "orch-lib"), _rpm("orch-lib", "1.0")],
                        recipe=AGENT_RECIPE, **options)


@pytest.fixture(name="chained")
def fixture_chained():
    """Edits of edited ISOs start from what the last edit left in the fake image."""
    FakeSession.chain = True


def _record(iso_path: str) -> records.BuildRecord:
    with NodeIso(iso_path) as iso:
        return iso.build_record.record


def _certified_against(iso_path: str, *bases: str) -> None:
    for base in bases:
        result = verify_iso(VerifyRequest(src=iso_path, base=base), session_factory=FakeSession)
        assert result.certified, (base, result.violations)


def test_an_upgrade_erases_what_the_old_version_brought_and_nothing_needs(tmp_path, chained):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    one = _apply(base, _agent_v1(tmp_path), str(tmp_path / "one.iso"))
    assert sorted(FakeSession.state["packages"]) == sorted(BASE_PACKAGES + ["orch-agent-1.0-1.noarch",
                                                                            "orch-lib-1.0-1.noarch"])
    v2 = _pack_plugin(tmp_path, "orch-agent", "2.0", [_rpm("orch-agent", "2.0")])
    two = _apply(one.path, v2, str(tmp_path / "two.iso"))
    assert two.upgraded == [{"name": "orch-agent", "from": "1.0", "to": "2.0"}] and two.erased == ["orch-lib"]
    assert sorted(FakeSession.state["packages"]) == sorted(BASE_PACKAGES + ["orch-agent-2.0-1.noarch"])
    files = FakeSession.state["files"]
    assert f"{records.RECORDS_DIR}/orch-lib" not in files and f"{records.RECORDS_DIR}/orch-agent" in files
    record = _record(two.path)
    assert [(plugin.name, plugin.version, plugin.brought) for plugin in record.plugins] == \
        [("orch-agent", "2.0", ("orch-agent",))]
    assert record.erased == ["orch-lib"] and record.origin["sha256"] == _digest(base)
    with IsoReader(two.path) as reader:
        delta = records.decode_manifest("rpm", reader.read_bytes("/isolinux/update2/delta-manifest-rpm.txt"))
        assert "- orch-lib-1.0-1.noarch (none)" in delta and "+ orch-agent-2.0-1.noarch (none)" in delta
        assert reader.exists("/ovirt-plugins/orch-agent-2.0.plugin.tar.gz")
        assert not reader.exists("/ovirt-plugins/orch-agent-1.0.plugin.tar.gz")
    # The v1 kernel arguments are taken back: v2's recipe asks for none.
    assert "orch.debug=1" not in two.kernel_args["/isolinux/isolinux.cfg#start"]
    _certified_against(two.path, one.path, base)


def test_what_an_installed_package_still_needs_is_kept_and_said(tmp_path, chained):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    one = _apply(base, _agent_v1(tmp_path), str(tmp_path / "one.iso"))
    FakeSession.requires = {"ovirt-node-testpkg": ["orch-lib"]}  # as if a base package needed it
    v2 = _pack_plugin(tmp_path, "orch-agent", "2.0", [_rpm("orch-agent", "2.0")])
    two = _apply(one.path, v2, str(tmp_path / "two.iso"))
    assert two.erased == [] and two.kept == {"orch-lib": "needed by ovirt-node-testpkg-1.2-3.noarch"}
    assert _record(two.path).plugins[0].brought == ("orch-agent", "orch-lib")


def test_a_removal_takes_the_plugin_back_and_certifies_against_the_origin(tmp_path, chained):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    one = _apply(base, _agent_v1(tmp_path, persist=("/opt/orch-agent/orch-agent.txt",)), str(tmp_path / "one.iso"))
    assert "quiet" not in one.kernel_args["/isolinux/isolinux.cfg#start"]
    out = tmp_path / "out"
    out.mkdir()
    removal = ApplyRequest(src=one.path, plugins=[], remove=["orch-agent"], dest=str(out))
    planned = apply_plugins(dataclasses.replace(removal, check_mode=True), session_factory=FakeSession)
    assert planned.changed and planned.reason == "would build" and planned.path == str(out / "one-without-orch-agent.iso")
    assert planned.removed == [{"name": "orch-agent", "version": "1.0", "brought": ["orch-agent", "orch-lib"]}]
    assert planned.erased == ["orch-agent", "orch-lib"] and os.listdir(out) == []
    gone = apply_plugins(removal, session_factory=FakeSession)
    assert gone.changed and gone.update == 2 and gone.erased == ["orch-agent", "orch-lib"]
    assert FakeSession.state["packages"] == BASE_PACKAGES
    files = FakeSession.state["files"]
    assert not [path for path in files if path.startswith((records.RECORDS_DIR, PERSIST_LISTS_DIR, BOOT_HOOK))]
    # Arguments it added go; 'quiet', which every entry of the base had, comes back; 'rhgb' (some entries) does not.
    with IsoReader(base) as reader:
        before = {config.where: config.entries for config in reader.boot_configs()}
    assert gone.kernel_args["/isolinux/isolinux.cfg#check"] == before["/isolinux/isolinux.cfg"][1].kernel_args
    assert gone.kernel_args["/isolinux/isolinux.cfg#start"] == [
        arg for arg in before["/isolinux/isolinux.cfg"][0].kernel_args if arg != "rhgb"]
    assert any("'rhgb'" in note for note in gone.notes)
    record = _record(gone.path)
    assert record.plugins == [] and record.removed[0]["name"] == "orch-agent" and record.packages == {}
    with IsoReader(gone.path) as reader:
        assert reader.read_bytes("/isolinux/update2/removed_plugins") == b"orch-agent 1.0\n"
        assert not reader.exists("/ovirt-plugins/orch-agent-1.0.plugin.tar.gz")
    _certified_against(gone.path, base, one.path)
    again = apply_plugins(removal, session_factory=FakeSession)
    assert not again.changed and again.reason.startswith("up to date")
    with pytest.raises(NodePluginError, match="the ISO holds no plugin 'orch-missing'"):
        apply_plugins(dataclasses.replace(removal, remove=["orch-missing"]), session_factory=FakeSession)
    with pytest.raises(NodePluginError, match="the ISO holds no plugins"):
        apply_plugins(dataclasses.replace(removal, src=base), session_factory=FakeSession)


def test_build_removes_and_certifies_in_one_step(tmp_path, chained):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    one = _apply(base, _agent_v1(tmp_path), str(tmp_path / "one.iso"))
    built = build_and_certify(BuildRequest(apply=ApplyRequest(src=one.path, plugins=[], remove=["orch-agent"],
                                                              dest=str(tmp_path / "gone.iso"))),
                              session_factory=FakeSession)
    assert built.certified and built.applied.erased == ["orch-agent", "orch-lib"]


def _newer_base(tmp_path, version: str) -> str:
    """The tiny ISO as a newer Node release: its isolinux/version names another version."""
    text = isohelpers.VERSION_FILE.replace(f"VERSION={isohelpers.VERSION}", f"VERSION={version}")
    local = tmp_path / "version"
    local.write_text(text)
    newer = str(tmp_path / f"node-{version}.iso")
    rewrite_iso(isohelpers.cached_iso().iso, newer, replace_files={"/isolinux/version": str(local)}, implant=True)
    return newer


def test_rebase_applies_the_carried_tarballs_to_a_newer_node(tmp_path, chained):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    agent = _agent_v1(tmp_path)
    older = _pack_plugin(tmp_path, "orch-old", "0.1", [_rpm("orch-old", "0.1")], node_versions="<3.2")
    custom = apply_plugins(ApplyRequest(src=base, plugins=[agent, older], dest=str(tmp_path / "custom.iso")),
                           session_factory=FakeSession)
    newer = _newer_base(tmp_path, "3.2.0")
    FakeSession.opened = []
    FakeSession.state.clear()  # the newer Node has none of the plugins
    rebase = ApplyRequest(src=newer, plugins=[], rebase_from=custom.path, dest=str(tmp_path / "rebased.iso"))
    with pytest.raises(NodePluginError, match=r"outside the Node range of: orch-old 0.1 .*3\.2\.0"):
        apply_plugins(rebase, session_factory=FakeSession)
    assert FakeSession.opened == [] and not os.path.exists(tmp_path / "rebased.iso")
    rebase.skip_incompatible = True
    planned = apply_plugins(dataclasses.replace(rebase, check_mode=True), session_factory=FakeSession)
    assert planned.reason == "would build" and [plugin["name"] for plugin in planned.plugins] == ["orch-agent"]
    assert FakeSession.opened == [] and not os.path.exists(tmp_path / "rebased.iso")
    rebased = apply_plugins(rebase, session_factory=FakeSession)
    assert rebased.changed and rebased.update == 1 and [item["name"] for item in rebased.skipped_plugins] == ["orch-old"]
    record = _record(rebased.path)
    assert [(plugin.name, plugin.sha256) for plugin in record.plugins] == [("orch-agent", _digest(agent))]
    assert record.rebased_from["sha256"] == _digest(custom.path) and record.origin["sha256"] == _digest(newer)
    assert record.history == []
    _certified_against(rebased.path, newer)
    assert not apply_plugins(rebase, session_factory=FakeSession).changed


def test_a_carried_tarball_that_differs_from_its_record_is_refused(tmp_path):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    custom = _apply(base, _agent_v1(tmp_path), str(tmp_path / "custom.iso"))
    other = _pack_plugin(tmp_path, "orch-agent", "1.0", [_rpm("orch-agent", "2.0")])  # same name, other bytes
    tampered = str(tmp_path / "tampered.iso")
    rewrite_iso(custom.path, tampered, replace_files={"/ovirt-plugins/orch-agent-1.0.plugin.tar.gz": other},
                implant=True)
    with pytest.raises(NodePluginError, match="is not the one the build record names"):
        apply_plugins(ApplyRequest(src=_newer_base(tmp_path, "3.2.0"), plugins=[], rebase_from=tampered,
                                   dest=str(tmp_path / "rebased.iso")), session_factory=FakeSession)
    check = _tree_check(verify_iso(VerifyRequest(src=tampered), session_factory=FakeSession))
    assert any("orch-agent-1.0.plugin.tar.gz is not the one the build record names" in v for v in check.violations)


KMOD_RECIPE = """repo --name=kmod --baseurl=file://rpms
bootloader --append "rd.driver.pre=orch_mod"
%packages
orch-kmod
%end
"""
KERNEL_RELEASE = "6.1.0-99-test"


def _kmod_plugin(tmp_path) -> str:
    module = _rpm("orch-kmod", "1.0", folder=f"/lib/modules/{KERNEL_RELEASE}/extra")
    return _pack_plugin(tmp_path, "orch-kmod", "1.0", [module], recipe=KMOD_RECIPE, kind="kmod")


def _fake_kernel(path) -> None:
    """The header of a bzImage that names its release (what the build reads of a kernel)."""
    head = bytearray(4096)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x300 - 0x200).to_bytes(2, "little")
    text = f"{KERNEL_RELEASE} (test@example) #1 SMP".encode()
    head[0x300:0x300 + len(text)] = text
    path.write_bytes(bytes(head))


def _image_with_dracut(tmp_path) -> str:
    """The tiny ISO whose image has dracut and /lib/modules/<release>, its kernel naming that release, and a copy
    of its initramfs inside efiboot.img."""
    tiny = isohelpers.cached_iso()
    image = tmp_path / "ext3fs.img"
    shutil.copyfile(tiny.root_image, image)
    script = tmp_path / "debugfs.cmds"
    dracut = tmp_path / "dracut"
    dracut.write_text("#!/bin/sh\n")
    script.write_text("mkdir /lib\nmkdir /lib/modules\nmkdir /lib/modules/" + KERNEL_RELEASE +
                      f"\nwrite {dracut} /usr/bin/dracut\n")
    subprocess.run(["debugfs", "-w", "-f", str(script), str(image)], check=True, capture_output=True)
    tree = tmp_path / "squash" / "LiveOS"
    tree.mkdir(parents=True)
    shutil.copyfile(image, tree / "ext3fs.img")
    squashfs = tmp_path / "squashfs.img"
    subprocess.run(["mksquashfs", str(tree.parent), str(squashfs), "-comp", "gzip", "-noappend", "-no-progress",
                    "-quiet"], check=True)
    kernel = tmp_path / "vmlinuz0"
    _fake_kernel(kernel)
    efiboot = tmp_path / "efiboot.img"
    with IsoReader(tiny.iso) as reader:
        reader.extract("/isolinux/efiboot.img", str(efiboot))
        initrd = tmp_path / "initrd0.img"
        reader.extract("/isolinux/initrd0.img", str(initrd))
    subprocess.run(["mcopy", "-i", str(efiboot), str(initrd), "::/EFI/BOOT/initrd0.img"], check=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    base = str(tmp_path / "dracut-base.iso")
    rewrite_iso(tiny.iso, base, replace_files={"/LiveOS/squashfs.img": str(squashfs), "/isolinux/vmlinuz0": str(kernel),
                                               "/isolinux/efiboot.img": str(efiboot)}, implant=True)
    return base


def test_a_kmod_plugin_gets_the_initramfs_rebuilt_wherever_the_base_had_it(tmp_path, chained):
    base = _image_with_dracut(tmp_path)
    built = _apply(base, _kmod_plugin(tmp_path), str(tmp_path / "kmod.iso"))
    assert built.initramfs["rebuild"] and built.initramfs["kernel_version"] == KERNEL_RELEASE
    assert built.initramfs["drivers"] == ["orch_mod"] and built.initramfs["files"] == ["/isolinux/initrd0.img"]
    assert built.initramfs["efi_files"] == {"/isolinux/efiboot.img": ["/EFI/BOOT/initrd0.img"]}
    rebuilt = [argv for argv in FakeSession.commands if argv[3:4] == ("rebuild-initramfs",)]
    assert rebuilt and rebuilt[0][4:] == (KERNEL_RELEASE, "orch_mod", "/var/tmp/.ovirt-node-plugins-initramfs", "yes")
    assert any(log.step == "depmod and initramfs (the image's dracut)" for log in built.scriptlet_logs)
    with NodeIso(built.path) as iso:
        assert iso.read_bytes("/isolinux/initrd0.img") == FakeSession.initramfs
        inside = os.path.join(str(tmp_path), "inside.img")
        subprocess.run(["mcopy", "-n", "-i", iso.efi_image("/isolinux/efiboot.img"), "::/EFI/BOOT/initrd0.img",
                        inside], check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        assert open(inside, "rb").read() == FakeSession.initramfs
        assert iso.build_record.record.initramfs["sha256"] == hashlib.sha256(FakeSession.initramfs).hexdigest()
    _certified_against(built.path, base)
    # A changed initramfs that the build did not make is not certified, in the tree or inside efiboot.img.
    other = tmp_path / "other-initrd.img"
    other.write_bytes(b"someone else's initramfs\n")
    tampered = str(tmp_path / "tampered.iso")
    rewrite_iso(built.path, tampered, replace_files={"/isolinux/initrd0.img": str(other)}, implant=True)
    check = _tree_check(verify_iso(VerifyRequest(src=tampered, base=base), session_factory=FakeSession))
    assert any("the initramfs /isolinux/initrd0.img is not the one the build rebuilt" in v for v in check.violations)
    # Removing the plugin rebuilds it again (without the module).
    gone = apply_plugins(ApplyRequest(src=built.path, plugins=[], remove=["orch-kmod"], dest=str(tmp_path / "g.iso")),
                         session_factory=FakeSession)
    assert gone.initramfs["rebuild"] and gone.initramfs["drivers"] == []
    _certified_against(gone.path, built.path, base)


def test_a_kmod_plugin_that_declares_early_boot_modules_is_refused_without_dracut(tmp_path):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    with pytest.raises(NodePluginError, match=r"orch-kmod declares early-boot modules \(rd.driver.pre=orch_mod\), "
                                              "but the image has no dracut"):
        _apply(base, _kmod_plugin(tmp_path), str(tmp_path / "kmod.iso"), check_mode=True)
    assert FakeSession.opened == []


def test_scripts_may_not_write_the_carried_tarballs(tmp_path):
    FakeSession.live_edits = {"ovirt-plugins/orch-plugin-1.0.plugin.tar.gz": b"swapped by a script\n"}
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    with pytest.raises(NodePluginError, match="changed /ovirt-plugins/orch-plugin-1.0.plugin.tar.gz"):
        _apply(base, _pack(tmp_path, NOCHROOT_RECIPE), str(tmp_path / "out.iso"))


def test_the_command_line_asks_for_removals_and_rebases(monkeypatch):
    from ansible_collections.ovirt.node_plugins.plugins.module_utils import _build, _cli
    asked = []

    def build(request, **_options):
        asked.append(request)
        raise NodePluginError("stop here")

    monkeypatch.setattr(_build, "build_and_certify", build)
    assert _cli.main(["build", "--iso", "custom.iso", "--remove", "vendor-agent", "--remove", "hello", "-o", "out/"]) == 2
    assert _cli.main(["rebase", "--iso", "new.iso", "--from", "custom.iso", "--skip-incompatible", "-o", "out/"]) == 2
    removal, rebase = (request.apply for request in asked)
    assert removal.remove == ["vendor-agent", "hello"] and removal.plugins == [] and removal.rebase_from is None
    assert rebase.rebase_from == "custom.iso" and rebase.skip_incompatible and rebase.src == "new.iso"


def test_a_record_that_claims_a_boot_file_as_a_carried_tarball_explains_nothing(tmp_path):
    base = isohelpers.copy_of(isohelpers.cached_iso(), str(tmp_path), "base.iso")
    built = _apply(base, _agent_v1(tmp_path), str(tmp_path / "out.iso"))
    kernel = tmp_path / "vmlinuz0"
    kernel.write_bytes(b"a kernel of someone else\n")
    with IsoReader(built.path) as reader:
        record = json.loads(reader.read_bytes(records.BUILD_RECORD_ISO_PATH))
    record["plugins"][0].update(carried="/isolinux/vmlinuz0", sha256=_digest(kernel))
    forged = tmp_path / "record.json"
    forged.write_text(json.dumps(record))
    tampered = str(tmp_path / "tampered.iso")
    rewrite_iso(built.path, tampered, replace_files={"/isolinux/vmlinuz0": str(kernel),
                                                     f"/{records.BUILD_RECORD_ISO_PATH}": str(forged)}, implant=True)
    check = _tree_check(verify_iso(VerifyRequest(src=tampered), session_factory=FakeSession))
    assert any("boot file /isolinux/vmlinuz0 was changed" in violation for violation in check.violations)
    with pytest.raises(NodePluginError, match="does not carry the tarball of orch-agent"):
        apply_plugins(ApplyRequest(src=base, plugins=[], rebase_from=tampered, dest=str(tmp_path / "r.iso")),
                      session_factory=FakeSession)


def test_an_initramfs_without_the_declared_module_is_refused(tmp_path):
    FakeSession.initramfs_listing = "usr/lib/modules/6.1.0-99-test/kernel/fs/ext4/ext4.ko\n"  # dracut skipped it
    base = _image_with_dracut(tmp_path)
    with pytest.raises(NodePluginError, match="lacks the declared early-boot module orch_mod"):
        _apply(base, _kmod_plugin(tmp_path), str(tmp_path / "kmod.iso"))
    assert not os.path.exists(tmp_path / "kmod.iso")
