"""Shared test fixtures.

``device`` runs a test on the CPU and, where CUDA is present (the GPU machine), on CUDA too; CI has no
GPU, so there the CUDA case is reported as skipped rather than silently dropped.
"""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TRACKML_DIR = REPO.parent / "shared" / "data" / "trackml"


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available on this machine")
    return torch.device(request.param)


@pytest.fixture(scope="session")
def trackml_dir() -> Path:
    if not (TRACKML_DIR / "event000000001-hits.csv.gz").exists():
        pytest.fail(f"the shared TrackML event is missing from {TRACKML_DIR}")
    return TRACKML_DIR
