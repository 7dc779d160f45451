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

A recipe is hostile input: it is parsed from its own text only. The parser below has no path that
opens, reads or fetches anything (``%include`` and ``%ksappend`` are refused however they are
spelled, and pykickstart's file and URL readers are replaced by refusals), its size and what it
may ask for are bounded, and every refusal names the line and quotes it, escaped and shortened.
"""

from __future__ import annotations

import re
import shlex
import warnings
from dataclasses import dataclass, field

from ._errors import QUOTE_LIMIT, NodePluginError, excerpt, quote

try:
    from pykickstart.errors import KickstartError
    from pykickstart.parser import KickstartParser, PutBackIterator, Script as KickstartScript, STATE_COMMANDS
    from pykickstart.constants import KS_SCRIPT_PRE
    from pykickstart.sections import PackageSection, PostScriptSection, PreScriptSection
    from pykickstart.version import DEVEL, returnClassForVersion
    HAS_PYKICKSTART = True
except ImportError:  # pragma: no cover - reported by parse_recipe
    HAS_PYKICKSTART = False
    KickstartParser = PackageSection = PostScriptSection = PreScriptSection = KickstartScript = object
    PutBackIterator = object
    STATE_COMMANDS = "commands"

    class KickstartError(Exception):  # type: ignore[no-redef]
        """Stands in for pykickstart's error so that the except clauses stay valid."""

ALLOWED_COMMANDS = {"part": {"--size"}, "bootloader": {"--append"}, "repo": {"--name", "--baseurl"}}
ALLOWED_INTERPRETERS = ("/bin/sh", "/bin/bash")
SUPPORTED_TEXT = ("part / --size, bootloader --append, repo --name --baseurl=file://, "
                  "%packages, %pre, %post [--nochroot]")

# Bounds (docs/plugin-format.md, "The recipe"). The size matches _plugin.Limits.max_recipe_bytes.
MAX_RECIPE_BYTES = 1024 ** 2
MAX_ROOT_SIZE_MIB = 64 * 1024          # a live root image, not a disk; bigger would fill the build host
MAX_KERNEL_ARGS_BYTES = 2048           # COMMAND_LINE_SIZE of x86 Linux: a longer line cannot boot
MAX_REPOS = 16
MAX_SCRIPTS = 64                       # each script costs an appliance call (about a second under TCG)
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # the manifest's package names (_plugin_schema)

# pykickstart splits lines at these (str.splitlines), editors and people do not: refused, as are
# other control characters. Tab and newline are the only ones a recipe needs.
_FORBIDDEN_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def bounded(text: str, limit: int = 2 * QUOTE_LIMIT) -> str:
    """A message from elsewhere that may quote hostile input (pykickstart, tarfile, jsonschema): escaped, shortened."""
    return quote(text, limit)


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


class _LineCounter(PutBackIterator):
    """pykickstart's line iterator, counting lines so that every refusal names and quotes its line."""

    def __init__(self, lines: list[str], on_line) -> None:
        super().__init__(lines)
        self.lineno = 0
        self.on_line = on_line

    def put(self, s) -> None:
        super().put(s)
        self.lineno -= 1

    def next(self):
        line = super().next()
        self.lineno += 1
        self.on_line(line)
        return line


class _SubsetChecks:
    """State shared by the parser and its sections: the source name, the lines, the recipe so far."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.split("\n")
        self.recipe = Recipe()
        self.scripts = 0
        self.counter: _LineCounter | None = None

    @property
    def lineno(self) -> int | None:
        """The line the parser read last."""
        return self.counter.lineno if self.counter and self.counter.lineno > 0 else None

    def refuse(self, lineno: int | None, message: str, hint: str | None = None) -> NodePluginError:
        """A refusal naming the line and quoting it (escaped, shortened)."""
        if lineno and lineno <= len(self.lines):
            message = f"line {lineno}: {message}; the line reads {excerpt(self.lines[lineno - 1])}"
        return NodePluginError(message if lineno else f"recipe: {message}", path=self.source,
                               hint=hint or f"a recipe may use only: {SUPPORTED_TEXT}")


def _option_names(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("-")]


def _check_script_header(checks: _SubsetChecks, lineno: int, args: list[str], allowed: set[str]) -> None:
    section = args[0]
    index = 1
    while index < len(args):
        name, _equals, value = args[index].partition("=")
        if name not in allowed:
            raise checks.refuse(lineno, f"{excerpt(section + ' ' + args[index])} is not supported",
                                hint=f"{section} accepts only {', '.join(sorted(allowed)) or 'no options'}")
        if name == "--interpreter":
            if not value:
                index += 1
                value = args[index] if index < len(args) else ""
            if value not in ALLOWED_INTERPRETERS:
                raise checks.refuse(lineno, f"{excerpt(section + ' --interpreter ' + value)} is not supported",
                                    hint=f"scripts run with {' or '.join(ALLOWED_INTERPRETERS)}")
        index += 1
    checks.scripts += 1
    if checks.scripts > MAX_SCRIPTS:
        raise checks.refuse(lineno, f"more than {MAX_SCRIPTS} %pre and %post scripts",
                            hint="put the work of several scripts into one")


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
        def handleHeader(self, lineno, args):
            if len(args) > 1:
                raise checks.refuse(lineno, f"{excerpt(' '.join(args))}: %packages takes no options",
                                    hint="list package names, one a line; '-name' excludes a package")
            super().handleHeader(lineno, args)

        def handleLine(self, line):
            words = line.partition("#")[0].split()  # pykickstart drops comments the same way
            if not words:
                return
            if words[0].startswith("@"):
                raise checks.refuse(checks.lineno, f"{excerpt(words[0])}: package groups and environments are "
                                    "not supported", hint="list the package names the group would install")
            if len(words) != 1:
                raise checks.refuse(checks.lineno, "one package name a line", hint="split the line")
            name = words[0][1:] if words[0].startswith("-") else words[0]
            if not PACKAGE_NAME.fullmatch(name):
                raise checks.refuse(checks.lineno, f"{excerpt(words[0])} is not a package name",
                                    hint="give the package's name (letters, digits, '._+-'), or '-name' to "
                                         "exclude one; versions and wildcards are not supported")
            super().handleLine(line)

    return [SubsetPre, SubsetPost, SubsetPackages]


_HANDLER_CLASS = None


def _subset_handler():
    """A kickstart handler that knows only the recipe's commands (pykickstart's full one costs 10x more)."""
    global _HANDLER_CLASS  # pylint: disable=global-statement
    if _HANDLER_CLASS is None:  # returnClassForVersion grows sys.path on every call: call it once
        _HANDLER_CLASS = returnClassForVersion(DEVEL)
    return _HANDLER_CLASS(mapping={name: _HANDLER_CLASS.commandMap[name] for name in ALLOWED_COMMANDS})


class _SubsetParser(KickstartParser):
    """pykickstart's parser for the recipe subset, with no way to read anything but the recipe's text.

    pykickstart reads other files or URLs in readKickstart (which %include reaches through
    _handleInclude) and in the preprocess functions behind %ksappend. Both are replaced by refusals
    here, so no spelling of a directive can reach them; %ksappend, which the plain parser skips
    silently, is refused too.
    """

    def __init__(self, checks: _SubsetChecks) -> None:
        self.checks = checks
        super().__init__(_subset_handler(), followIncludes=True, missingIncludeIsFatal=True)

    def setupSections(self) -> None:
        self._sections: dict[str, object] = {}  # section opener ('%post') -> its pykickstart Section
        pre, post, packages = _make_sections(self.checks)
        self.registerSection(pre(self.handler, dataObj=KickstartScript))
        self.registerSection(post(self.handler, dataObj=KickstartScript))
        self.registerSection(packages(self.handler))

    def readKickstartFromString(self, s, reset=True) -> None:
        if reset:
            self._reset()
        self.checks.counter = _LineCounter(s.splitlines(True) + [""], self._see_line)
        self._stateMachine(self.checks.counter)

    def _see_line(self, line: str) -> None:
        # The state machine skips '%ksappend' lines of the command section without a word: refuse them first.
        if self._state == STATE_COMMANDS and _first_word(line) == "%ksappend":
            raise self.checks.refuse(self.checks.lineno, "'%ksappend' is not supported: a recipe cannot read "
                                     "other files", hint="put everything in the one recipe")

    def readKickstart(self, f, reset=True) -> None:
        raise self.checks.refuse(self.checks.lineno, "a recipe cannot read other files",
                                 hint="put everything in the one recipe")

    def _handleInclude(self, f) -> None:
        raise self.checks.refuse(self.checks.lineno, "'%include' is not supported: a recipe cannot read other files",
                                 hint="put everything in the one recipe")

    def handleCommand(self, lineno, args):
        checks, recipe = self.checks, self.checks.recipe
        command = args[0]
        if command not in ALLOWED_COMMANDS:
            raise checks.refuse(lineno, f"{excerpt(command)} is not supported in a plugin recipe")
        unknown = [name for name in _option_names(args[1:]) if name not in ALLOWED_COMMANDS[command]]
        if unknown:
            raise checks.refuse(lineno, f"{excerpt(command + ' ' + unknown[0])} is not supported",
                                hint=f"{command} accepts only {', '.join(sorted(ALLOWED_COMMANDS[command]))}")
        if command == "part":
            positional = [arg for index, arg in enumerate(args[1:], start=1)
                          if not arg.startswith("-") and not (args[index - 1] == "--size")]
            if positional != ["/"]:
                raise checks.refuse(lineno, f"{excerpt('part ' + ' '.join(positional))}: only the root filesystem"
                                    " ('part / --size <MiB>') can be resized")
            if recipe.root_size_mib is not None:
                raise checks.refuse(lineno, "'part /' appears twice", hint="keep one 'part / --size' line")
        elif command == "repo" and len(recipe.repos) >= MAX_REPOS:
            raise checks.refuse(lineno, f"more than {MAX_REPOS} repo lines",
                                hint="a plugin needs one: repo --name=<name> --baseurl=file://rpms")
        elif command == "bootloader":
            self.handler.resetCommand(command)  # each line's own --append, not the previous line's
        result = super().handleCommand(lineno, args)
        if command == "part":
            if not result.size or result.size <= 0 or result.size > MAX_ROOT_SIZE_MIB:
                raise checks.refuse(lineno, f"'part /' needs --size <MiB>, a number from 1 to {MAX_ROOT_SIZE_MIB}",
                                    hint="for example: part / --size 4096")
            recipe.root_size_mib = int(result.size)
        elif command == "bootloader":
            self._add_kernel_args(lineno, self.handler.bootloader.appendLine or "")
        elif command == "repo":
            if not result.name or not result.baseurl:
                raise checks.refuse(lineno, "'repo' needs --name and --baseurl=file://<dir>")
            if not result.baseurl.startswith("file://") or len(result.baseurl) == len("file://"):
                raise checks.refuse(lineno, f"{excerpt('repo --baseurl=' + result.baseurl)}: only file:// folders"
                                    " are supported", hint="ship the RPMs in the plugin and use --baseurl=file://rpms")
            recipe.repos.append(Repo(result.name, result.baseurl, lineno))
        return result

    def _add_kernel_args(self, lineno: int, append: str) -> None:
        checks, recipe = self.checks, self.checks.recipe
        try:
            words = shlex.split(append)
        except ValueError as exc:
            raise checks.refuse(lineno, f"bootloader --append: {exc} (a quote is not closed)") from exc
        if not words:
            raise checks.refuse(lineno, "'bootloader' needs --append \"<args>\"")
        for word in words:
            if word == "!":
                raise checks.refuse(lineno, "'!' alone is not a kernel argument to remove",
                                    hint="write !name, e.g. !quiet")
            if word.startswith("!"):
                recipe.kernel_args_remove.append(word[1:])
            else:
                recipe.kernel_args_add.append(word)
        if len(" ".join(recipe.kernel_args_add + recipe.kernel_args_remove).encode("utf-8")) > MAX_KERNEL_ARGS_BYTES:
            raise checks.refuse(lineno, f"the kernel arguments add up to more than {MAX_KERNEL_ARGS_BYTES} bytes, "
                                "more than a kernel command line holds", hint="keep the arguments the plugin needs")


def _first_word(line: str) -> str | None:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None  # the parser refuses the line itself
    return words[0] if words else None


def _check_text(text: str, source: str, max_bytes: int) -> None:
    """A recipe is plain UTF-8 text of at most max_bytes: no control character but tab and newline."""
    too_large = NodePluginError(f"the recipe is larger than {max_bytes} bytes", path=source,
                                hint="a recipe holds a few commands and scripts; ship data in an RPM")
    if len(text) > max_bytes:
        raise too_large
    found = _FORBIDDEN_CHARACTER.search(text)
    if found is not None:
        lineno = text.count("\n", 0, found.start()) + 1
        column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
        quoted = excerpt(text.split("\n")[lineno - 1])
        if found.group() == "\r":
            raise NodePluginError(f"line {lineno}: a carriage return (Windows line ending); the line reads {quoted}",
                                  path=source, hint="convert the recipe to Unix line endings (dos2unix)")
        raise NodePluginError(f"line {lineno}: control character U+{ord(found.group()):04X} at column {column}; "
                              f"the line reads {quoted}", path=source,
                              hint="a recipe is plain UTF-8 text; tab and newline are its only control characters")
    if len(text.encode("utf-8")) > max_bytes:
        raise too_large


def decode_recipe(raw: bytes, source: str, max_bytes: int = MAX_RECIPE_BYTES) -> str:
    """The text of a recipe's bytes: at most max_bytes of UTF-8; else NodePluginError naming the line."""
    if len(raw) > max_bytes:
        raise NodePluginError(f"the recipe is larger than {max_bytes} bytes", path=source,
                              hint="a recipe holds a few commands and scripts; ship data in an RPM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise NodePluginError(f"line {lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column})",
                              path=source, hint="a recipe is plain UTF-8 text, not a binary file") from exc
    _check_text(text, source, max_bytes)
    return text


def parse_recipe(text: str, source: str = "recipe.ks", *, max_bytes: int = MAX_RECIPE_BYTES) -> Recipe:
    """Parse a recipe from its text alone; raise NodePluginError naming and quoting the line of anything
    unsupported. Nothing is opened, read or fetched."""
    if not HAS_PYKICKSTART:
        raise NodePluginError("the Python package pykickstart is not installed",
                              hint="pip install pykickstart (make setup does it)")
    _check_text(text, source, max_bytes)
    checks = _SubsetChecks(source, text)
    parser = _SubsetParser(checks)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Warning)  # a duplicate repo, a deprecated section: refused
            parser.readKickstartFromString(text if text.endswith("\n") else text + "\n")
    except NodePluginError:
        raise
    except KickstartError as exc:
        message = str(exc.message or "not valid kickstart").strip()
        raise checks.refuse(exc.lineno or checks.lineno, bounded(message)) from exc
    except Warning as exc:
        raise checks.refuse(checks.lineno, bounded(str(exc))) from exc
    except ValueError as exc:  # shlex: a quote that is not closed, a backslash at the end
        raise checks.refuse(checks.lineno, f"{exc} (a quote is not closed, or a backslash ends the line)") from exc
    recipe = checks.recipe
    recipe.packages = list(parser.handler.packages.packageList)
    recipe.excluded = list(parser.handler.packages.excludedList)
    recipe.scripts = [Script(kind="pre" if script.type == KS_SCRIPT_PRE else "post",
                             nochroot=not script.inChroot, interpreter=script.interp,
                             body=script.script, lineno=int(script.lineno))
                      for script in parser.handler.scripts]
    recipe.scripts.sort(key=lambda item: item.lineno)
    return recipe


def read_recipe_text(path: str, max_bytes: int = MAX_RECIPE_BYTES) -> str:
    """A recipe file's text, reading at most max_bytes + 1 bytes (a device or a huge file is refused)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise NodePluginError(f"cannot read the recipe: {exc.strerror or exc}", path=path) from exc
    return decode_recipe(raw, path, max_bytes)


def read_recipe(path: str) -> Recipe:
    """Parse a recipe file (UTF-8, bounded)."""
    return parse_recipe(read_recipe_text(path), source=path)


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
