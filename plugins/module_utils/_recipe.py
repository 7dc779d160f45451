# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kickstart subset of plugin recipes (edit-livecd's), parsed with pykickstart.

Accepted, and nothing else (docs/plugin-format.md, "The recipe"):

- ``part / --size <MiB>`` (once): the root filesystem image grows to that size;
- ``bootloader --append "<words>"``: each word is added to every kernel command line, ``!word``
  removes the argument ``word`` (several bootloader lines add up);
- ``repo --name=<name> --baseurl=file://<dir>``: a local folder of RPMs;
- ``%packages`` (no options) ... ``%end``: package names, ``-name`` excludes; no groups (``@x``);
- ``%pre`` ... ``%end`` and ``%post [--nochroot]`` ... ``%end``, with ``--interpreter`` limited to
  ``/bin/sh`` and ``/bin/bash`` (the image is only known to have a POSIX shell).

Every refusal names the line and the directive.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ._errors import NodePluginError

try:
    from pykickstart.errors import KickstartError
    from pykickstart.parser import KickstartParser, Script as KickstartScript
    from pykickstart.constants import KS_SCRIPT_PRE
    from pykickstart.sections import PackageSection, PostScriptSection, PreScriptSection
    from pykickstart.version import DEVEL, makeVersion
    HAS_PYKICKSTART = True
except ImportError:  # pragma: no cover - reported by parse_recipe
    HAS_PYKICKSTART = False
    KickstartParser = PackageSection = PostScriptSection = PreScriptSection = KickstartScript = object

ALLOWED_COMMANDS = {"part": {"--size"}, "bootloader": {"--append"}, "repo": {"--name", "--baseurl"}}
ALLOWED_INTERPRETERS = ("/bin/sh", "/bin/bash")
SUPPORTED_TEXT = ("part / --size, bootloader --append, repo --name --baseurl=file://, "
                  "%packages, %pre, %post [--nochroot]")


@dataclass(frozen=True)
class Repo:
    """A ``repo`` line: a local folder of RPMs."""

    name: str
    baseurl: str
    lineno: int

    @property
    def path(self) -> str:
        """The folder the file:// URL names (relative paths are relative to the plugin)."""
        return self.baseurl[len("file://"):]


@dataclass(frozen=True)
class Script:
    """A ``%pre`` or ``%post`` script, in kickstart order."""

    kind: str
    nochroot: bool
    interpreter: str
    body: str
    lineno: int


@dataclass
class Recipe:
    """What a recipe asks for, in the terms the build applies."""

    root_size_mib: int | None = None
    kernel_args_add: list[str] = field(default_factory=list)
    kernel_args_remove: list[str] = field(default_factory=list)
    repos: list[Repo] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)


def _refuse(source: str, lineno: int | None, message: str, hint: str | None = None) -> NodePluginError:
    where = f"line {lineno}" if lineno else "recipe"
    return NodePluginError(f"{where}: {message}", path=source,
                           hint=hint or f"a recipe may use only: {SUPPORTED_TEXT}")


class _SubsetChecks:
    """State shared by the parser and its sections: the source name and raw lines for messages."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        self.recipe = Recipe()

    def lineno_of(self, after: int, content: str) -> int | None:
        for index in range(after, len(self.lines)):
            if self.lines[index].strip() == content.strip():
                return index + 1
        return None


def _option_names(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("-")]


def _check_script_header(checks: _SubsetChecks, lineno: int, args: list[str], allowed: set[str]) -> None:
    section = args[0]
    index = 1
    while index < len(args):
        name, _equals, value = args[index].partition("=")
        if name not in allowed:
            raise _refuse(checks.source, lineno, f"'{section} {args[index]}' is not supported",
                          hint=f"{section} accepts only {', '.join(sorted(allowed)) or 'no options'}")
        if name == "--interpreter":
            if not value:
                index += 1
                value = args[index] if index < len(args) else ""
            if value not in ALLOWED_INTERPRETERS:
                raise _refuse(checks.source, lineno, f"'{section} --interpreter {value}' is not supported",
                              hint=f"scripts run with {' or '.join(ALLOWED_INTERPRETERS)}")
        index += 1


def _make_sections(checks: _SubsetChecks) -> list:
    class SubsetPre(PreScriptSection):
        def handleHeader(self, lineno, args):
            _check_script_header(checks, lineno, args, {"--interpreter"})
            super().handleHeader(lineno, args)

    class SubsetPost(PostScriptSection):
        def handleHeader(self, lineno, args):
            _check_script_header(checks, lineno, args, {"--interpreter", "--nochroot"})
            super().handleHeader(lineno, args)

    class SubsetPackages(PackageSection):
        header_lineno = 0

        def handleHeader(self, lineno, args):
            if len(args) > 1:
                raise _refuse(checks.source, lineno, f"'%packages {' '.join(args[1:])}': %packages takes no options",
                              hint="list package names, one a line; '-name' excludes a package")
            self.header_lineno = lineno
            super().handleHeader(lineno, args)

        def handleLine(self, line):
            word = line.strip()
            if word.startswith("@"):
                raise _refuse(checks.source, checks.lineno_of(self.header_lineno, line),
                              f"'{word}': package groups and environments are not supported",
                              hint="list the package names the group would install")
            if len(word.split()) != 1:
                raise _refuse(checks.source, checks.lineno_of(self.header_lineno, line),
                              f"'{word}': one package name a line", hint="split the line")
            super().handleLine(line)

    return [SubsetPre, SubsetPost, SubsetPackages]


class _SubsetParser(KickstartParser):
    """pykickstart's parser, refusing every command and section outside the recipe subset."""

    def __init__(self, checks: _SubsetChecks) -> None:
        self.checks = checks
        super().__init__(makeVersion(DEVEL))

    def setupSections(self) -> None:
        self._sections = {}
        pre, post, packages = _make_sections(self.checks)
        self.registerSection(pre(self.handler, dataObj=KickstartScript))
        self.registerSection(post(self.handler, dataObj=KickstartScript))
        self.registerSection(packages(self.handler))

    def handleCommand(self, lineno, args):
        checks, recipe = self.checks, self.checks.recipe
        command = args[0]
        if command not in ALLOWED_COMMANDS:
            raise _refuse(checks.source, lineno, f"'{command}' is not supported in a plugin recipe")
        unknown = [name for name in _option_names(args[1:]) if name not in ALLOWED_COMMANDS[command]]
        if unknown:
            raise _refuse(checks.source, lineno, f"'{command} {unknown[0]}' is not supported",
                          hint=f"{command} accepts only {', '.join(sorted(ALLOWED_COMMANDS[command]))}")
        if command == "part":
            positional = [arg for index, arg in enumerate(args[1:], start=1)
                          if not arg.startswith("-") and not (args[index - 1] == "--size")]
            if positional != ["/"]:
                raise _refuse(checks.source, lineno, f"'part {' '.join(positional)}': only the root filesystem"
                              " ('part / --size <MiB>') can be resized")
            if recipe.root_size_mib is not None:
                raise _refuse(checks.source, lineno, "'part /' appears twice", hint="keep one 'part / --size' line")
        result = super().handleCommand(lineno, args)
        if command == "part":
            if not result.size or result.size <= 0:
                raise _refuse(checks.source, lineno, "'part /' needs --size <MiB>, a positive number",
                              hint="for example: part / --size 4096")
            recipe.root_size_mib = int(result.size)
        elif command == "bootloader":
            words = shlex.split(self.handler.bootloader.appendLine or "")
            if not words:
                raise _refuse(checks.source, lineno, "'bootloader' needs --append \"<args>\"")
            for word in words:
                if word.startswith("!"):
                    if len(word) == 1:
                        raise _refuse(checks.source, lineno, "'!' must be followed by the argument to remove")
                    recipe.kernel_args_remove.append(word[1:])
                else:
                    recipe.kernel_args_add.append(word)
        elif command == "repo":
            if not result.name or not result.baseurl:
                raise _refuse(checks.source, lineno, "'repo' needs --name and --baseurl=file://<dir>")
            if not result.baseurl.startswith("file://") or len(result.baseurl) == len("file://"):
                raise _refuse(checks.source, lineno, f"'repo --baseurl={result.baseurl}': only file:// folders"
                              " are supported", hint="ship the RPMs in the plugin and use --baseurl=file://rpms")
            recipe.repos.append(Repo(result.name, result.baseurl, lineno))
        return result


def parse_recipe(text: str, source: str = "recipe.ks") -> Recipe:
    """Parse a recipe; raise NodePluginError naming the line and directive of anything unsupported."""
    if not HAS_PYKICKSTART:
        raise NodePluginError("the Python package pykickstart is not installed",
                              hint="pip install pykickstart (make setup does it)")
    checks = _SubsetChecks(source, text)
    for number, line in enumerate(checks.lines, start=1):
        first = line.strip().split(None, 1)[0] if line.strip() else ""
        if first in ("%include", "%ksappend"):
            raise _refuse(source, number, f"'{first}' is not supported", hint="put everything in the one recipe")
    parser = _SubsetParser(checks)
    try:
        parser.readKickstartFromString(text if text.endswith("\n") else text + "\n")
    except NodePluginError:
        raise
    except KickstartError as exc:
        message = str(exc.message).strip().replace("\n", " ")
        raise _refuse(source, exc.lineno, message) from exc
    recipe = checks.recipe
    recipe.packages = list(parser.handler.packages.packageList)
    recipe.excluded = list(parser.handler.packages.excludedList)
    for script in parser.handler.scripts:
        recipe.scripts.append(Script(kind="pre" if script.type == KS_SCRIPT_PRE else "post",
                                     nochroot=not script.inChroot, interpreter=script.interp,
                                     body=script.script, lineno=int(script.lineno)))
    recipe.scripts.sort(key=lambda item: item.lineno)
    return recipe


def read_recipe(path: str) -> Recipe:
    """Parse a recipe file (UTF-8)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise NodePluginError(f"cannot read the recipe: {exc}", path=path) from exc
    return parse_recipe(text, source=path)


def generate_recipe(packages: list[str], repo_name: str, *, repo_dir: str = "rpms",
                    root_size_mib: int | None = None, kernel_args: list[str] | None = None) -> str:
    """The default recipe of a plugin: install its own packages from the plugin's rpms/ folder."""
    lines = [f"# Recipe of the plugin {repo_name}: install its packages from the plugin's {repo_dir}/ folder.",
             f"repo --name={repo_name} --baseurl=file://{repo_dir}"]
    if root_size_mib:
        lines.append(f"part / --size {int(root_size_mib)}")
    if kernel_args:
        lines.append(f"bootloader --append {shlex.quote(' '.join(kernel_args))}")
    lines += ["", "%packages"] + list(packages) + ["%end", ""]
    return "\n".join(lines)
