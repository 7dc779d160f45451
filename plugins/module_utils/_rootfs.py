# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One libguestfs appliance on a Node root filesystem image: files, commands, rpm, relabel, resize.

Everything a plugin brings that can execute (rpm scriptlets, ``%pre``, ``%post``) runs here,
inside the appliance VM, never on the build host. Two views of the image are offered:

- *chroot* (the default): the root image is mounted as the appliance's ``/sysroot`` and commands
  run chrooted into it, with the image's own binaries (its rpm, its shell).
- *nochroot* (``%post --nochroot``): a scratch disk, made on the host from busybox-static and the
  staged ISO tree, becomes the root; the image is mounted inside it at ``INSTALL_ROOT`` and the
  ISO tree is at ``LIVE_ROOT``. Scripts see the image and the ISO, and nothing of the build host.

A session launches the appliance once and switches views by remounting, which costs milliseconds;
a launch costs 5-15 s under TCG, so callers share one session per build.

The root image is a raw file, or any ``ByteSource`` (a root image read lazily out of its squashfs):
a source is served to the appliance over NBD, read-only. A writable session over a source writes
into a qcow2 overlay whose clusters are the squashfs blocks, and says afterwards which blocks
changed (``changes``); a read-only one gets a throwaway overlay, removed at close.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence

from ._accel import apply_libguestfs_env
from ._blockio import ByteSource
from ._errors import NodePluginError
from ._outputs import recording_socket_folders, run_dir
from ._platforms import find_tool
from ._reproducible import source_date_epoch
from ._nbd import NbdExport
from ._overlay import DEFAULT_BLOCK_SIZE, ImageChanges, create_overlay, overlay_changes
from ._run import LOG, run

try:
    import guestfs
    HAS_GUESTFS = True
except ImportError:  # pragma: no cover - reported by the callers with missing_required_lib
    guestfs = None
    HAS_GUESTFS = False

# Inside the scratch root of the nochroot view.
INSTALL_ROOT = "/mnt/sysimage"
LIVE_ROOT = "/mnt/live"
# Private folder inside the image for uploads and command logs; removed on close.
_WORK = "/var/tmp/.ovirt-node-plugins"
_SCRATCH_LABEL = "nodeplugins"
_STATUS_MARK = "@@ovirt-node-plugins-exit-status="
# Finds the image's real rpm (minimal images may also carry busybox's 'rpm' applet) and runs it with the script's
# arguments, in the same appliance command: every command costs about a second under TCG (libguestfs binds /dev,
# /proc and /sys into the image around each one), so the search does not get a command of its own.
_RPM_MARK = "@@ovirt-node-plugins-rpm="
_FIND_RPM = ('for c in /usr/bin/rpm /bin/rpm; do '
             'if "$c" --version 2>/dev/null | grep -q "RPM version"; then '
             f'echo "{_RPM_MARK}$c"; exec "$c" "$@"; fi; done; exit 127')


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What a command inside the appliance did: its exit status and its combined output."""

    argv: tuple[str, ...]
    exit_status: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclasses.dataclass(frozen=True)
class SelinuxState:
    """Whether the image enforces an SELinux policy, and where its file contexts are."""

    enabled: bool
    policy: str | None
    file_contexts: str | None


def _find_busybox() -> str:
    """A static busybox for the scratch root of nochroot scripts (the package named for this platform)."""
    try:
        return find_tool("busybox")
    except NodePluginError as exc:
        raise NodePluginError("busybox is needed for %pre and %post --nochroot scripts but is not installed",
                              hint=exc.hint) from exc


def make_scratch_disk(path: str, live_tree: str | None, *, extra_mib: int = 64) -> None:
    """Make the ext4 scratch disk of the nochroot view: busybox, mount points, the ISO tree.

    Built with ``mke2fs -d`` from a staging folder on the host: no mount, no root, and no
    third-party code runs. The ISO tree is copied into ``LIVE_ROOT``.
    """
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=os.path.dirname(path)) as staging:
        for folder in ("bin", "tmp", "dev", "proc", "sys", INSTALL_ROOT.lstrip("/")):
            os.makedirs(os.path.join(staging, folder), exist_ok=True)
        busybox = os.path.join(staging, "bin", "busybox")
        shutil.copyfile(_find_busybox(), busybox)
        os.chmod(busybox, 0o755)
        # Relative links only: an absolute one would point at the host when seen from here.
        for applet in ("sh", "cp", "mv", "rm", "ls", "cat", "mkdir", "ln", "chmod", "sed", "grep",
                       "find", "echo", "touch", "tee", "test", "env", "head", "tail", "sort", "wc"):
            os.symlink("busybox", os.path.join(staging, "bin", applet))
        live = os.path.join(staging, LIVE_ROOT.lstrip("/"))
        if live_tree:
            shutil.copytree(live_tree, live, symlinks=True)
        else:
            os.makedirs(live)
        size = _tree_size(staging) // (1024 * 1024) + extra_mib
        with open(path, "wb") as disk:
            disk.truncate(size * 1024 * 1024)
        run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", _SCRATCH_LABEL, "-d", staging, path])


def _tree_size(top: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(top):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size + 4096
    return total


def _new_handle():
    """A libguestfs handle whose temporary files and sockets live in this process's run folder.

    libguestfs reads its socket folder from XDG_RUNTIME_DIR when a handle is made (/tmp otherwise),
    and leaves it behind when its process is killed; inside the run folder, the next run removes it.
    """
    private = run_dir()
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = private
    try:
        g = guestfs.GuestFS(python_return_dict=True)
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
    g.set_tmpdir(private)
    # The appliance (kernel, initrd, root built from the host's packages) is a cache worth keeping across
    # runs: where libguestfs keeps it without TMPDIR, unless LIBGUESTFS_CACHEDIR says otherwise.
    g.set_cachedir(os.environ.get("LIBGUESTFS_CACHEDIR") or "/var/tmp")
    return g


class RootImageSession:
    """A libguestfs appliance with a root image (and optionally a scratch disk) attached.

    Use as a context manager. ``root_image`` is a raw image file, or a ``ByteSource`` served over NBD.
    ``readonly=True`` never writes the image: changes go to a temporary overlay that is discarded at close.
    A writable session over a source needs ``overlay``, the path of the qcow2 file that takes its
    writes (clusters of ``block_size`` bytes); after a clean close, ``changes`` lists the changed blocks.
    ``grow_to_mib`` enlarges the image file (or the overlay's virtual size) before launch and its ext
    file system after. ``label`` names the image in messages (default: its path).
    A source that could not be read makes ``close()`` raise a NodePluginError naming the block.
    """

    def __init__(self, root_image: str | ByteSource, *, readonly: bool = False, scratch_disk: str | None = None,
                 grow_to_mib: int | None = None, memory_mib: int = 768,
                 extra_images: Mapping[str, str | ByteSource] | None = None, overlay: str | None = None,
                 block_size: int = DEFAULT_BLOCK_SIZE, label: str | None = None) -> None:
        if not HAS_GUESTFS:
            raise NodePluginError("the Python bindings of libguestfs are not installed",
                                  hint="install the package 'python3-guestfs' (make setup does it)")
        if isinstance(root_image, str):
            if not os.path.isfile(root_image):
                raise NodePluginError("root image not found", path=root_image)
            if overlay is not None:
                raise ValueError("an overlay is made only over a ByteSource; a raw image file is written in place")
        elif readonly and overlay is not None:
            raise ValueError("a readonly session keeps no overlay: libguestfs discards its writes")
        elif not readonly and overlay is None:
            raise ValueError("a writable session over a ByteSource needs an overlay path for its writes")
        if readonly and grow_to_mib and not isinstance(root_image, str):
            raise ValueError("a readonly session over a ByteSource cannot grow it")
        self.root_image = root_image
        self.label = label or (root_image if isinstance(root_image, str) else "the root image")
        self.overlay = overlay
        self.block_size = block_size
        # The NBD export of the root image (a ByteSource) while the session is open, then its statistics.
        self.root_export: NbdExport | None = None
        self._exports: list[NbdExport] = []
        self._throwaway_dir: str | None = None  # overlays of read-only sources, removed at close
        self.changes: ImageChanges | None = None
        self.readonly = readonly
        self.scratch_disk = scratch_disk
        # Other root images (e.g. the base ISO's, for comparison), read-only, mounted at these
        # paths in the chroot view: {mount point: image file}.
        self.extra_images = dict(extra_images or {})
        if self.extra_images and not readonly:
            raise ValueError("extra images are mounted inside the root image: open it readonly")
        self._extra_devices: dict[str, str] = {}
        self.grow_to_mib = grow_to_mib
        self.memory_mib = memory_mib
        self.view: str | None = None
        self._g = None
        self._root_device = "/dev/sda"
        self._scratch_device = "/dev/sdb"
        self.launch_seconds = 0.0
        self._rpm: str | None = None

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> RootImageSession:
        self.launch()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(clean=exc_info[0] is None)

    def launch(self) -> None:
        if self.grow_to_mib and isinstance(self.root_image, str):
            self._grow_file(self.root_image, self.grow_to_mib)
        apply_libguestfs_env()
        started = time.monotonic()
        g = _new_handle()
        g.set_memsize(self.memory_mib)
        try:
            self._add_root_drive(g)
            if self.scratch_disk:
                g.add_drive_opts(self.scratch_disk, format="raw", readonly=False)
            for mount_point, image in self.extra_images.items():
                self._add_drive(g, image, label=f"the image mounted at {mount_point}", readonly=True)
            with recording_socket_folders():
                g.launch()
        except (RuntimeError, NodePluginError) as exc:
            g.close()
            failed = self._stop_exports()
            if failed is not None:
                raise failed.error() from exc
            if isinstance(exc, NodePluginError):
                raise
            raise NodePluginError("the libguestfs appliance did not start", details=str(exc),
                                  hint="run 'libguestfs-test-tool' to see why; on hosts where KVM is broken "
                                       "set OVIRT_NODE_PLUGINS_ACCEL=tcg") from exc
        self._g = g
        devices = g.list_devices()
        first_extra = 2 if self.scratch_disk else 1
        self._extra_devices = dict(zip(self.extra_images, devices[first_extra:]))
        self.launch_seconds = time.monotonic() - started
        LOG.info("libguestfs appliance up in %.1f s", self.launch_seconds)
        try:
            if self.grow_to_mib:
                self._guest(g.e2fsck, self._root_device, forceall=True)
                self._guest(g.resize2fs, self._root_device)
            self.use_view("chroot")
        except NodePluginError:
            self.close(clean=False)
            raise

    def close(self, *, clean: bool = True) -> None:
        """Remove the private work folder from the image, sync, and stop the appliance.

        Then stop the NBD exports: a read they failed raises here, whatever else happened; after a
        clean close of a writable session over a source, ``changes`` holds the changed blocks.
        """
        g, self._g = self._g, None
        if g is None:
            return
        problem = None
        try:
            if clean and not self.readonly:
                self._mount_chroot_view(g)
                g.rm_rf(_WORK)
            g.umount_all()
            g.shutdown()
        except RuntimeError as exc:
            problem = NodePluginError("could not close the root image cleanly", path=self.label, details=str(exc))
        finally:
            g.close()
            failed = self._stop_exports()
        # A source that could not be read is the cause of whatever else went wrong: name it first.
        if failed is not None:
            raise failed.error() from problem
        if problem is not None and clean:
            raise problem
        if clean and self.overlay is not None:
            self.changes = overlay_changes(self.overlay, base_size=self.root_image.size)

    def _add_root_drive(self, g) -> None:
        if isinstance(self.root_image, str) or self.readonly:
            self._add_drive(g, self.root_image, label=self.label, readonly=self.readonly)
            return
        # Writable over a source: every write lands in the overlay, one cluster per squashfs block.
        if self.overlay is None:  # __init__ refuses a writable session over a source without one
            raise NodePluginError("a writable session over a source image needs an overlay for its writes",
                                  path=self.label, hint="give RootImageSession an overlay path")
        export = self._export(self.root_image, self.label)
        size = self.root_image.size
        if self.grow_to_mib:
            size = self._grown_size(size, self.grow_to_mib)
        create_overlay(self.overlay, export.uri, size=size, block_size=self.block_size)
        # Format given, never probed: the header of a file must not decide how it is opened.
        g.add_drive_opts(self.overlay, format="qcow2", readonly=False)

    def _add_drive(self, g, image: str | ByteSource, *, label: str, readonly: bool) -> None:
        """Attach a raw image file, or a ByteSource through its NBD export under a throwaway overlay."""
        if isinstance(image, str):
            g.add_drive_opts(image, format="raw", readonly=readonly)
            return
        # Not libguestfs's own throwaway overlay: add_drive makes it with qemu-img while holding the
        # GIL, and qemu-img must read the export served by threads of this process (a deadlock).
        if self._throwaway_dir is None:
            self._throwaway_dir = tempfile.mkdtemp(prefix="rootfs-overlays-", dir=run_dir())
        throwaway = os.path.join(self._throwaway_dir, f"overlay{len(self._exports)}.qcow2")
        export = self._export(image, label)
        create_overlay(throwaway, export.uri, size=image.size, block_size=self.block_size)
        g.add_drive_opts(throwaway, format="qcow2", readonly=False)

    def _export(self, source: ByteSource, label: str) -> NbdExport:
        export = NbdExport(source, label=label, block_size=self.block_size)
        export.start()
        self._exports.append(export)
        if source is self.root_image:
            self.root_export = export
        return export

    def _stop_exports(self) -> NbdExport | None:
        """Stop every NBD export of the session; return the first one that failed a read, if any."""
        failed = None
        for export in self._exports:
            export.close()
            if export.failures and failed is None:
                failed = export
        self._exports = []
        if self._throwaway_dir is not None:
            shutil.rmtree(self._throwaway_dir, ignore_errors=True)
            self._throwaway_dir = None
        return failed

    def _grown_size(self, current: int, size_mib: int) -> int:
        wanted = size_mib * 1024 * 1024
        if wanted < current:
            raise NodePluginError(f"the root image is {current // (1024 * 1024)} MiB; shrinking it to "
                                  f"{size_mib} MiB is not supported", path=self.label,
                                  hint="use a 'part / --size' at least as large as the current image")
        return wanted

    def _grow_file(self, path: str, size_mib: int) -> None:
        current = os.path.getsize(path)
        wanted = self._grown_size(current, size_mib)
        if wanted > current:
            with open(path, "r+b") as image:
                image.truncate(wanted)

    @property
    def g(self):
        if self._g is None:
            raise NodePluginError("the root image session is not open")
        return self._g

    def _guest(self, call, *args, **kwargs):
        """Call a libguestfs API, turning its RuntimeError into a NodePluginError."""
        try:
            return call(*args, **kwargs)
        except RuntimeError as exc:
            raise NodePluginError(f"libguestfs {call.__name__} failed", path=self.label,
                                  details=str(exc)) from exc

    # -- views ------------------------------------------------------------------------------
    def _mount_chroot_view(self, g) -> None:
        # A readonly drive sits behind a throwaway overlay (libguestfs): mounting it read-write
        # lets commands (rpm -V, queries) write their scratch files without touching the image.
        g.umount_all()
        g.mount(self._root_device, "/")
        for mount_point, device in self._extra_devices.items():
            g.mkdir_p(mount_point)
            g.mount_ro(device, mount_point)

    def use_view(self, view: str) -> None:
        """Mount the image as '/' ("chroot") or the scratch disk with the image inside ("nochroot")."""
        if view == self.view:
            return
        g = self.g
        if view == "chroot":
            self._guest(self._mount_chroot_view, g)
        elif view == "nochroot":
            if not self.scratch_disk:
                raise NodePluginError("a nochroot script needs the scratch disk, and the session has none")
            g.umount_all()
            self._guest(g.mount, self._scratch_device, "/")
            self._guest(g.mount, self._root_device, INSTALL_ROOT)
        else:
            raise ValueError(f"unknown view {view!r}")
        self.view = view

    # -- files ------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return bool(self._guest(self.g.exists, path))

    def read(self, path: str) -> bytes:
        return self._guest(self.g.read_file, path)

    def write(self, path: str, content: bytes, *, mode: int = 0o644) -> None:
        self._guest(self.g.mkdir_p, os.path.dirname(path) or "/")
        self._guest(self.g.write, path, content)
        self._guest(self.g.chmod, mode, path)

    def upload(self, local_path: str, path: str) -> None:
        self._guest(self.g.mkdir_p, os.path.dirname(path) or "/")
        self._guest(self.g.upload, local_path, path)

    def download_tree(self, path: str, local_dir: str) -> None:
        """Copy a folder of the current view to the host (its contents into local_dir)."""
        os.makedirs(local_dir, exist_ok=True)
        self._guest(self.g.copy_out, path.rstrip("/") + "/.", local_dir)

    def remove(self, paths: Sequence[str], *, view: str = "chroot") -> None:
        """Delete files of a view (missing ones are fine), without a command in the image."""
        if paths:
            self.use_view(view)
        for path in paths:
            self._guest(self.g.rm_f, path)

    def listdir(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        return sorted(self._guest(self.g.ls, path))

    # -- commands ---------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            view: str = "chroot", stdin_file: str | None = None) -> CommandResult:
        """Run a command inside the appliance (never on the host); return status and output.

        The command runs through the view's ``/bin/sh`` so that its exit status and its
        combined stdout/stderr are captured even when it fails.
        """
        self.use_view(view)
        g = self.g
        work = _WORK if view == "chroot" else "/tmp"
        self._guest(g.mkdir_p, work)
        # One file carries the output and, on its last line, the exit status: every appliance
        # call costs a round trip, and a command start costs about a second under TCG.
        log = f"{work}/command.log"
        # rpm takes install times and transaction ids from SOURCE_DATE_EPOCH: records and the database
        # then say the same on every rebuild of the same inputs.
        epoch = source_date_epoch()
        variables = {**({"SOURCE_DATE_EPOCH": str(epoch)} if epoch is not None else {}), **(env or {})}
        exports = "".join(f"export {name}={shlex.quote(value)}; " for name, value in variables.items())
        redirect = f" < {shlex.quote(stdin_file)}" if stdin_file else " < /dev/null"
        script = (f"{exports}cd /; ( {shlex.join(argv)} ){redirect} > {log} 2>&1; "
                  f"echo \"{_STATUS_MARK}$?\" >> {log}")
        started = time.monotonic()
        try:
            g.sh(script)
        except RuntimeError as exc:
            raise NodePluginError(f"could not run {argv[0]!r} inside the image", path=self.label,
                                  details=str(exc), hint="the image needs a working /bin/sh") from exc
        seconds = time.monotonic() - started
        content = self._guest(g.read_file, log).decode("utf-8", "replace")
        self._guest(g.rm_f, log)
        output, _sep, status = content.rpartition(_STATUS_MARK)
        exit_status = int(status.strip()) if status.strip().isdigit() else 255
        LOG.debug("in image (%s view): %s -> %d (%.2f s)", view, shlex.join(argv), exit_status, seconds)
        return CommandResult(tuple(argv), exit_status, output, seconds)

    def run_script(self, body: str, *, interpreter: str = "/bin/sh", env: Mapping[str, str] | None = None,
                   view: str = "chroot", name: str = "script") -> CommandResult:
        """Run a recipe script (``%pre``/``%post``) inside the appliance with the given interpreter."""
        self.use_view(view)
        work = _WORK if view == "chroot" else "/tmp"
        path = f"{work}/{name}"
        self.write(path, body.encode("utf-8"), mode=0o700)
        try:
            return self.run([interpreter, path], env=env, view=view)
        finally:
            self._guest(self.g.rm_f, path)

    # -- packages ---------------------------------------------------------------------------
    def rpm_binary(self) -> str:
        """The image's real rpm: minimal images may also carry busybox's 'rpm' applet on the PATH."""
        if self._rpm is not None:
            return self._rpm
        return self.run_rpm(["--version"]).argv[0]

    def run_rpm(self, args: Sequence[str]) -> CommandResult:
        """The image's rpm with these arguments (chroot view); the first call also finds which rpm that is."""
        if self._rpm is not None:
            return self.run([self._rpm, *args])
        found = self.run(["sh", "-c", _FIND_RPM, "find-rpm", *args])
        first, _sep, rest = found.output.partition("\n")
        if not first.startswith(_RPM_MARK):
            raise NodePluginError("the image has no working rpm", path=self.label,
                                  details=found.output.strip()[-2000:],
                                  hint="plugins are installed with the image's own rpm; this image cannot take them")
        self._rpm = first[len(_RPM_MARK):].strip()
        return dataclasses.replace(found, argv=(self._rpm, *args), output=rest)

    def install_rpms(self, rpm_files: Sequence[str], *, nodeps: bool = False,
                     nosignature: bool = True) -> CommandResult:
        """Install or upgrade RPMs with the image's own rpm; scriptlets run in the image.

        ``rpm -U`` upgrades a plugin that an earlier edit installed; ``--replacepkgs`` makes a
        re-application of the same version reinstall it. Dependencies are checked against the
        image's database unless ``nodeps``.
        """
        self.use_view("chroot")
        staged = []
        for rpm_file in rpm_files:
            target = f"{_WORK}/rpms/{os.path.basename(rpm_file)}"
            self.upload(rpm_file, target)
            staged.append(target)
        argv = [self.rpm_binary(), "-Uvh", "--replacepkgs"]
        if nodeps:
            argv.append("--nodeps")
        if nosignature:
            # Signatures are checked on the build host before anything is uploaded (_plugin).
            argv.append("--nosignature")
        try:
            return self.run(argv + staged)
        finally:
            self._guest(self.g.rm_rf, f"{_WORK}/rpms")

    # -- SELinux ----------------------------------------------------------------------------
    def selinux_state(self) -> SelinuxState:
        """Read /etc/selinux/config of the image: is a policy enforced, and where are its contexts."""
        self.use_view("chroot")
        if not self.exists("/etc/selinux/config"):
            return SelinuxState(False, None, None)
        settings = {}
        for line in self.read("/etc/selinux/config").decode("utf-8", "replace").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                settings[key.strip()] = value.strip()
        mode = settings.get("SELINUX", "disabled").lower()
        policy = settings.get("SELINUXTYPE", "targeted")
        contexts = f"/etc/selinux/{policy}/contexts/files/file_contexts"
        enabled = mode != "disabled"
        return SelinuxState(enabled, policy if enabled else None,
                            contexts if enabled and self.exists(contexts) else None)

    def relabel(self, paths: Sequence[str] = ("/",)) -> str:
        """Relabel with the image's own file_contexts; fall back to /.autorelabel. Says what it did."""
        state = self.selinux_state()
        if not state.enabled:
            return "not needed: the image has no enforced SELinux policy"
        if state.file_contexts is None:
            self.write("/.autorelabel", b"")
            return "scheduled: the image has no file_contexts, /.autorelabel makes the Node relabel at boot"
        for path in paths:
            self._guest(self.g.selinux_relabel, state.file_contexts, path, force=True)
        return f"relabelled {', '.join(paths)} with {state.file_contexts}"
