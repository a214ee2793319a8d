"""The registry of COLMAP camera models: id, name, parameter names and their roles. Pure data.

COLMAP stores a camera as a model id and a flat parameter vector whose order is fixed per model
(COLMAP's ``src/colmap/sensor/models.h``). Each parameter is a focal length, a principal point
coordinate (pixels) or an "extra" (distortion) parameter; bundle adjustment refines these three
groups separately (``refine_focal_length``, ``refine_principal_point``, ``refine_extra_params``).

Every model COLMAP defines is listed, so that any model file can be read and written; the models
sparselm can also project and optimise are those with ``projectable=True`` (see
:mod:`sparselm.colmap.cameras`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = ["CameraModel", "CAMERA_MODELS", "CAMERA_MODELS_BY_NAME", "camera_model", "camera_model_by_name"]


@dataclass(frozen=True)
class CameraModel:
    """One COLMAP camera model.

    model_id     COLMAP's numeric id (as stored in cameras.bin).
    name         COLMAP's name (as written in cameras.txt), e.g. ``"SIMPLE_RADIAL"``.
    param_names  the parameter names in COLMAP's order, e.g. ``("f", "cx", "cy", "k")``.
    n_focal      how many leading parameters are focal lengths (pixels): 1 (f) or 2 (fx, fy).
    n_principal  how many parameters after them are the principal point (pixels): 2, or 0 for
                 models without one.
    projectable  True when :mod:`sparselm.colmap.cameras` implements its projection.
    """

    model_id: int
    name: str
    param_names: Tuple[str, ...]
    n_focal: int
    n_principal: int
    projectable: bool

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self.param_names)

    @property
    def focal_indices(self) -> Tuple[int, ...]:
        """Positions of the focal length(s) in the parameter vector."""
        return tuple(range(self.n_focal))

    @property
    def principal_point_indices(self) -> Tuple[int, ...]:
        """Positions of the principal point (cx, cy) in the parameter vector."""
        return tuple(range(self.n_focal, self.n_focal + self.n_principal))

    @property
    def extra_indices(self) -> Tuple[int, ...]:
        """Positions of the extra (distortion) parameters in the parameter vector."""
        return tuple(range(self.n_focal + self.n_principal, self.n_params))


def _model(model_id, name, params, n_focal, projectable, n_principal=2):
    return CameraModel(model_id, name, tuple(params.split()), n_focal, n_principal, projectable)


#: model id -> CameraModel, every model COLMAP defines (ids 0-17).
CAMERA_MODELS: Dict[int, CameraModel] = {m.model_id: m for m in (
    _model(0, "SIMPLE_PINHOLE", "f cx cy", 1, True),
    _model(1, "PINHOLE", "fx fy cx cy", 2, True),
    _model(2, "SIMPLE_RADIAL", "f cx cy k", 1, True),
    _model(3, "RADIAL", "f cx cy k1 k2", 1, True),
    _model(4, "OPENCV", "fx fy cx cy k1 k2 p1 p2", 2, True),
    _model(5, "OPENCV_FISHEYE", "fx fy cx cy k1 k2 k3 k4", 2, True),
    _model(6, "FULL_OPENCV", "fx fy cx cy k1 k2 p1 p2 k3 k4 k5 k6", 2, True),
    _model(7, "FOV", "fx fy cx cy omega", 2, False),
    _model(8, "SIMPLE_RADIAL_FISHEYE", "f cx cy k", 1, True),
    _model(9, "RADIAL_FISHEYE", "f cx cy k1 k2", 1, True),
    _model(10, "THIN_PRISM_FISHEYE", "fx fy cx cy k1 k2 p1 p2 k3 k4 sx1 sy1", 2, True),
    _model(11, "RAD_TAN_THIN_PRISM_FISHEYE", "fx fy cx cy k0 k1 k2 k3 k4 k5 p0 p1 s0 s1 s2 s3", 2, False),
    _model(12, "SIMPLE_DIVISION", "f cx cy k", 1, False),
    _model(13, "DIVISION", "fx fy cx cy k", 2, False),
    _model(14, "SIMPLE_FISHEYE", "f cx cy", 1, False),
    _model(15, "FISHEYE", "fx fy cx cy", 2, False),
    _model(16, "EUCM", "fx fy cx cy alpha beta", 2, False),
    _model(17, "EQUIRECTANGULAR", "w h", 0, False, n_principal=0),
)}

#: name -> CameraModel.
CAMERA_MODELS_BY_NAME: Dict[str, CameraModel] = {m.name: m for m in CAMERA_MODELS.values()}


def camera_model(model_id: int) -> CameraModel:
    """The CameraModel with COLMAP id ``model_id``; KeyError naming the id when there is none."""
    try:
        return CAMERA_MODELS[int(model_id)]
    except KeyError:
        raise KeyError(f"unknown COLMAP camera model id {model_id}") from None


def camera_model_by_name(name: str) -> CameraModel:
    """The CameraModel called ``name`` (e.g. ``"OPENCV"``); KeyError naming it when there is none."""
    try:
        return CAMERA_MODELS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown COLMAP camera model {name!r}") from None
