# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The version of ovirt.node_plugins, as galaxy.yml gives it (a test keeps the two equal); pyproject.toml reads it."""

from __future__ import annotations

VERSION = "1.0.0-dev0"
