# Copyright: contributors to ovirt.node_plugins
# Apache License 2.0 (see LICENSE)
"""The ``ovirt-plugin-build`` command: a thin argparse front over the library, no logic of its own.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its flags and sets
``handler`` to a ``_run_<name>(args) -> dict`` function; main() prints the result (text or --json)
and turns NodePluginError into a message on stderr and exit code 2. To add a subcommand (build,
verify, inspect), write the two functions and list the adder in SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from ._errors import NodePluginError

EXIT_OK = 0
EXIT_ERROR = 2

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
    what.add_argument("--kind", choices=("standard", "kmod"), default="standard",
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


# Extension point: other subcommands (build, verify, inspect) add their adder here.
SUBCOMMANDS: list[Callable] = [_add_pack]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovirt-plugin-build",
        description="Plugins for oVirt Node: package RPMs as a plugin (pack).",
        epilog="Run 'ovirt-plugin-build <command> --help' for a command's options and examples.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage and command")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    for subparser in subparsers.choices.values():  # -v works before and after the command
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                               help="log each stage and command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit code (0 ok, 2 error; argparse usage errors also exit 2)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    try:
        result = args.handler(args)
    except NodePluginError as exc:
        sys.stderr.write(f"ovirt-plugin-build {args.command}: error: {exc.render()}\n")
        return EXIT_ERROR
    result["check_mode"] = bool(getattr(args, "check", False))
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(args.describe(result) + "\n")
    return EXIT_OK
