# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin node_plugin_hotadd: a plugin onto the running Node the task targets (docs: the module).

It runs on the controller: the library (_hotadd) opens and checks the plugin there and reaches the
Node through the task's connection, raw shell commands and the connection's file transfer, so the
Node needs no Python.
"""

from __future__ import annotations

import os
import traceback

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.ovirt.node_plugins.plugins.module_utils._hotadd import (ARGUMENT_SPEC, HotaddRequest,
                                                                                 ShellOutcome, hotadd)
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import explain_failure, missing_libraries

_REQUIRES = ("rpm", "jsonschema", "pykickstart")


class _TaskConnection:
    """The task's connection as a NodeConnection: commands with the Node's /bin/sh, files with its transfer."""

    def __init__(self, action: ActionBase, target: str) -> None:
        self._action = action
        self.target = target

    def run(self, command: str) -> ShellOutcome:
        # sudoable=False: no become, and no tty, so stdout and stderr stay apart. Ansible appends
        # "&& sleep 0" to the command: a final newline would leave that on a line of its own.
        done = self._action._low_level_execute_command(command.rstrip("\n"), sudoable=False)
        status = done.get("rc")
        return ShellOutcome(255 if status is None else int(status), done.get("stdout", ""), done.get("stderr", ""))

    def put(self, local: str, remote: str) -> None:
        self._action._connection.put_file(local, remote)


class ActionModule(ActionBase):
    """Hot-add one plugin to the task's host; see plugins/modules/node_plugin_hotadd.py."""

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _validated, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if self._play_context.become:
            result.update(failed=True, msg="node_plugin_hotadd does not support become: connect to the Node as root "
                                           "(ansible_user: root), as its own tools expect")
            return result
        missing = missing_libraries(_REQUIRES)
        if missing:
            name, import_traceback = missing[0]
            result.update(failed=True, exception=import_traceback,
                          msg=f"the Python library '{name}' is needed on the controller and is not installed")
            return result
        args["plugin"] = self._plugin_path(args["plugin"])
        target = str(task_vars.get("inventory_hostname") or self._play_context.remote_addr)
        try:
            outcome = hotadd(HotaddRequest(check_mode=bool(self._task.check_mode), **args),
                             _TaskConnection(self, target))
        except AnsibleError:
            raise  # an unreachable Node is Ansible's to report
        except (Exception, KeyboardInterrupt) as error:  # pylint: disable=broad-exception-caught
            failure = explain_failure(error, {})
            result.update(failed=True, msg=failure.message)
            if failure.bug:
                result["exception"] = traceback.format_exc()
            return result
        result.update(outcome.to_dict())
        result["msg"] = outcome.message()
        if outcome.warnings:
            result["warnings"] = list(outcome.warnings)
        if self._task.diff:
            result["diff"] = {"before": _listing(outcome.packages_before), "after": _listing(outcome.packages),
                              "before_header": f"{target}: packages of {outcome.plugin['name']}",
                              "after_header": f"{target}: packages of {outcome.plugin['name']}"}
        return result

    def _plugin_path(self, plugin: str) -> str:
        """A relative plugin path is a file of the role or playbook (files/), else relative to the working folder."""
        if os.path.isabs(plugin):
            return plugin
        try:
            return self._find_needle("files", plugin)
        except AnsibleError:
            return os.path.abspath(plugin)


def _listing(packages: dict) -> str:
    return "".join(f"{name}: {nevra or '(not installed)'}\n" for name, nevra in sorted(packages.items()))
