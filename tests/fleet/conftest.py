# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet tests run inside the molecule scenario pxe_deploy, whose verify step names its lab file in PXE_LAB."""
from __future__ import annotations

import pytest

from tests.fleet.lab import Lab


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The scenario's servers, ISOs and inventory; an error (not a skip) outside the scenario."""
    return Lab.load()
