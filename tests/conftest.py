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


@pytest.fixture(scope="module", params=["c", "numpy"])
def text_converter(request):
    """Text -> numbers by the C extension rfedge._csitext, or by numpy alone (the fallback where it
    is not built). Modules that use it run every test both ways."""
    from rfedge.io import esp_csi

    saved = esp_csi._csitext
    if request.param == "c" and saved is None:
        pytest.skip("rfedge._csitext is not built")
    if request.param == "numpy":
        esp_csi._csitext = None
    yield request.param
    esp_csi._csitext = saved
