# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a playbook of this collection for real and read its recap."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYBOOKS = os.path.join(TOP, "playbooks")
_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclasses.dataclass
class PlayRun:
    """What ansible-playbook did: its exit code, the recap per host, and everything it printed."""

    rc: int
    recap: dict[str, dict[str, int]]
    output: str
    seconds: float


def play(folder: str, inventory: str, playbook: str, extra_vars: dict, *args: str, timeout: float = 1800) -> PlayRun:
    """ansible-playbook -i inventory playbooks/<playbook> -e @<extra_vars as a file in folder> args..."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".venv", "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_HOST_KEY_CHECKING="0")
    vars_file = os.path.join(folder, f"extra-vars-{os.path.splitext(playbook)[0]}.yml")
    with open(vars_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump(extra_vars, handle)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               os.path.join(PLAYBOOKS, playbook), "-e", f"@{vars_file}", *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    seconds = round(time.monotonic() - started, 1)
    print(f"{playbook} {' '.join(args)}: exit {done.returncode} in {seconds} s")
    recap = {match.group(1): {"ok": int(match.group(2)), "changed": int(match.group(3)),
                              "unreachable": int(match.group(4)), "failed": int(match.group(5))}
             for match in _RECAP.finditer(done.stdout.split("PLAY RECAP")[-1])}
    return PlayRun(rc=done.returncode, recap=recap, output=done.stdout + done.stderr, seconds=seconds)


def changed_tasks(output: str) -> list[str]:
    """The tasks of a play's output that reported a change, with the hosts: what an idempotence failure names."""
    changed, task = [], "?"
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.rstrip(" *")
        elif line.startswith("changed: "):
            changed.append(f"{task} {line}")
    return changed
