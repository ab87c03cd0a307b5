"""Shared test configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

# Keep torch and BLAS from oversubscribing a small CI machine (pytest-xdist runs 2 workers).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@pytest.fixture
def hyperparameters_fixture() -> dict[str, str]:
    """The pinned hyperparameter map, exactly as SageMaker writes hyperparameters.json."""
    data: dict[str, str] = json.loads((FIXTURES / "hyperparameters.json").read_text())
    return data
