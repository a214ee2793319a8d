"""Fixtures for the COLMAP tests: ``colmap_data``, the folder of real COLMAP models
($SPARSELM_COLMAP_DATA, default <repo>/../shared/colmap), and ``real_model_dir`` per shared model."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_MODELS = ("sfm-92", "video-7")


def colmap_data_folder() -> Path:
    """$SPARSELM_COLMAP_DATA, or <repo>/../shared/colmap when unset."""
    return Path(os.environ.get("SPARSELM_COLMAP_DATA") or REPO.parent / "shared" / "colmap")


def model_dir_or_skip(name: str) -> Path:
    """The folder of shared model ``name``; skips when absent, fails when SPARSELM_REQUIRE_DATA=1."""
    folder = colmap_data_folder() / name / "sparse" / "0"
    if not (folder / "cameras.bin").is_file():
        message = f"COLMAP model {folder} is missing (set SPARSELM_COLMAP_DATA)"
        if os.environ.get("SPARSELM_REQUIRE_DATA") == "1":
            pytest.fail(message + " and SPARSELM_REQUIRE_DATA=1")
        pytest.skip(message)
    return folder


@pytest.fixture(params=SHARED_MODELS)
def real_model_dir(request) -> Path:
    """Each shared real model's folder in turn."""
    return model_dir_or_skip(request.param)


@pytest.fixture
def video7_dir() -> Path:
    """The small shared model (7 images)."""
    return model_dir_or_skip("video-7")
