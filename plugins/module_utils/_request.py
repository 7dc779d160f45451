# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rebuild is asked and what it answers: the request, the result, and where the output goes.

Kept apart from the engine (_apply) and free of heavy imports, so that a rerun that finds its output
up to date (_build) answers without loading the engine, the appliance or the plugin readers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from ._bootcfg import KernelArgEdits
from ._errors import NodePluginError
from ._reproducible import source_date_epoch


@dataclasses.dataclass
class ApplyRequest:
    """Everything that determines a rebuild (see the node_plugin_apply module for each option)."""

    src: str
    plugins: list[str]
    dest: str
    volume_id: str | None = None
    extra_kernel_args: list[str] = dataclasses.field(default_factory=list)
    remove_kernel_args: list[str] = dataclasses.field(default_factory=list)
    require_signed: bool = False
    keyring: str | None = None
    allow_unlisted_paths: bool = False
    nodeps: bool = False
    keep_workdir: bool = False
    selinux_relabel: str = "auto"
    compression: str | None = None
    force: bool = False
    check_mode: bool = False
    # Names of plugins the src ISO holds that this edit removes (node_plugin_apply state=absent, build --remove).
    remove: list[str] = dataclasses.field(default_factory=list)
    # A customized ISO whose carried plugin tarballs are applied to src, a newer Node release (rebase).
    rebase_from: str | None = None
    # With rebase_from: leave out (and report) carried plugins whose Node range excludes src, instead of refusing.
    skip_incompatible: bool = False

    def options_for_digest(self) -> dict:
        """The options that change the output's bytes (paths and debugging switches do not)."""
        return {"volume_id": self.volume_id, "extra_kernel_args": list(self.extra_kernel_args),
                "remove_kernel_args": list(self.remove_kernel_args), "nodeps": self.nodeps,
                "allow_unlisted_paths": self.allow_unlisted_paths, "selinux_relabel": self.selinux_relabel,
                "compression": self.compression, "source_date_epoch": source_date_epoch(),
                **({"remove": sorted(self.remove)} if self.remove else {})}

    def kernel_arg_edits(self) -> KernelArgEdits:
        """The request's own kernel-argument edits (``!name`` in either list removes)."""
        removals = [word if word.startswith("!") else f"!{word}" for word in self.remove_kernel_args]
        return KernelArgEdits.parse(list(self.extra_kernel_args) + removals)


@dataclasses.dataclass
class StepLog:
    """Output of one step that ran vendor code inside the appliance."""

    plugin: str
    step: str
    exit_status: int
    output: str


@dataclasses.dataclass
class ApplyResult:
    """What apply did (or, in check mode, would do)."""

    changed: bool
    path: str
    reason: str
    base: dict
    plugins: list[dict]
    kernel_args_before: dict[str, list[str]]
    kernel_args: dict[str, list[str]]
    packages: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    packages_before: list[str] = dataclasses.field(default_factory=list)
    packages_after: list[str] = dataclasses.field(default_factory=list)
    update: int | None = None
    sha256: str | None = None
    size: int | None = None
    scriptlet_logs: list[StepLog] = dataclasses.field(default_factory=list)
    selinux: str | None = None
    squashfs: dict = dataclasses.field(default_factory=dict)
    durations: dict[str, float] = dataclasses.field(default_factory=dict)
    workdir: str | None = None
    # Plugins the edit removed, and held plugins it upgraded or reinstalled (name, from, to).
    removed: list[dict] = dataclasses.field(default_factory=list)
    upgraded: list[dict] = dataclasses.field(default_factory=list)
    # Packages the departing plugins brought: erased, and kept because installed packages need them (and why).
    erased: list[str] = dataclasses.field(default_factory=list)
    kept: dict[str, str] = dataclasses.field(default_factory=dict)
    # A rebase's carried plugins left out (skip_incompatible), with the reason.
    skipped_plugins: list[dict] = dataclasses.field(default_factory=list)
    # What the edit did about the initramfs (kmod plugins); empty when nothing.
    initramfs: dict = dataclasses.field(default_factory=dict)
    # What the edit could not do as asked, said once for the person reading the result.
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def output_path(dest: str, src: str, plugin_names: Sequence[str], removed_names: Sequence[str] = ()) -> str:
    """dest itself, or in a folder, edit-node's name: <base>-<plugin1>_<plugin2>.iso (a removal adds
    -without-<name1>_<name2>)."""
    dest = os.path.abspath(dest)
    if os.path.isdir(dest):
        base = os.path.basename(src)
        stem = base[:-4] if base.lower().endswith(".iso") else base
        name = stem + (f"-{'_'.join(plugin_names)}" if plugin_names else "") + \
            (f"-without-{'_'.join(removed_names)}" if removed_names else "") + ".iso"
        dest = os.path.join(dest, name)
    if not os.path.isdir(os.path.dirname(dest)):
        raise NodePluginError("the output's folder does not exist", path=os.path.dirname(dest))
    return dest
