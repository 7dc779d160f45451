# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module of this collection for real, with the ansible CLI on localhost."""
from __future__ import annotations

import json
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


def run_module(module: str, args: dict, *extra: str, cwd: str | None = None, timeout: float = 900) -> dict:
    """The module's JSON result, plus 'status' (CHANGED, SUCCESS, FAILED!) and 'failed'.

    The ad-hoc (minimal) callback prints "localhost | STATUS => {json}"; extra are ansible
    options such as --check or --diff.
    """
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".venv", "collections"),
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_NOCOLOR="1")
    done = subprocess.run([os.path.join(VENV_BIN, "ansible"), "localhost", "-m", f"ovirt.node_plugins.{module}",
                           "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}", "--one-line",
                           *extra], capture_output=True, text=True, env=env, check=False, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)
    line = next((line for line in done.stdout.splitlines() if line.startswith("localhost | ")), "")
    head, _arrow, body = line.partition(" => ")
    assert body, f"no result from ansible:\n{done.stdout}\n{done.stderr}"
    result = json.loads(body)
    result["status"] = head.rsplit("| ", 1)[-1].strip()
    result["failed"] = result["status"].startswith("FAILED")
    result["stderr_of_ansible"] = done.stderr
    assert (done.returncode != 0) == result["failed"], done.stderr
    return result
