"""COLMAP's binary model files (cameras.bin, images.bin, points3D.bin, rigs.bin, frames.bin).

All little-endian. ``cameras.bin``: uint64 count, then per camera uint32 id, int32 model id, uint64
width, uint64 height, float64 params[n_params(model)]. ``images.bin``: uint64 count, then per image
uint32 id, float64 qw qx qy qz tx ty tz, uint32 camera id, the name (bytes up to a NUL), uint64
n_points2D, then n_points2D times (float64 x, float64 y, uint64 point3D_id). ``points3D.bin``: uint64
count, then per point uint64 id, float64 x y z, uint8 r g b, float64 error, uint64 track length, then
that many (uint32 image id, uint32 point2D index). COLMAP 3.12+ adds ``rigs.bin`` (uint64 count; per
rig uint32 id, uint32 n_sensors, the reference sensor as int32 type + uint32 id, then the other
sensors) and ``frames.bin`` (uint64 count; per frame uint32 id, uint32 rig id, float64 qw qx qy qz tx
ty tz, uint32 n_data, then n_data times int32 sensor type, uint32 sensor id, uint64 data id).

Readers walk the records with :class:`_Reader`, which turns running off the end into a
:class:`ColmapFormatError` naming the record; writers emit exactly the same layout, so a model read
and written again is byte-identical.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, List, Tuple

import numpy as np
from numba import njit

from sparselm.colmap.camera_models import CAMERA_MODELS
from sparselm.colmap.model import ColmapFormatError, ColmapModel, TrivialRigs, rows_of

__all__ = ["read_cameras_binary", "read_images_binary", "read_points3D_binary", "read_rigs_binary",
           "read_frames_binary", "write_cameras_binary", "write_images_binary", "write_points3D_binary",
           "write_rigs_binary", "write_frames_binary"]

SENSOR_CAMERA = 0
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<u8")])
_TRACK = np.dtype([("image", "<u4"), ("idx", "<u4")])
_POINT_HEAD = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8"), ("length", "<u8")])
_HEAD_BYTES = _POINT_HEAD.itemsize  # 51; the track length is its last 8 bytes


class _Reader:
    """A cursor over a file's bytes that reports truncation as a ColmapFormatError."""

    def __init__(self, data: bytes, path):
        self.data = data
        self.pos = 0
        self.path = path
        self.record = None

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ColmapFormatError(self.path, self.record,
                                    f"truncated: needs {size} more bytes at offset {self.pos}, the file has "
                                    f"{len(self.data) - self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        size = dtype.itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise ColmapFormatError(self.path, self.record,
                                    f"truncated: {count} entries need {size} bytes at offset {self.pos}, the file "
                                    f"has {len(self.data) - self.pos}")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out

    def name(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ColmapFormatError(self.path, self.record, "truncated: image name without its terminating NUL")
        raw = self.data[self.pos:end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ColmapFormatError(self.path, self.record, f"image name {raw!r} is not UTF-8") from None

    def finish(self):
        self.record = None
        if self.pos != len(self.data):
            raise ColmapFormatError(self.path, None, f"{len(self.data) - self.pos} bytes of unexpected data after the "
                                                     f"last record (offset {self.pos})")


def _ids_to_int64(ids: np.ndarray) -> np.ndarray:
    """uint64 point3D ids as int64, 2^64 - 1 (invalid) becoming -1."""
    return ids.astype(np.uint64).view(np.int64)


def read_cameras_binary(data: bytes, path) -> dict:
    """Parse cameras.bin: a dict of the camera_* fields of ColmapModel."""
    r = _Reader(data, path)
    (n,) = r.take("<Q")
    ids, models, widths, heights, params, offsets = [], [], [], [], [], [0]
    for i in range(n):
        r.record = f"camera record {i}"
        cid, model_id, width, height = r.take("<IiQQ")
        r.record = f"camera {cid} (record {i})"
        spec = CAMERA_MODELS.get(model_id)
        if spec is None:
            raise ColmapFormatError(path, r.record, f"unknown camera model id {model_id}")
        params.append(r.array(np.dtype("<f8"), spec.n_params))
        ids.append(cid), models.append(model_id), widths.append(width), heights.append(height)
        offsets.append(offsets[-1] + spec.n_params)
    r.finish()
    return dict(camera_ids=np.array(ids, np.int64), camera_model_ids=np.array(models, np.int64),
                camera_widths=np.array(widths, np.int64), camera_heights=np.array(heights, np.int64),
                camera_params=np.concatenate(params).astype(np.float64) if params else np.zeros(0),
                camera_param_offsets=np.array(offsets, np.int64))


def read_images_binary(data: bytes, path) -> dict:
    """Parse images.bin: a dict of the image_* and points2D_* fields of ColmapModel."""
    r = _Reader(data, path)
    (n,) = r.take("<Q")
    ids, cams, poses, names, blocks, offsets = [], [], [], [], [], [0]
    for i in range(n):
        r.record = f"image record {i}"
        values = r.take("<I7dI")
        r.record = f"image {values[0]} (record {i})"
        names.append(r.name())
        (n2,) = r.take("<Q")
        # a block's 24-byte records as rows of three little-endian 8-byte words: x, y, point3D_id
        blocks.append(r.array(_POINT2D, n2).view("<u8").reshape(-1, 3))
        ids.append(values[0]), poses.append(values[1:8]), cams.append(values[8])
        offsets.append(offsets[-1] + n2)
    r.finish()
    # copied once, straight into the model's arrays (a fresh page costs more than the copy), column by
    # column (a narrow 2-D strided copy is several times slower in numpy)
    xy = np.empty((offsets[-1], 2), np.float64)
    point3D_ids = np.empty(offsets[-1], np.int64)
    for lo, block in zip(offsets, blocks):
        hi = lo + len(block)
        xy[lo:hi, 0] = block[:, 0].view("<f8")
        xy[lo:hi, 1] = block[:, 1].view("<f8")
        point3D_ids[lo:hi] = block[:, 2].view("<i8")  # 2^64 - 1 (invalid) becomes -1
    pose = np.array(poses, np.float64).reshape(-1, 7)
    return dict(image_ids=np.array(ids, np.int64), image_camera_ids=np.array(cams, np.int64),
                image_qvecs=np.ascontiguousarray(pose[:, :4]), image_tvecs=np.ascontiguousarray(pose[:, 4:]),
                image_names=names, points2D_xy=xy, points2D_point3D_ids=point3D_ids,
                points2D_offsets=np.array(offsets, np.int64))


@njit(cache=True)
def _scan_points3D(buf, n):
    """Start offset and track length of each of the ``n`` records of points3D.bin (after the 8-byte
    count); ``failed`` is the first record that runs past the end (-1: none), ``end`` where the last
    record ends."""
    starts = np.empty(n, np.int64)
    lengths = np.empty(n, np.int64)
    pos = 8
    for i in range(n):
        if pos + _HEAD_BYTES > buf.shape[0]:
            return starts, lengths, i, pos
        length = np.int64(0)
        for k in range(8):
            length |= np.int64(buf[pos + _HEAD_BYTES - 8 + k]) << (8 * k)
        if length < 0 or pos + _HEAD_BYTES + 8 * length > buf.shape[0]:
            return starts, lengths, i, pos
        starts[i] = pos
        lengths[i] = length
        pos += _HEAD_BYTES + 8 * length
    return starts, lengths, -1, pos


@njit(cache=True)
def _split_points3D(buf, starts, lengths, offsets):
    """The records' heads (n, 51 bytes: id, xyz, rgb, error, length), copied out of the file's bytes
    ``buf``, and their track elements decoded straight into int64 arrays (all tracks one after the
    other): (heads, image ids, 2-D point indices), each element two little-endian uint32."""
    n = starts.shape[0]
    heads = np.empty((n, _HEAD_BYTES), np.uint8)
    image_ids = np.empty(offsets[n], np.int64)
    point2D_idx = np.empty(offsets[n], np.int64)
    for i in range(n):
        pos = starts[i]
        for k in range(_HEAD_BYTES):
            heads[i, k] = buf[pos + k]
        pos += _HEAD_BYTES
        for t in range(offsets[i], offsets[i] + lengths[i]):
            image_ids[t] = _uint32_at(buf, pos)
            point2D_idx[t] = _uint32_at(buf, pos + 4)
            pos += 8
    return heads, image_ids, point2D_idx


@njit(cache=True, inline="always")
def _uint32_at(buf, pos):
    """The little-endian uint32 at byte ``pos`` of ``buf``, as an int64."""
    return (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8) | (np.int64(buf[pos + 2]) << 16)
            | (np.int64(buf[pos + 3]) << 24))


def read_points3D_binary(data: bytes, path) -> dict:
    """Parse points3D.bin: a dict of the point* and track_* fields of ColmapModel. Record offsets are
    found by one compiled pass, the heads copied out and the tracks decoded by a second one."""
    r = _Reader(data, path)
    (n,) = r.take("<Q")
    if 8 + n * _POINT_HEAD.itemsize > len(data):
        raise ColmapFormatError(path, None, f"truncated: the header announces {n} points, which need at least "
                                            f"{8 + n * _POINT_HEAD.itemsize} bytes; the file has {len(data)}")
    buf = np.frombuffer(data, np.uint8)
    starts, lengths, failed, end = _scan_points3D(buf, n)
    if failed >= 0:
        record = f"point3D record {failed}"
        if end + 8 <= len(data):
            record = f"point3D {int(buf[end:end + 8].view('<u8')[0])} (record {failed})"
        raise ColmapFormatError(path, record, f"truncated: the record at offset {end} runs past the end of the file "
                                              f"({len(data)} bytes)")
    if end != len(data):
        raise ColmapFormatError(path, None, f"{len(data) - end} bytes of unexpected data after the last record "
                                            f"(offset {end})")
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    heads, track_image_ids, track_point2D_idx = _split_points3D(buf, starts, lengths, offsets)
    head = heads.reshape(-1).view(_POINT_HEAD)
    return dict(point3D_ids=_ids_to_int64(head["id"]), points_xyz=head["xyz"].astype(np.float64),
                points_rgb=head["rgb"].copy(), points_error=head["error"].astype(np.float64),
                track_image_ids=track_image_ids, track_point2D_idx=track_point2D_idx, track_offsets=offsets)


def read_rigs_binary(data: bytes, path) -> Tuple[np.ndarray, np.ndarray]:
    """Parse rigs.bin of trivial rigs: (rig_ids, rig_camera_ids); ColmapFormatError for any other rig."""
    r = _Reader(data, path)
    (n,) = r.take("<Q")
    rig_ids, cameras = [], []
    for i in range(n):
        r.record = f"rig record {i}"
        rig_id, n_sensors = r.take("<II")
        r.record = f"rig {rig_id} (record {i})"
        if n_sensors != 1:
            raise ColmapFormatError(path, r.record, f"has {n_sensors} sensors: only rigs of exactly one camera are "
                                                    f"supported (multi-camera rigs are not)")
        sensor_type, sensor_id = r.take("<iI")
        if sensor_type != SENSOR_CAMERA:
            raise ColmapFormatError(path, r.record, f"its sensor has type {sensor_type}, not a camera ({SENSOR_CAMERA})"
                                                    f": only camera rigs are supported")
        rig_ids.append(rig_id), cameras.append(sensor_id)
    r.finish()
    return np.array(rig_ids, np.int64), np.array(cameras, np.int64)


def read_frames_binary(data: bytes, path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse frames.bin of one image each: (frame_ids, rig_ids, image_ids, poses (n, 7))."""
    r = _Reader(data, path)
    (n,) = r.take("<Q")
    frame_ids, rig_ids, image_ids, poses = [], [], [], []
    for i in range(n):
        r.record = f"frame record {i}"
        values = r.take("<II7dI")
        r.record = f"frame {values[0]} (record {i})"
        if values[9] != 1:
            raise ColmapFormatError(path, r.record, f"has {values[9]} data ids: only frames of exactly one image are "
                                                    f"supported")
        sensor_type, _sensor_id, data_id = r.take("<iIQ")
        if sensor_type != SENSOR_CAMERA:
            raise ColmapFormatError(path, r.record, f"its data has sensor type {sensor_type}, not a camera")
        frame_ids.append(values[0]), rig_ids.append(values[1]), poses.append(values[2:9]), image_ids.append(data_id)
    r.finish()
    return (np.array(frame_ids, np.int64), np.array(rig_ids, np.int64), np.array(image_ids, np.int64),
            np.array(poses, np.float64).reshape(-1, 7))


def write_cameras_binary(model: ColmapModel, f: BinaryIO) -> None:
    """Write the cameras of ``model`` in cameras.bin layout to the binary file ``f``."""
    f.write(struct.pack("<Q", model.n_cameras))
    for i in range(model.n_cameras):
        f.write(struct.pack("<IiQQ", model.camera_ids[i], model.camera_model_ids[i], model.camera_widths[i],
                            model.camera_heights[i]))
        f.write(model.camera_params_of(i).astype("<f8").tobytes())


def write_images_binary(model: ColmapModel, f: BinaryIO) -> None:
    """Write the images of ``model`` in images.bin layout to the binary file ``f``."""
    f.write(struct.pack("<Q", model.n_images))
    pts = np.empty(len(model.points2D_xy), _POINT2D)
    pts["x"], pts["y"] = model.points2D_xy[:, 0], model.points2D_xy[:, 1]
    pts["id"] = model.points2D_point3D_ids.view(np.uint64)
    for i in range(model.n_images):
        f.write(struct.pack("<I7dI", model.image_ids[i], *model.image_qvecs[i], *model.image_tvecs[i],
                            model.image_camera_ids[i]))
        f.write(model.image_names[i].encode("utf-8") + b"\0")
        lo, hi = model.points2D_offsets[i], model.points2D_offsets[i + 1]
        f.write(struct.pack("<Q", hi - lo))
        f.write(pts[lo:hi].tobytes())


def write_points3D_binary(model: ColmapModel, f: BinaryIO) -> None:
    """Write the 3-D points of ``model`` in points3D.bin layout to the binary file ``f`` (vectorised:
    the records are scattered into one byte buffer)."""
    lengths = np.diff(model.track_offsets)
    starts = 8 + np.arange(model.n_points) * _POINT_HEAD.itemsize + 8 * model.track_offsets[:-1]
    out = np.empty(8 + model.n_points * _POINT_HEAD.itemsize + 8 * model.n_observations, np.uint8)
    out[:8] = np.array([model.n_points], "<u8").view(np.uint8)
    head = np.empty(model.n_points, _POINT_HEAD)
    head["id"], head["xyz"], head["rgb"] = model.point3D_ids.view(np.uint64), model.points_xyz, model.points_rgb
    head["error"], head["length"] = model.points_error, lengths
    out[starts[:, None] + np.arange(_POINT_HEAD.itemsize)] = head.view(np.uint8).reshape(-1, _POINT_HEAD.itemsize)
    track = np.empty(model.n_observations, _TRACK)
    track["image"], track["idx"] = model.track_image_ids, model.track_point2D_idx
    element = np.arange(model.n_observations) - np.repeat(model.track_offsets[:-1], lengths)
    positions = np.repeat(starts + _POINT_HEAD.itemsize, lengths) + 8 * element
    out[positions[:, None] + np.arange(8)] = track.view(np.uint8).reshape(-1, 8)
    f.write(out.tobytes())


def write_rigs_binary(rigs: TrivialRigs, f: BinaryIO) -> None:
    """Write trivial rigs (one camera each) in rigs.bin layout to the binary file ``f``."""
    f.write(struct.pack("<Q", len(rigs.rig_ids)))
    for rig_id, camera_id in zip(rigs.rig_ids, rigs.rig_camera_ids):
        f.write(struct.pack("<IIiI", rig_id, 1, SENSOR_CAMERA, camera_id))


def write_frames_binary(model: ColmapModel, f: BinaryIO) -> None:
    """Write the frames of ``model.rigs`` in frames.bin layout, each frame's pose its image's pose."""
    rigs = model.rigs
    rows = rows_of(model.image_ids, rigs.frame_image_ids)
    camera_of_rig = dict(zip(rigs.rig_ids.tolist(), rigs.rig_camera_ids.tolist()))
    f.write(struct.pack("<Q", len(rigs.frame_ids)))
    for k in range(len(rigs.frame_ids)):
        i = rows[k]
        f.write(struct.pack("<II7dIiIQ", rigs.frame_ids[k], rigs.frame_rig_ids[k], *model.image_qvecs[i],
                            *model.image_tvecs[i], 1, SENSOR_CAMERA, camera_of_rig[int(rigs.frame_rig_ids[k])],
                            rigs.frame_image_ids[k]))
