"""The in-memory COLMAP sparse model: flat numpy arrays, one row per camera, image, 2-D point, 3-D
point and track element, and its consistency checks.

Conventions (COLMAP's):

* A pose is ``cam_from_world``: a world point X is at ``P = R(q) X + t`` in the camera frame, with
  ``q = (qw, qx, qy, qz)`` a unit Hamilton quaternion and ``t`` a translation (world units).
* Pixel coordinates put the upper-left image corner at (0, 0), so the first pixel's centre is at
  (0.5, 0.5); 2-D points and the principal point are both given in this convention.
* A 2-D point that observes no 3-D point has ``point3D_id`` -1 (COLMAP stores 2^64 - 1).
* Ids are as in the files (cameras and images: 32 bit; 3-D points: 64 bit); rows keep the file order.

Ragged per-record lists (a camera's parameters, an image's 2-D points, a point's track) are stored
CSR style: one flat array and ``offsets`` of length n + 1, record i owning
``flat[offsets[i]:offsets[i + 1]]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional

import numpy as np

from sparselm.colmap.camera_models import CAMERA_MODELS

__all__ = ["ColmapFormatError", "ColmapModel", "TrivialRigs", "INVALID_POINT3D_ID"]

#: point3D_id of a 2-D point that observes nothing (COLMAP's kInvalidPoint3DId = 2^64 - 1 as int64).
INVALID_POINT3D_ID = -1


class ColmapFormatError(ValueError):
    """A COLMAP model file is malformed or inconsistent.

    ``path`` is the file, ``record`` the record to blame (e.g. ``"image 3 (record 2)"``) or None when
    no single record is, ``reason`` the message without the location. ``str(error)`` reads
    ``path: record: reason``.
    """

    def __init__(self, path, record: Optional[str], reason: str):
        self.path = str(path)
        self.record = record
        self.reason = reason
        location = self.path if record is None else f"{self.path}: {record}"
        super().__init__(f"{location}: {reason}")


@dataclass
class TrivialRigs:
    """COLMAP 3.12+ rigs and frames, where every rig is one camera and every frame one image.

    rig_ids          (r,) int64 rig ids, file order.
    rig_camera_ids   (r,) int64 the camera that is each rig's only (reference) sensor.
    frame_ids        (f,) int64 frame ids, file order.
    frame_rig_ids    (f,) int64 the rig of each frame.
    frame_image_ids  (f,) int64 the one image of each frame (its data id).

    A frame's pose ``rig_from_world`` equals its image's ``cam_from_world`` (the reference sensor's
    ``sensor_from_rig`` is the identity), so it is not stored: writers take it from the image.
    """

    rig_ids: np.ndarray
    rig_camera_ids: np.ndarray
    frame_ids: np.ndarray
    frame_rig_ids: np.ndarray
    frame_image_ids: np.ndarray


@dataclass
class ColmapModel:
    """A COLMAP sparse reconstruction (see the module docstring for the conventions).

    Cameras: ``camera_ids``, ``camera_model_ids``, ``camera_widths``, ``camera_heights`` (nc,) int64,
    ``camera_params`` flat float64 with ``camera_param_offsets`` (nc + 1,).
    Images: ``image_ids``, ``image_camera_ids`` (ni,) int64, ``image_qvecs`` (ni, 4) (qw, qx, qy, qz),
    ``image_tvecs`` (ni, 3), ``image_names`` list of str, ``points2D_xy`` (n2, 2) pixels and
    ``points2D_point3D_ids`` (n2,) int64 (-1: none) with ``points2D_offsets`` (ni + 1,).
    Points: ``point3D_ids`` (np,) int64, ``points_xyz`` (np, 3), ``points_rgb`` (np, 3) uint8,
    ``points_error`` (np,) mean reprojection error in pixels as COLMAP stored it,
    ``track_image_ids`` and ``track_point2D_idx`` (nt,) int64 with ``track_offsets`` (np + 1,).
    ``rigs``: the COLMAP 3.12+ rigs and frames when the model had them, else None.
    ``source``: the folder it was read from (or a description).
    """

    camera_ids: np.ndarray
    camera_model_ids: np.ndarray
    camera_widths: np.ndarray
    camera_heights: np.ndarray
    camera_params: np.ndarray
    camera_param_offsets: np.ndarray
    image_ids: np.ndarray
    image_camera_ids: np.ndarray
    image_qvecs: np.ndarray
    image_tvecs: np.ndarray
    image_names: List[str]
    points2D_xy: np.ndarray
    points2D_point3D_ids: np.ndarray
    points2D_offsets: np.ndarray
    point3D_ids: np.ndarray
    points_xyz: np.ndarray
    points_rgb: np.ndarray
    points_error: np.ndarray
    track_image_ids: np.ndarray
    track_point2D_idx: np.ndarray
    track_offsets: np.ndarray
    rigs: Optional[TrivialRigs] = None
    source: str = field(default="", compare=False)

    @property
    def n_cameras(self) -> int:
        """Number of cameras."""
        return len(self.camera_ids)

    @property
    def n_images(self) -> int:
        """Number of (registered) images."""
        return len(self.image_ids)

    @property
    def n_points(self) -> int:
        """Number of 3-D points."""
        return len(self.point3D_ids)

    @property
    def n_observations(self) -> int:
        """Number of track elements (observations of 3-D points)."""
        return len(self.track_image_ids)

    def camera_params_of(self, row: int) -> np.ndarray:
        """The parameter vector of the camera in row ``row`` (a view)."""
        return self.camera_params[self.camera_param_offsets[row]:self.camera_param_offsets[row + 1]]

    def with_values(self, *, camera_params=None, image_qvecs=None, image_tvecs=None, points_xyz=None,
                    points_error=None, source: Optional[str] = None) -> "ColmapModel":
        """A copy with some values replaced (same shapes, e.g. after bundle adjustment)."""
        changes = {k: np.array(v, dtype=np.float64) for k, v in dict(
            camera_params=camera_params, image_qvecs=image_qvecs, image_tvecs=image_tvecs, points_xyz=points_xyz,
            points_error=points_error).items() if v is not None}
        for key, value in changes.items():
            if value.shape != getattr(self, key).shape:
                raise ValueError(f"with_values: {key} has shape {value.shape}, expected {getattr(self, key).shape}")
        return replace(self, **changes, source=self.source if source is None else source)

    def observations(self):
        """Every observation as arrays ``(image_row, point_row, xy)``: the image row and the 3-D point
        row of each track element and its 2-D point's pixel coordinates (n_observations, 2)."""
        image_row = rows_of(self.image_ids, self.track_image_ids)
        point_row = np.repeat(np.arange(self.n_points), np.diff(self.track_offsets))
        xy = np.take(self.points2D_xy, self.points2D_offsets[image_row] + self.track_point2D_idx, axis=0)
        return image_row, point_row, xy


#: :func:`rows_of` looks ids up in a table indexed by id when the largest id is at most this many times
#: the number of ids and wanted ids (COLMAP numbers cameras and images 1, 2, ...), else it sorts them
DIRECT_LOOKUP_SPAN = 4


def rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each of ``wanted`` in ``ids`` (-1 where absent; the first row of an id that repeats),
    vectorised: a look-up table over the ids when they are small non-negative integers, else a sort."""
    if len(ids) and len(wanted) and ids.dtype.kind in "iu":
        top = int(ids.max())
        if int(ids.min()) >= 0 and top <= DIRECT_LOOKUP_SPAN * (len(ids) + len(wanted)):
            table = np.full(top + 3, -1, np.int64)  # id k at k + 1; ends: -1 for ids below 0 and above top
            table[ids + 1] = np.arange(len(ids))
            if (table[ids + 1] == np.arange(len(ids))).all():  # else an id repeats: the sort finds its first row
                return np.take(table, np.asarray(wanted, np.int64) + 1, mode="clip")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, wanted)
    pos_clipped = np.minimum(pos, max(len(ids) - 1, 0))
    found = (pos < len(ids)) & (sorted_ids[pos_clipped] == wanted) if len(ids) else np.zeros(len(wanted), bool)
    return np.where(found, order[pos_clipped] if len(ids) else -1, -1)


def present_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """The distinct values of ``rows`` (row numbers in ``[0, n)``), sorted: ``np.unique`` by counting,
    linear in ``len(rows) + n`` (an observation array's rows are many, the rows themselves few)."""
    return np.flatnonzero(np.bincount(rows, minlength=n))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_unique(ids, path, kind):
    if len(ids) < 2 or (ids[1:] > ids[:-1]).all():  # increasing, as COLMAP writes them: unique
        return
    if ids.min() >= 0 and ids.max() <= DIRECT_LOOKUP_SPAN * len(ids):  # small ids: a count, no sort
        if np.bincount(ids).max() < 2:
            return
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        rows = np.flatnonzero(ids == dup)
        raise ColmapFormatError(path, f"{kind} {dup} (record {rows[1]})", f"duplicate {kind} id (also record {rows[0]})")


def _check_finite(values, path, kind, ids, what):
    if np.isfinite(values).all():
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) if len(values) else np.zeros(0, bool)
    if bad.any():
        i = _first(bad)
        raise ColmapFormatError(path, f"{kind} {ids[i]} (record {i})", f"non-finite {what} {values[i].tolist()}")


def validate(model: ColmapModel, files) -> None:
    """Check ``model`` for consistency; raise ColmapFormatError naming the file (``files`` maps
    ``"cameras"``, ``"images"``, ``"points3D"``, ``"rigs"``, ``"frames"`` to names), the record and the
    reason. Checks: known camera models with the right parameter count, unique ids, finite numbers,
    a nonzero quaternion, every image's camera exists, every track element refers to an existing
    image and an existing 2-D point of it that refers back to the same 3-D point, every 2-D point's
    point3D_id is -1 or a 3-D point whose track holds it."""
    cam_f, img_f, pts_f = files["cameras"], files["images"], files["points3D"]
    _check_unique(model.camera_ids, cam_f, "camera")
    _check_cameras(model, cam_f)
    _check_unique(model.image_ids, img_f, "image")
    camera_rows = rows_of(model.camera_ids, model.image_camera_ids)
    if (camera_rows < 0).any():
        i = _first(camera_rows < 0)
        raise ColmapFormatError(img_f, f"image {model.image_ids[i]} (record {i})",
                                f"refers to camera {model.image_camera_ids[i]}, which is not in {cam_f}")
    _check_finite(model.image_qvecs, img_f, "image", model.image_ids, "quaternion")
    _check_finite(model.image_tvecs, img_f, "image", model.image_ids, "translation")
    zero_q = ~model.image_qvecs.any(axis=1)
    if zero_q.any():
        i = _first(zero_q)
        raise ColmapFormatError(img_f, f"image {model.image_ids[i]} (record {i})", "zero quaternion")
    if not np.isfinite(model.points2D_xy).all():
        k = _first(~np.isfinite(model.points2D_xy).all(axis=1))
        i = _image_of_point2D(model, k)
        raise ColmapFormatError(img_f, f"image {model.image_ids[i]} (record {i})",
                                f"2-D point {k - model.points2D_offsets[i]} has non-finite coordinates "
                                f"{model.points2D_xy[k].tolist()}")
    _check_unique(model.point3D_ids, pts_f, "point3D")
    _check_finite(model.points_xyz, pts_f, "point3D", model.point3D_ids, "position")
    _check_finite(model.points_error, pts_f, "point3D", model.point3D_ids, "error")
    _check_tracks(model, img_f, pts_f)


def _check_cameras(model: ColmapModel, cam_f) -> None:
    """Known camera models with the right parameter count, finite parameters; the first camera at fault
    is named (for one camera: an unknown model, then a wrong count, then a non-finite parameter). The
    parameters are checked for all cameras at once, the models in a loop over plain ints."""
    n_params = np.diff(model.camera_param_offsets).tolist()
    bad_model = len(n_params)
    for i, model_id in enumerate(model.camera_model_ids.tolist()):
        spec = CAMERA_MODELS.get(model_id)
        if spec is None or n_params[i] != spec.n_params:
            bad_model = i
            break
    bad_value = len(n_params)
    if not np.isfinite(model.camera_params).all():
        k = _first(~np.isfinite(model.camera_params))
        bad_value = int(np.searchsorted(model.camera_param_offsets, k, side="right")) - 1
    i = min(bad_model, bad_value)
    if i == len(n_params):
        return
    record = f"camera {model.camera_ids[i]} (record {i})"
    spec = CAMERA_MODELS.get(int(model.camera_model_ids[i]))
    if spec is None:
        raise ColmapFormatError(cam_f, record, f"unknown camera model id {model.camera_model_ids[i]}")
    if n_params[i] != spec.n_params:
        raise ColmapFormatError(cam_f, record, f"{spec.name} takes {spec.n_params} parameters, got {n_params[i]}")
    raise ColmapFormatError(cam_f, record, f"non-finite parameter in {model.camera_params_of(i).tolist()}")


def _image_of_point2D(model: ColmapModel, k: int) -> int:
    """Row of the image holding 2-D point ``k`` (a row of ``points2D_xy``)."""
    return int(np.searchsorted(model.points2D_offsets, k, side="right")) - 1


def _check_tracks(model: ColmapModel, img_f, pts_f) -> None:
    """Tracks and 2-D point references agree both ways (see :func:`validate`)."""
    point_of_track = np.repeat(np.arange(model.n_points), np.diff(model.track_offsets))

    def track_error(t, reason):
        p = point_of_track[t]
        element = t - model.track_offsets[p]
        return ColmapFormatError(pts_f, f"point3D {model.point3D_ids[p]} (record {p})",
                                 f"track element {element} {reason}")

    image_rows = rows_of(model.image_ids, model.track_image_ids)
    if (image_rows < 0).any():
        t = _first(image_rows < 0)
        raise track_error(t, f"refers to image {model.track_image_ids[t]}, which is not in {img_f}")
    n2 = np.diff(model.points2D_offsets)[image_rows]
    bad_idx = (model.track_point2D_idx < 0) | (model.track_point2D_idx >= n2)
    if bad_idx.any():
        t = _first(bad_idx)
        raise track_error(t, f"refers to 2-D point {model.track_point2D_idx[t]} of image {model.track_image_ids[t]}, "
                             f"which has {n2[t]} 2-D points")
    flat = model.points2D_offsets[image_rows] + model.track_point2D_idx
    back = model.points2D_point3D_ids[flat]
    mismatch = back != model.point3D_ids[point_of_track]
    if mismatch.any():
        t = _first(mismatch)
        raise track_error(t, f"refers to 2-D point {model.track_point2D_idx[t]} of image {model.track_image_ids[t]}, "
                             f"whose point3D_id is {back[t]}")
    used = model.points2D_point3D_ids != INVALID_POINT3D_ID
    claimed = np.zeros(len(model.points2D_xy), bool)
    claimed[flat] = True
    orphan = used & ~claimed
    if orphan.any():
        k = _first(orphan)
        i = _image_of_point2D(model, k)
        pid = model.points2D_point3D_ids[k]
        exists = (rows_of(model.point3D_ids, np.array([pid]))[0] >= 0)
        reason = ("is not in that point's track" if exists else f"is out of range: no such point in {pts_f}")
        raise ColmapFormatError(img_f, f"image {model.image_ids[i]} (record {i})",
                                f"2-D point {k - model.points2D_offsets[i]} has point3D_id {pid}, which {reason}")
    if np.count_nonzero(claimed) < len(flat):  # some 2-D point claimed twice
        dup = _first(np.bincount(flat, minlength=len(model.points2D_xy)) > 1)
        t = np.flatnonzero(flat == dup)[1]
        raise track_error(t, "repeats an observation already in a track")
