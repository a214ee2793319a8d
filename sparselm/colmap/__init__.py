"""COLMAP sparse models: reading and writing (binary and text), COLMAP's camera models, synthetic
models and bundle adjustment with sparselm."""
from sparselm.colmap.camera_models import CAMERA_MODELS, CameraModel, camera_model, camera_model_by_name
from sparselm.colmap.io import is_model_folder, read_model, write_model
from sparselm.colmap.model import ColmapFormatError, ColmapModel, TrivialRigs

__all__ = ["CAMERA_MODELS", "CameraModel", "ColmapFormatError", "ColmapModel", "TrivialRigs", "camera_model",
           "camera_model_by_name", "is_model_folder", "read_model", "write_model"]
