"""Shared fixtures. Tests that need ../shared (real CT, bone meshes) skip cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """Where ../shared is: $FEMURSEG_SHARED, else the folder beside the repository."""
    return Path(os.environ.get("FEMURSEG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def totalseg_case() -> Path:
    """The real CT case folder in TotalSegmentator layout (skips if absent)."""
    case = shared_dir() / "data" / "totalseg_example" / "s0000"
    if not (case / "ct.nii.gz").is_file():
        pytest.skip(f"real CT not available at {case}")
    return case


@pytest.fixture(scope="session")
def llp26_dir() -> Path:
    """The LLP26 bone mesh folder (skips if absent)."""
    d = shared_dir() / "shapes" / "llp26"
    if not (d / "mean" / "femur.ply").is_file():
        pytest.skip(f"bone meshes not available at {d}")
    return d


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One torch thread per test process: `make test` runs two workers on two cores, and a
    second thread per worker only adds contention (training steps run several times slower)."""
    import torch

    torch.set_num_threads(1)
