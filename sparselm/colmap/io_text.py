"""COLMAP's text model files (cameras.txt, images.txt, points3D.txt, rigs.txt, frames.txt).

Lines starting with ``#`` are comments. ``cameras.txt``: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...``
(MODEL by name). ``images.txt``: two lines per image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME``
then ``X Y POINT3D_ID`` triples (-1: no 3-D point; the line is empty for an image without 2-D
points). ``points3D.txt``: ``POINT3D_ID X Y Z R G B ERROR`` then ``IMAGE_ID POINT2D_IDX`` pairs.
``rigs.txt`` (3.12+): ``RIG_ID NUM_SENSORS REF_SENSOR_TYPE REF_SENSOR_ID ...``; ``frames.txt``:
``FRAME_ID RIG_ID QW QX QY QZ TX TY TZ NUM_DATA_IDS (SENSOR_TYPE SENSOR_ID DATA_ID)...``.

Numbers are written with Python's shortest round-trip representation, so text written here reads
back to exactly the same float64 values. Errors name ``file:line``.
"""
from __future__ import annotations

from typing import Iterator, List, Tuple

import numpy as np

from sparselm.colmap.camera_models import CAMERA_MODELS, CAMERA_MODELS_BY_NAME
from sparselm.colmap.model import ColmapFormatError, ColmapModel, TrivialRigs, rows_of

__all__ = ["read_cameras_text", "read_images_text", "read_points3D_text", "read_rigs_text", "read_frames_text",
           "write_cameras_text", "write_images_text", "write_points3D_text", "write_rigs_text", "write_frames_text"]


def _lines(text: str) -> List[str]:
    return text.split("\n")


def _data_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(1-based line number, stripped line) for each non-comment, non-blank line."""
    for number, line in enumerate(_lines(text), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def _numbers(path, number, tokens, kind, what):
    """Parse tokens as numbers of ``kind`` (int or float); ColmapFormatError at path:number otherwise."""
    try:
        values = [kind(t) for t in tokens]
    except ValueError:
        raise ColmapFormatError(f"{path}:{number}", None, f"{what}: expected numbers, got {' '.join(tokens)!r}") from None
    if kind is float and not all(np.isfinite(values)):
        raise ColmapFormatError(f"{path}:{number}", None, f"{what}: non-finite value in {' '.join(tokens)!r}")
    return values


def _fmt(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def read_cameras_text(text: str, path) -> dict:
    """Parse cameras.txt: a dict of the camera_* fields of ColmapModel."""
    ids, models, widths, heights, params, offsets = [], [], [], [], [], [0]
    for number, line in _data_lines(text):
        tokens = line.split()
        if len(tokens) < 4:
            raise ColmapFormatError(f"{path}:{number}", None, "a camera needs CAMERA_ID MODEL WIDTH HEIGHT PARAMS")
        spec = CAMERA_MODELS_BY_NAME.get(tokens[1])
        if spec is None:
            raise ColmapFormatError(f"{path}:{number}", None, f"unknown camera model {tokens[1]!r}")
        cid, width, height = _numbers(path, number, [tokens[0], tokens[2], tokens[3]], int, "camera id/size")
        if len(tokens) - 4 != spec.n_params:
            raise ColmapFormatError(f"{path}:{number}", None,
                                    f"camera {cid}: {spec.name} takes {spec.n_params} parameters, got {len(tokens) - 4}")
        params.extend(_numbers(path, number, tokens[4:], float, f"camera {cid} parameters"))
        ids.append(cid), models.append(spec.model_id), widths.append(width), heights.append(height)
        offsets.append(offsets[-1] + spec.n_params)
    return dict(camera_ids=np.array(ids, np.int64), camera_model_ids=np.array(models, np.int64),
                camera_widths=np.array(widths, np.int64), camera_heights=np.array(heights, np.int64),
                camera_params=np.array(params, np.float64), camera_param_offsets=np.array(offsets, np.int64))


def read_images_text(text: str, path) -> dict:
    """Parse images.txt: a dict of the image_* and points2D_* fields of ColmapModel."""
    lines = _lines(text)
    ids, cams, poses, names, xy, pids, offsets = [], [], [], [], [], [], [0]
    k = 0
    while k < len(lines):
        line = lines[k].strip()
        k += 1
        if not line or line.startswith("#"):
            continue
        number = k
        tokens = line.split(maxsplit=9)
        if len(tokens) < 10:
            raise ColmapFormatError(f"{path}:{number}", None,
                                    "an image needs IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        (iid,) = _numbers(path, number, tokens[:1], int, "image id")
        pose = _numbers(path, number, tokens[1:8], float, f"image {iid} pose")
        (cid,) = _numbers(path, number, tokens[8:9], int, f"image {iid} camera id")
        if k >= len(lines):
            raise ColmapFormatError(f"{path}:{number}", None, f"image {iid}: truncated, the line of 2-D points is missing")
        point_tokens = lines[k].split()
        k += 1
        if len(point_tokens) % 3:
            raise ColmapFormatError(f"{path}:{k}", None, f"image {iid}: 2-D points come in (X, Y, POINT3D_ID) triples, "
                                                         f"got {len(point_tokens)} numbers")
        coords = _numbers(path, k, point_tokens[0::3] + point_tokens[1::3], float, f"image {iid} 2-D points")
        n2 = len(point_tokens) // 3
        xy.append(np.array(coords, np.float64).reshape(2, n2).T)
        pids.append(np.array(_numbers(path, k, point_tokens[2::3], int, f"image {iid} point3D ids"), np.int64))
        ids.append(iid), poses.append(pose), cams.append(cid), names.append(tokens[9].strip())
        offsets.append(offsets[-1] + n2)
    pose = np.array(poses, np.float64).reshape(-1, 7)
    return dict(image_ids=np.array(ids, np.int64), image_camera_ids=np.array(cams, np.int64),
                image_qvecs=np.ascontiguousarray(pose[:, :4]), image_tvecs=np.ascontiguousarray(pose[:, 4:]),
                image_names=names, points2D_xy=np.concatenate(xy) if xy else np.zeros((0, 2)),
                points2D_point3D_ids=np.concatenate(pids) if pids else np.zeros(0, np.int64),
                points2D_offsets=np.array(offsets, np.int64))


def read_points3D_text(text: str, path) -> dict:
    """Parse points3D.txt: a dict of the point* and track_* fields of ColmapModel."""
    ids, xyz, rgb, err, images, idx, offsets = [], [], [], [], [], [], [0]
    for number, line in _data_lines(text):
        tokens = line.split()
        if len(tokens) < 8 or (len(tokens) - 8) % 2:
            raise ColmapFormatError(f"{path}:{number}", None,
                                    "a point needs POINT3D_ID X Y Z R G B ERROR and (IMAGE_ID, POINT2D_IDX) pairs")
        (pid,) = _numbers(path, number, tokens[:1], int, "point3D id")
        values = _numbers(path, number, tokens[1:4] + tokens[7:8], float, f"point3D {pid}")
        color = _numbers(path, number, tokens[4:7], int, f"point3D {pid} colour")
        if not all(0 <= c <= 255 for c in color):
            raise ColmapFormatError(f"{path}:{number}", None, f"point3D {pid}: colour {color} outside 0..255")
        track = _numbers(path, number, tokens[8:], int, f"point3D {pid} track")
        ids.append(pid), xyz.append(values[:3]), err.append(values[3]), rgb.append(color)
        images.extend(track[0::2]), idx.extend(track[1::2])
        offsets.append(offsets[-1] + len(track) // 2)
    return dict(point3D_ids=np.array(ids, np.int64), points_xyz=np.array(xyz, np.float64).reshape(-1, 3),
                points_rgb=np.array(rgb, np.uint8).reshape(-1, 3), points_error=np.array(err, np.float64),
                track_image_ids=np.array(images, np.int64), track_point2D_idx=np.array(idx, np.int64),
                track_offsets=np.array(offsets, np.int64))


def read_rigs_text(text: str, path) -> Tuple[np.ndarray, np.ndarray]:
    """Parse rigs.txt of trivial rigs: (rig_ids, rig_camera_ids); ColmapFormatError for any other rig."""
    rig_ids, cameras = [], []
    for number, line in _data_lines(text):
        tokens = line.split()
        if len(tokens) < 2:
            raise ColmapFormatError(f"{path}:{number}", None, "a rig needs RIG_ID NUM_SENSORS ...")
        rig_id, n_sensors = _numbers(path, number, tokens[:2], int, "rig id/sensor count")
        if n_sensors != 1 or len(tokens) != 4:
            raise ColmapFormatError(f"{path}:{number}", None, f"rig {rig_id} has {n_sensors} sensors: only rigs of "
                                                              f"exactly one camera are supported")
        if tokens[2] != "CAMERA":
            raise ColmapFormatError(f"{path}:{number}", None, f"rig {rig_id}: sensor type {tokens[2]!r}: only camera "
                                                              f"rigs are supported")
        rig_ids.append(rig_id), cameras.append(_numbers(path, number, tokens[3:4], int, "sensor id")[0])
    return np.array(rig_ids, np.int64), np.array(cameras, np.int64)


def read_frames_text(text: str, path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse frames.txt of one image each: (frame_ids, rig_ids, image_ids, poses (n, 7))."""
    frame_ids, rig_ids, image_ids, poses = [], [], [], []
    for number, line in _data_lines(text):
        tokens = line.split()
        if len(tokens) < 10:
            raise ColmapFormatError(f"{path}:{number}", None,
                                    "a frame needs FRAME_ID RIG_ID QW QX QY QZ TX TY TZ NUM_DATA_IDS ...")
        fid, rid = _numbers(path, number, tokens[:2], int, "frame/rig id")
        (n_data,) = _numbers(path, number, tokens[9:10], int, f"frame {fid} data count")
        if n_data != 1 or len(tokens) != 13 or tokens[10] != "CAMERA":
            raise ColmapFormatError(f"{path}:{number}", None, f"frame {fid} has {n_data} data ids: only frames of "
                                                              f"exactly one camera image are supported")
        poses.append(_numbers(path, number, tokens[2:9], float, f"frame {fid} pose"))
        frame_ids.append(fid), rig_ids.append(rid)
        image_ids.append(_numbers(path, number, tokens[12:13], int, f"frame {fid} data id")[0])
    return (np.array(frame_ids, np.int64), np.array(rig_ids, np.int64), np.array(image_ids, np.int64),
            np.array(poses, np.float64).reshape(-1, 7))


def write_cameras_text(model: ColmapModel) -> str:
    """cameras.txt for ``model``."""
    out = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
           f"# Number of cameras: {model.n_cameras}"]
    for i in range(model.n_cameras):
        out.append(f"{model.camera_ids[i]} {CAMERA_MODELS[int(model.camera_model_ids[i])].name} "
                   f"{model.camera_widths[i]} {model.camera_heights[i]} {_fmt(model.camera_params_of(i))}")
    return "\n".join(out) + "\n"


def write_images_text(model: ColmapModel) -> str:
    """images.txt for ``model``."""
    out = ["# Image list with two lines of data per image:",
           "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
           f"# Number of images: {model.n_images}"]
    for i in range(model.n_images):
        out.append(f"{model.image_ids[i]} {_fmt(model.image_qvecs[i])} {_fmt(model.image_tvecs[i])} "
                   f"{model.image_camera_ids[i]} {model.image_names[i]}")
        lo, hi = model.points2D_offsets[i], model.points2D_offsets[i + 1]
        out.append(" ".join(f"{x!r} {y!r} {p}" for (x, y), p in zip(model.points2D_xy[lo:hi].tolist(),
                                                                    model.points2D_point3D_ids[lo:hi].tolist())))
    return "\n".join(out) + "\n"


def write_points3D_text(model: ColmapModel) -> str:
    """points3D.txt for ``model``."""
    out = ["# 3D point list with one line of data per point:",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
           f"# Number of points: {model.n_points}"]
    for i in range(model.n_points):
        lo, hi = model.track_offsets[i], model.track_offsets[i + 1]
        track = " ".join(f"{a} {b}" for a, b in zip(model.track_image_ids[lo:hi].tolist(),
                                                      model.track_point2D_idx[lo:hi].tolist()))
        r, g, b = model.points_rgb[i].tolist()
        out.append(f"{model.point3D_ids[i]} {_fmt(model.points_xyz[i])} {r} {g} {b} {float(model.points_error[i])!r} {track}"
                   .rstrip())
    return "\n".join(out) + "\n"


def write_rigs_text(rigs: TrivialRigs) -> str:
    """rigs.txt for trivial rigs."""
    out = ["# Rig calib list with one line of data per calib:",
           "#   RIG_ID, NUM_SENSORS, REF_SENSOR_TYPE, REF_SENSOR_ID, SENSORS[]", f"# Number of rigs: {len(rigs.rig_ids)}"]
    out += [f"{r} 1 CAMERA {c}" for r, c in zip(rigs.rig_ids.tolist(), rigs.rig_camera_ids.tolist())]
    return "\n".join(out) + "\n"


def write_frames_text(model: ColmapModel) -> str:
    """frames.txt for the trivial rigs of ``model``, each frame's pose its image's pose."""
    rigs = model.rigs
    rows = rows_of(model.image_ids, rigs.frame_image_ids)
    camera_of_rig = dict(zip(rigs.rig_ids.tolist(), rigs.rig_camera_ids.tolist()))
    out = ["# Frame list with one line of data per frame:",
           "#   FRAME_ID, RIG_ID, RIG_FROM_WORLD[QW, QX, QY, QZ, TX, TY, TZ], NUM_DATA_IDS, DATA_IDS[]",
           f"# Number of frames: {len(rigs.frame_ids)}"]
    for k in range(len(rigs.frame_ids)):
        i = rows[k]
        rig = int(rigs.frame_rig_ids[k])
        out.append(f"{rigs.frame_ids[k]} {rig} {_fmt(model.image_qvecs[i])} {_fmt(model.image_tvecs[i])} 1 CAMERA "
                   f"{camera_of_rig[rig]} {rigs.frame_image_ids[k]}")
    return "\n".join(out) + "\n"
