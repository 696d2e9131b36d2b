"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from aafcore.datasets import SYNTHETIC_PROFILES, generate_synthetic


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    """The smoke-profile synthetic benchmark, generated once per test session (read-only: copy it
    before changing files)."""
    root = tmp_path_factory.mktemp("data") / "synthetic-smoke"
    generate_synthetic(root, SYNTHETIC_PROFILES["smoke"])
    return root
