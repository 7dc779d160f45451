# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pytest set-up: the collection is importable through .venv (make setup).

Session fixtures for the Node-like fixture ISO and the example plugin RPMs. They are built once per
content hash under $OVIRT_NODE_PLUGINS_CACHE (a file lock keeps parallel pytest runs from building
the same thing twice), so only the first run pays for the build.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.fixtures.nodeiso import FixtureSpec, NodeFixture, build_fixture_iso
from tests.fixtures.rpms import ExampleRpms, build_example_rpms


@pytest.fixture(autouse=True)
def _blocking_standard_handles() -> None:
    """Every test starts with blocking standard handles: ansible refuses a non-blocking stdin.

    A child that shares the handle's open file (ssh, a QEMU console) may set O_NONBLOCK on it and,
    killed on a timeout, never clear it; the flag then reaches every later ansible command of the run.
    """
    for descriptor in (0, 1, 2):
        try:
            if not os.get_blocking(descriptor):
                os.set_blocking(descriptor, True)
        except OSError:  # a closed handle: nothing to share
            pass


@pytest.fixture(scope="session")
def node_iso_factory() -> Callable[..., NodeFixture]:
    """Callable FixtureSpec (default: FixtureSpec()) -> NodeFixture, memoized for the session."""
    built: dict[FixtureSpec, NodeFixture] = {}

    def factory(spec: FixtureSpec | None = None) -> NodeFixture:
        spec = spec or FixtureSpec()
        if spec not in built:
            built[spec] = build_fixture_iso(spec)
        return built[spec]

    return factory


@pytest.fixture(scope="session")
def node_iso(node_iso_factory) -> NodeFixture:
    """The default fixture ISO (xz squashfs, LiveOS/ext3fs.img, oVirt Node Hypervisor 2.5.0-1.0.fc17)."""
    return node_iso_factory(FixtureSpec())


@pytest.fixture(scope="session")
def example_rpms() -> ExampleRpms:
    """The example plugin RPMs: by_name["vendor-agent"] is 1.0-1, by_name["vendor-agent-1.1"] is 1.1-1."""
    return build_example_rpms()
