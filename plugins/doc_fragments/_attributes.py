# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared attribute documentation of the modules of ovirt.node_plugins."""

from __future__ import annotations


class ModuleDocFragment:
    """Attribute fragments: what every module promises about check mode, diff mode, idempotency."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without modifying the target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row with the same inputs, the second run reports no change and
        modifies nothing. Inputs are identified by their digests, not by their names.
"""

    # Modules that run only where the files are: the controller or the host the task targets.
    PLATFORM = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
"""
