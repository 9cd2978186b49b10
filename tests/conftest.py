"""Shared fixtures."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The directory of real captures (<repo>/../shared/data/real); skips when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real captures not available: {REAL_DATA} is missing")
    return REAL_DATA
