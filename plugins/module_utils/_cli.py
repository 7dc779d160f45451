# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``ovirt-plugin-build`` command: a thin argparse front over the library, no logic of its own.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its flags and sets
``handler`` to a ``_run_<name>(args) -> dict`` function; main() prints the result (text or --json)
and turns every failure into one line on stderr (_module.explain_failure) and exit code 2. To add a
subcommand, write the two functions and list the adder in SUBCOMMANDS; name an output flag
``--output`` or ``--report`` and error hints refer to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._accel import CHOICES as ACCELERATORS, SETTING as ACCEL_SETTING
from ._choices import BOOT_TESTS, COMPRESSORS, PLUGIN_KINDS
from ._module import Failure, check_tmpdir, explain_failure
from ._version import VERSION

if TYPE_CHECKING:  # pragma: no cover - rich is imported only when the progress is shown
    from rich import progress as rich_progress

EXIT_OK = 0
EXIT_NOT_CERTIFIED = 1  # the verdict; no other failure may use it
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C
# Flags whose values are outputs: an OSError hint says "choose another --output".
_OUTPUT_FLAGS = ("output", "report")

PACK_EPILOG = """\
examples:
  # the plugin's own RPM, its dependencies from a folder, for the Node whose package list is known:
  ovirt-plugin-build pack --name vendor-agent --version 1.0 \\
      --rpm vendor-agent-1.0-1.noarch.rpm --repo ./deps \\
      --target-packages manifest-rpm.txt --node-product ovirt-node-iso --node-versions '>=2.5.0, <2.6' \\
      -o dist/

  # the same against the Node ISO itself, with a recipe, persisted config, and a signed manifest:
  ovirt-plugin-build pack --name vendor-agent --version 1.0 --rpm vendor-agent-1.0-1.noarch.rpm \\
      --repo https://repo.example.com/el6/ --target-iso ovirt-node-iso-2.5.0-1.0.fc17.iso \\
      --recipe recipe.ks --persist /etc/vendor-agent/agent.conf --sign-key vendor@example.com -o dist/

Only packages the target image lacks go into the plugin. Every file must lie under /etc, /opt,
/usr/share/man, /usr/lib/python*, /usr/lib/systemd (--kind kmod adds the kernel-module paths).
Set SOURCE_DATE_EPOCH for a fixed 'created' time. See docs/plugin-writers-guide.md.
"""


def _add_pack(subparsers) -> None:
    parser = subparsers.add_parser(
        "pack", help="make a plugin tarball from RPMs (vendor side)",
        description="Make <name>-<version>.plugin.tar.gz: your RPMs plus the dependencies the target Node "
                    "image lacks, a recipe, and a manifest with digests (optionally signed).",
        epilog=PACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("the plugin")
    what.add_argument("--name", required=True, help="plugin name, e.g. vendor-agent")
    what.add_argument("--version", required=True, help="plugin version, e.g. 1.0 (rpm-style, no dash)")
    what.add_argument("--vendor", default="", help="who makes the plugin")
    what.add_argument("--summary", default="", help="one line saying what the plugin does")
    what.add_argument("--rpm", action="append", required=True, metavar="FILE", dest="rpms",
                      help="an RPM of the plugin itself (repeat for several)")
    what.add_argument("--repo", action="append", default=[], metavar="DIR_OR_URL", dest="repos",
                      help="where dependencies come from: a folder of RPMs, or an rpm-md repository "
                           "(folder with repodata/, file://, http:// or https:// URL); repeatable")
    what.add_argument("--recipe", metavar="FILE",
                      help="kickstart-subset recipe (default: install the --rpm packages from rpms/)")
    what.add_argument("--persist", action="append", default=[], metavar="PATH",
                      help="absolute path the plugin needs kept across reboots on stateful installs; repeatable")
    what.add_argument("--kind", choices=PLUGIN_KINDS, default="standard",
                      help="kmod: a kernel-module plugin, also allowed under /lib/modules, /lib/firmware, "
                           "/usr/share, /etc/modprobe.d, /etc/depmod.d")
    what.add_argument("--allow-path", action="append", default=[], metavar="PATH", dest="allow_paths",
                      help="allow files under PATH although it is outside the standard paths (recorded in the "
                           "manifest as an override; use sparingly); repeatable")
    target = parser.add_argument_group("the target Node")
    image = target.add_mutually_exclusive_group(required=True)
    image.add_argument("--target-iso", metavar="ISO", help="the Node ISO the plugin is for (its packages are read)")
    image.add_argument("--target-packages", metavar="FILE",
                       help="the Node's package list: isolinux/manifest-rpm.txt, 'rpm -qa' output, or JSON")
    target.add_argument("--node-product", default="", metavar="P", help="Node product the plugin is for")
    target.add_argument("--node-versions", default="*", metavar="RANGE",
                        help="compatible Node versions, e.g. '>=2.5.0, <2.6' (default: any)")
    trust = parser.add_argument_group("signatures")
    trust.add_argument("--keyring", metavar="FILE",
                       help="public key file: every packaged RPM must be signed by one of its keys")
    trust.add_argument("--sign-key", metavar="KEYID", help="sign manifest.json with this secret key (gpg)")
    trust.add_argument("--gnupg-home", metavar="DIR", help="GnuPG home holding the signing key (default: gpg's)")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                     help="the plugin file, or a folder to write <name>-<version>.plugin.tar.gz into")
    out.add_argument("--check", action="store_true", help="resolve and report only; write nothing")
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_pack, describe=_describe_pack)


def _run_pack(args: argparse.Namespace) -> dict:
    from ._packager import PluginBuildRequest, build_plugin  # pylint: disable=import-outside-toplevel
    request = PluginBuildRequest(
        name=args.name, version=args.version, rpms=args.rpms, output=args.output, vendor=args.vendor,
        summary=args.summary, repos=args.repos, target_packages=args.target_packages, target_iso=args.target_iso,
        node_product=args.node_product, node_versions=args.node_versions, recipe=args.recipe,
        persist=args.persist, allow_paths=args.allow_paths, kind=args.kind, keyring=args.keyring,
        sign_key=args.sign_key, gnupg_home=args.gnupg_home, check_mode=args.check)
    return build_plugin(request).to_dict()


def _describe_pack(result: dict) -> str:
    verb = "would write" if result.get("check_mode") else ("wrote" if result["changed"] else "unchanged")
    lines = [f"{verb}: {result['path']}"]
    if result["sha256"]:
        lines.append(f"sha256: {result['sha256']}  size: {result['size']} bytes")
    for package in result["packages"]:
        lines.append(f"  {package['role']:<10} {package['nevra']}{'' if package['signed'] else '  (unsigned)'}")
    for satisfied in result["satisfied_by_image"]:
        lines.append(f"  in image   {satisfied}")
    return "\n".join(lines)


class _StageProgress:
    """One line per stage on stderr: a rich spinner and timer on a terminal, plain lines otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._progress: rich_progress.Progress | None = None
        self._task: rich_progress.TaskID | None = None
        self._plain = False
        if not enabled:
            return
        if sys.stderr.isatty():
            from rich.console import Console  # pylint: disable=import-outside-toplevel
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # pylint: disable=import-outside-toplevel
            self._progress = Progress(SpinnerColumn(finished_text="done"), TextColumn("{task.description}"),
                                      TimeElapsedColumn(), console=Console(stderr=True))
        else:
            self._plain = True

    def __enter__(self) -> _StageProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._finish_task()
        if self._progress is not None:
            self._progress.stop()

    def _finish_task(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=1, completed=1)

    def stage(self, name: str) -> None:
        self._finish_task()
        if self._progress is not None:
            self._task = self._progress.add_task(name, total=None)
        elif self._plain:
            sys.stderr.write(f"[{name}]\n")
            sys.stderr.flush()


BUILD_EPILOG = """\
examples:
  # rebuild the Node ISO with two plugins, then certify it (exit 0 only when certified):
  ovirt-plugin-build build --iso ovirt-node-iso-2.5.0-1.0.fc17.iso \\
      --plugin vendor-agent-1.0.plugin.tar.gz --plugin hello-plugin-0.1.plugin.tar.gz -o out/

  # the same with an extra kernel argument, a UEFI boot test and a signed report:
  ovirt-plugin-build build --iso base.iso --plugin vendor-agent-1.0.plugin.tar.gz -o out/custom.iso \\
      --kernel-arg vendor.debug=1 --boot-test uefi --sign-key release@example.com

  # remove a plugin from a customized ISO (its packages, records and kernel arguments go), and certify:
  ovirt-plugin-build build --iso out/custom.iso --remove vendor-agent -o out/without-agent.iso

The output keeps every boot path of the base ISO (BIOS, UEFI, hybrid disk). The report is written
next to the ISO as <iso>.certification.json. Vendor scripts run inside a libguestfs appliance. A
plugin the ISO holds is upgraded cleanly: what its older version brought and nothing needs goes.
"""

REBASE_EPILOG = """\
examples:
  # the plugins of a customized 2.5.0 ISO on the 2.6.0 release, certified with a BIOS boot:
  ovirt-plugin-build rebase --iso ovirt-node-iso-2.6.0-1.0.fc17.iso --from out/custom-2.5.0.iso \\
      -o out/custom-2.6.0.iso --boot-test bios

  # leave out the plugins made for older Nodes only (they are reported), and upgrade one on the way:
  ovirt-plugin-build rebase --iso ovirt-node-iso-2.6.0-1.0.fc17.iso --from out/custom-2.5.0.iso \\
      --skip-incompatible --plugin vendor-agent-2.0.plugin.tar.gz -o out/

A customized ISO carries the plugin tarballs it was built with in /ovirt-plugins/ (listed with their
digests in isolinux/ovirt-plugins-build.json); they are read again like any plugin. A plugin whose
Node range excludes the new release is refused before any work unless --skip-incompatible.
"""


def _add_apply_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iso", required=True, metavar="BASE", help="the base Node ISO")
    parser.add_argument("--plugin", action="append", default=[], metavar="PLUGIN", dest="plugins",
                        help="a plugin tarball; repeat for several (applied in order; one the ISO holds is upgraded)")
    parser.add_argument("--remove", action="append", default=[], metavar="NAME", dest="remove",
                        help="remove the plugin NAME that the ISO holds (its packages, records and kernel "
                             "arguments go); repeatable")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the new ISO, or a folder for <base>-<plugin1>_<plugin2>.iso")
    parser.add_argument("--volume-id", help="rename the volume (at most 32 characters)")
    parser.add_argument("--kernel-arg", action="append", default=[], metavar="ARG", dest="kernel_args",
                        help="add a kernel argument to every boot entry; '!name' removes one; repeatable")
    parser.add_argument("--require-signed", action="store_true", help="refuse unsigned packages and plugins")
    parser.add_argument("--keyring", metavar="FILE", help="public keys plugin signatures must verify with")
    parser.add_argument("--allow-unlisted-paths", action="store_true",
                        help="install packages with files outside the allowed paths (trusted plugins only)")
    parser.add_argument("--compression", choices=COMPRESSORS,
                        help="squashfs compressor of the output (default: the base's)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the work directory for debugging")
    parser.add_argument("--force", action="store_true", help="rebuild even when the output is up to date")


def _add_verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--boot-test", choices=BOOT_TESTS, default="none",
                        help="boot the ISO in QEMU: from CD with BIOS or UEFI, or on all four paths")
    parser.add_argument("--marker-regex", metavar="REGEX",
                        help="for real Node ISOs: a console line that proves the boot, e.g. 'login:'")
    parser.add_argument("--sign-key", metavar="KEYID", help="sign the report (detached, <report>.asc)")
    parser.add_argument("--gnupg-home", metavar="DIR", help="GnuPG home holding the signing key")
    parser.add_argument("--boot-timeout", type=int, default=300, metavar="SECONDS",
                        help="seconds each boot test may take before it counts as failed (default: 300)")
    parser.add_argument("--boot-memory", type=int, metavar="MIB",
                        help="memory of the booted guest in MiB (default: $OVIRT_NODE_PLUGINS_BOOT_MEMORY or 1024)")
    parser.add_argument("--accel", choices=ACCELERATORS, dest="accelerator",
                        help=f"accelerator of QEMU and libguestfs (default: ${ACCEL_SETTING} or auto: KVM only when a "
                             "kernel really boots under it)")
    parser.add_argument("--deep", action="store_true",
                        help="verify every package (rpm -Va) and compare every file with the base, instead of the "
                             "changed blocks only")


def _add_build(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="rebuild a Node ISO with plugins and certify it (end user)",
        description="Apply plugins to a base Node ISO, then verify the result (exit 0 only when certified).",
        epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_apply_options(parser)
    _add_verify_options(parser)
    parser.add_argument("--report", metavar="FILE", help="certification report (default: <iso>.certification.json)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_build, describe=_describe_build)


def _run_build(args: argparse.Namespace) -> dict:
    from ._request import ApplyRequest  # pylint: disable=import-outside-toplevel
    from ._build import BuildRequest, build_and_certify  # pylint: disable=import-outside-toplevel
    removals = [arg for arg in args.kernel_args if arg.startswith("!")]
    request = ApplyRequest(src=args.iso, plugins=args.plugins, dest=args.output, volume_id=args.volume_id,
                           extra_kernel_args=[arg for arg in args.kernel_args if arg not in removals],
                           remove_kernel_args=[arg[1:] for arg in removals], require_signed=args.require_signed,
                           keyring=args.keyring, allow_unlisted_paths=args.allow_unlisted_paths,
                           compression=args.compression, keep_workdir=args.keep_workdir, force=args.force,
                           remove=args.remove, rebase_from=getattr(args, "rebase_from", None),
                           skip_incompatible=getattr(args, "skip_incompatible", False))
    build = BuildRequest(apply=request, boot_test=args.boot_test, marker_regex=args.marker_regex,
                         report=args.report, sign_key=args.sign_key, gnupg_home=args.gnupg_home,
                         boot_timeout=args.boot_timeout, deep=args.deep)
    _apply_vm_options(args)
    with _StageProgress(not args.json) as progress:
        return build_and_certify(build, progress=progress.stage).to_dict()


def _describe_checks(verify: dict) -> list[str]:
    lines = []
    for check in verify["checks"]:
        lines.append(f"  {'pass' if check['passed'] else 'FAIL'}  {check['name']}")
        lines += [f"        - {violation}" for violation in check["violations"]]
    lines.append(f"report: {verify['report']}" + (f" (signature {verify['signature']})" if verify["signature"] else ""))
    lines.append("CERTIFIED" if verify["certified"] else "NOT CERTIFIED")
    return lines


def _apply_vm_options(args: argparse.Namespace) -> None:
    from ._boot import apply_vm_settings  # pylint: disable=import-outside-toplevel
    apply_vm_settings(accelerator=args.accelerator, boot_memory=args.boot_memory)


def _describe_build(result: dict) -> str:
    applied = result["apply"]
    lines = [f"{'built' if applied['changed'] else 'unchanged'}: {applied['path']}",
             f"sha256: {applied['sha256']}  size: {applied['size']} bytes"]
    for plugin, nevras in applied["packages"].items():
        lines.append(f"  {plugin}: {', '.join(nevras)}")
    lines += [f"  upgraded {item['name']}: {item['from']} -> {item['to']}" for item in applied.get("upgraded", [])]
    lines += [f"  removed {item['name']} {item['version']}" for item in applied.get("removed", [])]
    if applied.get("erased"):
        lines.append(f"  erased: {', '.join(applied['erased'])}")
    lines += [f"  kept {name}: {why}" for name, why in applied.get("kept", {}).items()]
    lines += [f"  left out {item['name']} {item['version']}: {item['reason']}"
              for item in applied.get("skipped_plugins", [])]
    if applied.get("initramfs"):
        lines.append(f"  initramfs: {applied['initramfs']['reason']}")
    lines += [f"  note: {note}" for note in applied.get("notes", [])]
    if applied["durations"]:
        lines.append("stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in applied["durations"].items()))
    if result.get("reused"):
        lines.append("certification: the output is intact and its report still holds (reused, not run again)")
    if result.get("rejected"):
        lines.append(f"the new ISO is not certified: it was kept as {result['rejected']} with its report beside "
                     "it, and the previous output (if any) is unchanged")
    return "\n".join(lines + _describe_checks(result["verify"]))


def _add_rebase(subparsers) -> None:
    parser = subparsers.add_parser(
        "rebase", help="apply the plugins a customized ISO carries to a newer Node release, and certify",
        description="Take the plugin tarballs that a customized ISO carries (--from), apply them to a new base "
                    "Node ISO (--iso), then verify the result (exit 0 only when certified).",
        epilog=REBASE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_apply_options(parser)
    parser.add_argument("--from", required=True, metavar="OLD_ISO", dest="rebase_from",
                        help="the customized ISO whose plugins to take")
    parser.add_argument("--skip-incompatible", action="store_true",
                        help="leave out (and report) carried plugins whose Node range excludes the new base")
    _add_verify_options(parser)
    parser.add_argument("--report", metavar="FILE", help="certification report (default: <iso>.certification.json)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_build, describe=_describe_build)


def _add_verify(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="certify a rebuilt Node ISO",
        description="Check media, boot records, plugins, the unmodified core and compatibility; "
                    "exit 0 only when certified.")
    parser.add_argument("--iso", required=True, help="the ISO to certify")
    parser.add_argument("--base", help="the base ISO it was built from (adds comparisons)")
    parser.add_argument("--plugin", action="append", default=[], dest="plugins", metavar="PLUGIN",
                        help="a plugin tarball the ISO must contain; repeatable")
    parser.add_argument("--report", metavar="FILE", help="write the JSON certification report here")
    _add_verify_options(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_verify, describe=_describe_verify)


def _run_verify(args: argparse.Namespace) -> dict:
    from ._verify import VerifyRequest, verify_iso  # pylint: disable=import-outside-toplevel
    request = VerifyRequest(src=args.iso, base=args.base, plugins=args.plugins, boot_test=args.boot_test,
                            marker_regex=args.marker_regex, report=args.report, sign_key=args.sign_key,
                            gnupg_home=args.gnupg_home,
                            boot_timeout=args.boot_timeout, deep=args.deep)
    _apply_vm_options(args)
    with _StageProgress(not args.json) as progress:
        return verify_iso(request, progress=progress.stage).to_dict()


def _describe_verify(result: dict) -> str:
    return "\n".join([f"sha256: {result['sha256']}"] + _describe_checks(result))


def _add_inspect(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show what a Node ISO holds (version, boot entries, packages, plugins)",
        description="The facts node_iso_extract returns: volume id, product and version, boot entries per "
                    "loader, El Torito and hybrid layout, squashfs, root image, packages and plugins.")
    parser.add_argument("--iso", required=True, help="the ISO to inspect")
    parser.add_argument("--packages", action="store_true", help="also list installed packages and plugins")
    parser.add_argument("--check-md5", action="store_true", help="also check the implanted md5")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(handler=_run_inspect, describe=_describe_inspect)


def _run_inspect(args: argparse.Namespace) -> dict:
    from ._extract import ExtractRequest, extract_iso  # pylint: disable=import-outside-toplevel
    return extract_iso(ExtractRequest(src=args.iso, packages=args.packages, check_md5=args.check_md5))


def _describe_inspect(result: dict) -> str:
    lines = [f"volume id: {result.get('volume_id')}",
             f"product: {result.get('product')} {result.get('version')}-{result.get('release')}"
             f" (from {result.get('version_source')})"]
    for loader, entries in (result.get("boot_entries") or {}).items():
        for entry in entries:
            lines.append(f"  {loader}: {entry.get('label')}: {' '.join(entry.get('kernel_args', []))}")
    for key in ("squashfs", "root_image", "md5", "rpmdb"):
        if result.get(key) is not None:
            lines.append(f"{key}: {result[key]}")
    for plugin in result.get("plugins") or []:
        lines.append(f"plugin: {plugin}")
    if result.get("packages"):
        lines.append(f"packages: {len(result['packages'])}")
    return "\n".join(lines)


HOTADD_EPILOG = """\
examples:
  # add the vendor agent to a running Node, logged in as root with a key:
  ovirt-plugin-build hotadd --host root@node1.example.com --plugin vendor-agent-1.1.plugin.tar.gz \\
      --identity ~/.ssh/nodes_ed25519

  # see what would change (rpm tests the transaction on the Node), on another port, pinned host key:
  ovirt-plugin-build hotadd --host root@192.0.2.10:2222 --plugin vendor-agent-1.1.plugin.tar.gz --check \\
      --ssh-option UserKnownHostsFile=~/.ssh/known_nodes --ssh-option StrictHostKeyChecking=yes

The Node needs no Python: ssh and scp run its shell and copy the RPMs, its own rpm installs them.
What is installed lasts until the Node reboots (rebuild the ISO with the plugin to keep it); the
plugin's persist paths are kept on a Node with a config volume (/config). See docs/operations.md.
"""


def _add_hotadd(subparsers) -> None:
    parser = subparsers.add_parser(
        "hotadd", help="add plugins to a running Node without a reboot (over ssh)",
        description="Install plugins on a running oVirt Node with its own rpm, run their %post, write their "
                    "records and persist their declared paths (stateful Nodes). The same engine as the "
                    "ovirt.node_plugins.node_plugin_hotadd action plugin.",
        epilog=HOTADD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, metavar="[USER@]NODE[:PORT]", help="the Node (user root by default)")
    parser.add_argument("--plugin", action="append", required=True, metavar="PLUGIN", dest="plugins",
                        help="a plugin tarball; repeat for several (added in order, each in its own transaction)")
    parser.add_argument("--identity", metavar="KEY", help="ssh private key (ssh -i)")
    parser.add_argument("--ssh-option", action="append", default=[], metavar="OPTION", dest="ssh_options",
                        help="an ssh -o option, e.g. UserKnownHostsFile=FILE; repeatable")
    parser.add_argument("--require-signed", action="store_true", help="refuse unsigned packages and plugins")
    parser.add_argument("--keyring", metavar="FILE", help="public keys plugin signatures must verify with")
    parser.add_argument("--allow-unlisted-paths", action="store_true",
                        help="install packages with files outside the allowed paths (trusted plugins only)")
    parser.add_argument("--no-persist", action="store_true", help="do not persist the plugins' declared paths")
    parser.add_argument("--check", action="store_true", help="report what would change; change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_hotadd, describe=_describe_hotadd)


def _run_hotadd(args: argparse.Namespace) -> dict:
    from ._hotadd import HotaddRequest, OpenSshConnection, hotadd  # pylint: disable=import-outside-toplevel
    results = []
    with OpenSshConnection(args.host, identity=args.identity, options=args.ssh_options) as connection:
        for plugin in args.plugins:
            request = HotaddRequest(plugin=plugin, require_signed=args.require_signed, keyring=args.keyring,
                                    allow_unlisted_paths=args.allow_unlisted_paths, persist=not args.no_persist,
                                    check_mode=args.check)
            outcome = hotadd(request, connection)
            results.append({**outcome.to_dict(), "msg": outcome.message()})
    return {"host": args.host, "changed": any(result["changed"] for result in results), "plugins": results}


def _describe_hotadd(result: dict) -> str:
    lines = []
    for plugin in result["plugins"]:
        lines.append(f"{plugin['target']}: {plugin['plugin']['name']} {plugin['plugin']['version']}: {plugin['reason']}")
        for label, key in (("installed", "installed"), ("records", "records")):
            if plugin[key]:
                lines.append(f"  {label}: {', '.join(plugin[key])}")
        for label, key in (("persisted", "persisted"), ("already persisted", "already"),
                           ("not kept (stateless Node)", "not_kept")):
            if plugin["persist"].get(key):
                lines.append(f"  {label}: {', '.join(plugin['persist'][key])}")
        lines += [f"  warning: {warning}" for warning in plugin["warnings"]]
        if plugin["installed"]:
            lines.append(f"  lasts: {plugin['lasts']}")
    return "\n".join(lines)


# Each subcommand: an adder that declares its flags and sets handler/describe.
SUBCOMMANDS: list[Callable] = [_add_build, _add_rebase, _add_verify, _add_inspect, _add_pack, _add_hotadd]


def version_text() -> str:
    """``ovirt-plugin-build <version> (collection at <folder>)``: the version and which copy of the collection runs."""
    collection = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return f"ovirt-plugin-build {VERSION} (collection at {collection})"


class _VersionAction(argparse.Action):
    """--version: version_text() on one line of stdout (argparse's own action wraps it), then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sys.stdout.write(version_text() + "\n")
        parser.exit()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovirt-plugin-build",
        description="Plugins for oVirt Node: rebuild a Node ISO with plugins and certify it (build), certify an "
                    "ISO (verify), show what an ISO holds (inspect), package RPMs as a plugin (pack).",
        epilog="Run 'ovirt-plugin-build <command> --help' for a command's options and examples.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage and command")
    parser.add_argument("--version", action=_VersionAction,
                        help="show the version of ovirt.node_plugins and where the collection is, then exit")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    for subparser in subparsers.choices.values():  # -v works before and after the command
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                               help="log each stage and command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit code.

    0 done (certified), 1 not certified (the only verdict), 2 any other failure as one line on stderr
    naming the path (usage errors too), 130 interrupted. With -v a bug also prints its traceback.
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    try:
        check_tmpdir()
        result = args.handler(args)
        result["check_mode"] = bool(getattr(args, "check", False))
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
        else:
            sys.stdout.write(args.describe(result) + "\n")
    except (Exception, KeyboardInterrupt) as error:  # pylint: disable=broad-exception-caught
        failure = explain_failure(error, {f"--{name}": getattr(args, name, None) for name in _OUTPUT_FLAGS})
        trace = traceback.format_exc() if failure.bug and args.verbose else ""
    else:
        return EXIT_NOT_CERTIFIED if result.get("certified") is False else EXIT_OK
    _report_failure(args.command, failure, trace)
    return EXIT_INTERRUPTED if failure.interrupted else EXIT_ERROR


def _report_failure(command: str, failure: Failure, trace: str) -> None:
    prefix = f"ovirt-plugin-build {command}"
    if failure.interrupted:
        sys.stderr.write(f"{prefix}: {failure.message}\n")
    elif failure.bug:
        sys.stderr.write(f"{trace}{prefix}: internal error, a bug of ovirt.node_plugins: {failure.message}. "
                         f"Please report it with its traceback{'' if trace else ' (run again with -v to see it)'}\n")
    else:
        sys.stderr.write(f"{prefix}: error: {failure.message}\n")
