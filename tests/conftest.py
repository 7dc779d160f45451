# Copyright: contributors to ovirt.node_plugins
# Apache License 2.0 (see LICENSE)
"""Shared pytest set-up: the collection is importable through .venv (make setup)."""
from __future__ import annotations
