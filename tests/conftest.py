"""Shared fixtures.

``shared_data`` is the one way tests find ../shared/data (small real media that
lives beside the repository, never inside it); tests that need it skip cleanly
where it is absent, as on a user's fresh machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    env = os.environ.get("DVC_EXT_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [
        REPO.parent / "shared" / "data",
        REPO.parent.parent / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir() and (c / "README.md").exists():
            return c
    return None


SHARED_DATA = _find_shared_data()

# One intra-op thread: on a shared 2-core machine two threads made some model
# tests 30x slower (measured), and the suite's numbers must not depend on load.
# Tests of thread-count independence set their own counts.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test where it is absent."""
    if SHARED_DATA is None:
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
