"""Read and write a COLMAP sparse model folder, binary or text.

:func:`read_model` reads ``cameras``, ``images`` and ``points3D`` (and, for COLMAP 3.12+ models,
``rigs`` and ``frames``) from a folder: the ``.bin`` files when ``cameras.bin`` is there (COLMAP's
rule: binary wins), else the ``.txt`` files. Rigs and frames are accepted when trivial (every rig is
one camera, every frame one image, the frame's pose the image's); anything else (multi-camera rigs,
IMU sensors, frames of several images) is refused with a ColmapFormatError saying so. The model is
validated (:func:`sparselm.colmap.model.validate`) before it is returned.

:func:`write_model` writes a model as binary (byte-identical to what it was read from when
unchanged) or text, atomically per folder (:func:`sparselm.atomic.atomic_directory`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from sparselm.util.atomic import atomic_directory
from sparselm.colmap import io_binary, io_text
from sparselm.colmap.model import ColmapFormatError, ColmapModel, TrivialRigs, rows_of, validate

__all__ = ["read_model", "write_model", "model_format", "is_model_folder"]

PathLike = Union[str, os.PathLike]
_PARTS = ("cameras", "images", "points3D")
_RIG_PARTS = ("rigs", "frames")


def _file_names(folder: Path) -> set:
    """Names of the regular files (or links to them) in ``folder``, from one directory scan (a model is
    read in a few milliseconds, and a system call per file it may hold was a tenth of that)."""
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.is_file()}


def model_format(folder: PathLike) -> str:
    """``"bin"`` or ``"txt"``: the form :func:`read_model` reads from ``folder``; ColmapFormatError when
    the folder holds neither a complete binary nor a complete text model."""
    return _format_of(Path(folder), _file_names(Path(folder)))


def _format_of(folder: Path, names: set) -> str:
    """:func:`model_format` of ``folder``, whose file names are ``names``."""
    for ext in ("bin", "txt"):
        present = [p for p in _PARTS if f"{p}.{ext}" in names]
        if present and ext == "bin" or len(present) == len(_PARTS):
            missing = [f"{p}.{ext}" for p in _PARTS if p not in present]
            if missing:
                raise ColmapFormatError(folder, None, f"incomplete binary model: {', '.join(missing)} missing")
            return ext
    raise ColmapFormatError(folder, None, "not a COLMAP model folder: no cameras/images/points3D .bin or .txt files")


def is_model_folder(path: PathLike) -> bool:
    """True when ``path`` is a folder holding a COLMAP model (binary or text)."""
    path = Path(path)
    return path.is_dir() and any((path / f"cameras.{ext}").is_file() for ext in ("bin", "txt"))


def read_model(folder: PathLike) -> ColmapModel:
    """The validated COLMAP model in ``folder`` (see the module docstring).

    Raises FileNotFoundError / NotADirectoryError for a missing folder, ColmapFormatError naming the
    file, the record (binary) or line (text) and the reason for anything malformed.
    """
    folder = Path(folder)
    try:
        names = _file_names(folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: no such folder") from None
    except NotADirectoryError:
        raise NotADirectoryError(f"{folder} is not a folder") from None
    ext = _format_of(folder, names)
    files = {p: folder / f"{p}.{ext}" for p in _PARTS + _RIG_PARTS}
    if ext == "bin":
        readers = (io_binary.read_cameras_binary, io_binary.read_images_binary, io_binary.read_points3D_binary)
        fields = {}
        for part, reader in zip(_PARTS, readers):
            with open(files[part], "rb") as fh:
                fields.update(reader(fh.read(), files[part]))
    else:
        readers = (io_text.read_cameras_text, io_text.read_images_text, io_text.read_points3D_text)
        fields = {}
        for part, reader in zip(_PARTS, readers):
            fields.update(reader(_read_text(files[part]), files[part]))
    model = ColmapModel(**fields, source=str(folder))
    validate(model, files)
    model.rigs = _read_rigs(model, files, ext, names)
    return model


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ColmapFormatError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_rigs(model: ColmapModel, files, ext: str, names: set):
    """The trivial rigs of the model, None when it has no rigs/frames files (``names``: the folder's files)."""
    present = [p for p in _RIG_PARTS if files[p].name in names]
    if not present:
        return None
    if len(present) == 1:
        raise ColmapFormatError(files[present[0]], None, f"{files[present[0]].name} without "
                                                         f"{'frames' if present[0] == 'rigs' else 'rigs'}.{ext}")
    if ext == "bin":
        rig_ids, rig_cams = io_binary.read_rigs_binary(files["rigs"].read_bytes(), files["rigs"])
        frame_ids, frame_rigs, frame_images, poses = io_binary.read_frames_binary(files["frames"].read_bytes(),
                                                                                  files["frames"])
    else:
        rig_ids, rig_cams = io_text.read_rigs_text(_read_text(files["rigs"]), files["rigs"])
        frame_ids, frame_rigs, frame_images, poses = io_text.read_frames_text(_read_text(files["frames"]),
                                                                              files["frames"])
    if (rows_of(model.camera_ids, rig_cams) < 0).any():
        k = int(np.flatnonzero(rows_of(model.camera_ids, rig_cams) < 0)[0])
        raise ColmapFormatError(files["rigs"], f"rig {rig_ids[k]} (record {k})", f"its camera {rig_cams[k]} is not in "
                                                                                 f"{files['cameras'].name}")
    rig_rows = rows_of(rig_ids, frame_rigs)
    image_rows = rows_of(model.image_ids, frame_images)
    for k in range(len(frame_ids)):
        record = f"frame {frame_ids[k]} (record {k})"
        if rig_rows[k] < 0:
            raise ColmapFormatError(files["frames"], record, f"refers to rig {frame_rigs[k]}, which is not in rigs.{ext}")
        if image_rows[k] < 0:
            raise ColmapFormatError(files["frames"], record, f"refers to image {frame_images[k]}, which is not in "
                                                             f"images.{ext}")
        i = image_rows[k]
        if model.image_camera_ids[i] != rig_cams[rig_rows[k]]:
            raise ColmapFormatError(files["frames"], record, f"image {frame_images[k]} has camera "
                                                             f"{model.image_camera_ids[i]}, rig {frame_rigs[k]} camera "
                                                             f"{rig_cams[rig_rows[k]]}")
        image_pose = np.concatenate([model.image_qvecs[i], model.image_tvecs[i]])
        if not np.allclose(poses[k], image_pose, rtol=1e-12, atol=1e-12):
            raise ColmapFormatError(files["frames"], record, f"rig_from_world {poses[k].tolist()} differs from image "
                                                             f"{frame_images[k]}'s cam_from_world {image_pose.tolist()}")
    return TrivialRigs(rig_ids, rig_cams, frame_ids, frame_rigs, frame_images)


def write_model(model: ColmapModel, folder: PathLike, *, text: bool = False, overwrite: bool = False,
                overwrite_input: bool = False) -> Path:
    """Write ``model`` to ``folder`` as binary (default) or text files, atomically, and return it.

    ``folder`` must not exist or be empty, unless ``overwrite`` (then the old folder is replaced as a
    whole). Writing over the folder the model was read from (``model.source``) is refused unless
    ``overwrite_input``. The model is validated first (ValueError / ColmapFormatError).
    """
    folder = Path(folder)
    if model.source and Path(model.source).exists() and folder.exists() and \
            folder.resolve() == Path(model.source).resolve() and not overwrite_input:
        raise FileExistsError(f"{folder} is the folder the model was read from; pass overwrite_input=True to "
                              f"replace it")
    validate(model, {p: f"{p} (in memory)" for p in _PARTS})

    def fill(tmp: Path) -> None:
        if text:
            (tmp / "cameras.txt").write_text(io_text.write_cameras_text(model), encoding="utf-8")
            (tmp / "images.txt").write_text(io_text.write_images_text(model), encoding="utf-8")
            (tmp / "points3D.txt").write_text(io_text.write_points3D_text(model), encoding="utf-8")
            if model.rigs is not None:
                (tmp / "rigs.txt").write_text(io_text.write_rigs_text(model.rigs), encoding="utf-8")
                (tmp / "frames.txt").write_text(io_text.write_frames_text(model), encoding="utf-8")
            return
        writers = [("cameras.bin", lambda f: io_binary.write_cameras_binary(model, f)),
                   ("images.bin", lambda f: io_binary.write_images_binary(model, f)),
                   ("points3D.bin", lambda f: io_binary.write_points3D_binary(model, f))]
        if model.rigs is not None:
            writers += [("rigs.bin", lambda f: io_binary.write_rigs_binary(model.rigs, f)),
                        ("frames.bin", lambda f: io_binary.write_frames_binary(model, f))]
        for name, writer in writers:
            with open(tmp / name, "wb") as f:
                writer(f)

    return atomic_directory(folder, fill, replace=overwrite or overwrite_input)
