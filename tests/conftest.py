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


@pytest.fixture(params=["torch", "cpp"])
def pair_backend(request, monkeypatch) -> str:
    """Runs a test once per CPU backend of the AAF pair sums: what ``backend="auto"`` picks on the
    CPU is switched (``aafcore.pairs.AUTO_CPU_BACKEND``)."""
    import aafcore.pairs

    monkeypatch.setattr(aafcore.pairs, "AUTO_CPU_BACKEND", request.param)
    return request.param
