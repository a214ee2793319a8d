"""Fixtures for the BAL tests: ``bal_data``, the folder of real BAL files ($SPARSELM_DATA)."""
import os
from pathlib import Path

import pytest


@pytest.fixture
def bal_data() -> Path:
    """$SPARSELM_DATA as a Path; skips when unset, fails instead when SPARSELM_REQUIRE_DATA=1."""
    folder = os.environ.get("SPARSELM_DATA")
    if not folder:
        message = "SPARSELM_DATA is not set: no real BAL files to test against"
        if os.environ.get("SPARSELM_REQUIRE_DATA") == "1":
            pytest.fail(message + " (and SPARSELM_REQUIRE_DATA=1)")
        pytest.skip(message)
    path = Path(folder)
    if not path.is_dir():
        pytest.fail(f"SPARSELM_DATA={folder} is not a directory")
    return path
