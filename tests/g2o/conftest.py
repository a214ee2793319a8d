"""Fixtures for the g2o tests: ``g2o_file(name)``, a real pose graph from $SPARSELM_G2O_DATA
(default: the folder ``shared/g2o`` beside the repository). A missing file skips the test, or
fails it when SPARSELM_REQUIRE_DATA=1."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = ["intel", "parking-garage", "sphere2500", "smallGrid3D"]


def g2o_folder() -> Path:
    return Path(os.environ.get("SPARSELM_G2O_DATA") or REPO.parent / "shared" / "g2o")


@pytest.fixture
def g2o_file():
    def find(name: str) -> Path:
        folder = g2o_folder()
        for candidate in (folder / f"{name}.g2o.bz2", folder / f"{name}.g2o"):
            if candidate.is_file():
                return candidate
        message = f"{name}.g2o(.bz2) not found in {folder} (set SPARSELM_G2O_DATA)"
        if os.environ.get("SPARSELM_REQUIRE_DATA") == "1":
            pytest.fail(message + " and SPARSELM_REQUIRE_DATA=1")
        pytest.skip(message)
    return find
