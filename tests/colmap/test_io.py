"""Reading and writing COLMAP models: byte-identical binary round trips of the real models, text and
binary forms reading to the same values, trivial 3.12+ rigs, atomic folder writes, and every kind of
malformed input rejected with its file, record and reason."""
import dataclasses
import struct

import numpy as np
import pytest

from sparselm.colmap import ColmapFormatError, TrivialRigs, read_model, write_model
from sparselm.colmap import io_binary


def assert_same_model(a, b):
    for f in dataclasses.fields(a):
        if f.name in ("source", "rigs"):
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def test_binary_round_trip_is_byte_identical(real_model_dir, tmp_path):
    model = read_model(real_model_dir)
    out = write_model(model, tmp_path / "out")
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (out / name).read_bytes() == (real_model_dir / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_text_and_binary_read_to_the_same_values(real_model_dir, tmp_path):
    model = read_model(real_model_dir)
    text = write_model(model, tmp_path / "text", text=True)
    assert sorted(p.name for p in text.iterdir()) == ["cameras.txt", "images.txt", "points3D.txt"]
    assert_same_model(model, read_model(text))
    assert model.n_observations == len(model.observations()[0])


def test_binary_wins_when_both_forms_exist(video7_dir, tmp_path):
    model = read_model(video7_dir)
    out = write_model(model, tmp_path / "both")
    moved = model.with_values(points_xyz=model.points_xyz + 1.0)
    text = write_model(moved, tmp_path / "text", text=True)
    for p in text.iterdir():
        p.rename(out / p.name)
    assert np.array_equal(read_model(out).points_xyz, model.points_xyz)


def test_trivial_rigs_round_trip_and_multi_camera_rigs_are_refused(video7_dir, tmp_path):
    model = read_model(video7_dir)
    model.rigs = TrivialRigs(model.camera_ids.copy(), model.camera_ids.copy(), model.image_ids.copy(),
                             model.image_camera_ids.copy(), model.image_ids.copy())
    for text in (False, True):
        out = write_model(model, tmp_path / f"rigs{text}", text=text)
        back = read_model(out)
        assert_same_model(model, back)
        assert np.array_equal(back.rigs.frame_image_ids, model.image_ids)
    out = tmp_path / "rigsFalse"
    data = bytearray((out / "rigs.bin").read_bytes())
    struct.pack_into("<I", data, 12, 2)  # first rig: 2 sensors
    (out / "rigs.bin").write_bytes(bytes(data))
    with pytest.raises(ColmapFormatError, match=r"rigs.bin: rig \d+ \(record 0\): has 2 sensors: only rigs of "
                                                r"exactly one camera are supported"):
        read_model(out)


def test_write_is_atomic_and_refuses_to_clobber(video7_dir, tmp_path):
    model = read_model(video7_dir)
    out = write_model(model, tmp_path / "m")
    with pytest.raises(FileExistsError):
        write_model(model, out)
    bad = model.with_values(points_xyz=np.full_like(model.points_xyz, np.nan))
    with pytest.raises(ColmapFormatError, match="non-finite position"):
        write_model(bad, out, overwrite=True)
    assert (out / "points3D.bin").read_bytes() == (video7_dir / "points3D.bin").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with pytest.raises(FileExistsError, match="read from"):
        write_model(read_model(out), out)
    moved = model.with_values(points_xyz=model.points_xyz * 2)
    write_model(moved, out, overwrite=True)
    assert np.array_equal(read_model(out).points_xyz, moved.points_xyz)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def _write_raw(model, folder):
    """Write binary files without validation, to produce inconsistent models."""
    folder.mkdir()
    for name, writer in (("cameras.bin", io_binary.write_cameras_binary), ("images.bin", io_binary.write_images_binary),
                         ("points3D.bin", io_binary.write_points3D_binary)):
        with open(folder / name, "wb") as f:
            writer(model, f)
    return folder


def _copy(model):
    return dataclasses.replace(model, **{f.name: getattr(model, f.name).copy() for f in dataclasses.fields(model)
                                         if isinstance(getattr(model, f.name), np.ndarray)})


def _corrupt(model, field, index, value):
    m = _copy(model)
    getattr(m, field)[index] = value
    return m


BAD_MODELS = {
    "image refers to a missing camera": (lambda m: _corrupt(m, "image_camera_ids", 2, 999),
                                         r"images.bin: image \d+ \(record 2\): refers to camera 999, which is not in"),
    "track refers to a missing image": (lambda m: _corrupt(m, "track_image_ids", 5, 4242),
                                        r"points3D.bin: point3D \d+ \(record \d+\): track element \d+ refers to image "
                                        r"4242, which is not in"),
    "track refers to a missing 2-D point": (lambda m: _corrupt(m, "track_point2D_idx", 5, 10 ** 6),
                                            r"points3D.bin: point3D \d+ \(record \d+\): track element \d+ refers to "
                                            r"2-D point 1000000 of image \d+, which has \d+ 2-D points"),
    "NaN point": (lambda m: _corrupt(m, "points_xyz", (3, 1), np.nan),
                  r"points3D.bin: point3D \d+ \(record 3\): non-finite position"),
    "NaN camera parameter": (lambda m: _corrupt(m, "camera_params", 0, np.nan),
                             r"cameras.bin: camera \d+ \(record 0\): non-finite parameter"),
    "NaN quaternion": (lambda m: _corrupt(m, "image_qvecs", (1, 2), np.nan),
                       r"images.bin: image \d+ \(record 1\): non-finite quaternion"),
    "NaN 2-D point": (lambda m: _corrupt(m, "points2D_xy", (0, 0), np.inf),
                      r"images.bin: image \d+ \(record 0\): 2-D point 0 has non-finite coordinates"),
}


def _point3D_id_out_of_range(m):
    k = int(np.flatnonzero(m.points2D_point3D_ids == -1)[0])
    return _corrupt(m, "points2D_point3D_ids", k, 10 ** 12)


def _point3D_id_inconsistent(m):
    k = int(np.flatnonzero(m.points2D_point3D_ids == -1)[0])
    return _corrupt(m, "points2D_point3D_ids", k, m.point3D_ids[0])


def _repeated_observation(m):
    m = _copy(m)
    row = int(np.flatnonzero(m.image_ids == m.track_image_ids[1])[0])
    m.points2D_point3D_ids[m.points2D_offsets[row] + m.track_point2D_idx[1]] = -1  # the element given up
    m.track_image_ids[1], m.track_point2D_idx[1] = m.track_image_ids[0], m.track_point2D_idx[0]
    return m


def _nan_in_a_later_image(m):
    row = 3  # a 2-D point in the middle of image record 3: the message names that image
    return _corrupt(m, "points2D_xy", (int(m.points2D_offsets[row]) + 5, 1), np.nan)


def _duplicate_image_id(m):
    return _corrupt(m, "image_ids", 4, m.image_ids[1])


BAD_MODELS["NaN 2-D point of a later image"] = (_nan_in_a_later_image, r"images.bin: image \d+ \(record 3\): 2-D point 5 "
                                                r"has non-finite coordinates")
BAD_MODELS["duplicate image id"] = (_duplicate_image_id, r"images.bin: image \d+ \(record 4\): duplicate image id "
                                                         r"\(also record 1\)")
BAD_MODELS["repeated observation"] = (_repeated_observation, r"points3D.bin: point3D \d+ \(record 0\): track element 1 "
                                      r"repeats an observation already in a track")
BAD_MODELS["point3D_id out of range"] = (_point3D_id_out_of_range, r"images.bin: image \d+ \(record \d+\): 2-D point "
                                         r"\d+ has point3D_id 1000000000000, which is out of range: no such point")
BAD_MODELS["point3D_id not in the track"] = (_point3D_id_inconsistent, r"images.bin: image \d+ \(record \d+\): 2-D "
                                             r"point \d+ has point3D_id \d+, which is not in that point's track")


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_inconsistent_model_is_rejected_with_file_record_and_reason(case, video7_dir, tmp_path):
    make, pattern = BAD_MODELS[case]
    folder = _write_raw(make(read_model(video7_dir)), tmp_path / "bad")
    with pytest.raises(ColmapFormatError, match=pattern):
        read_model(folder)


@pytest.mark.parametrize("name,cut", [("cameras.bin", 30), ("images.bin", 5000), ("points3D.bin", 1000),
                                      ("points3D.bin", 4)])
def test_truncated_file_is_rejected_naming_the_record(name, cut, video7_dir, tmp_path):
    folder = _write_raw(read_model(video7_dir), tmp_path / "m")
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[:cut])
    with pytest.raises(ColmapFormatError, match=rf"{name}: .*truncated"):
        read_model(folder)


def test_extra_bytes_and_unknown_camera_model_are_rejected(video7_dir, tmp_path):
    folder = _write_raw(read_model(video7_dir), tmp_path / "m")
    cams = (folder / "cameras.bin").read_bytes()
    (folder / "cameras.bin").write_bytes(cams + b"\0")
    with pytest.raises(ColmapFormatError, match="1 bytes of unexpected data after the last record"):
        read_model(folder)
    data = bytearray(cams)
    struct.pack_into("<i", data, 12, 99)  # first camera's model id
    (folder / "cameras.bin").write_bytes(bytes(data))
    with pytest.raises(ColmapFormatError, match=r"cameras.bin: camera \d+ \(record 0\): unknown camera model id 99"):
        read_model(folder)


@pytest.mark.parametrize("name,old,new,pattern", [
    ("cameras.txt", " SIMPLE_RADIAL ", " FANCY ", r"cameras.txt:4: unknown camera model 'FANCY'"),
    ("points3D.txt", "\n", "\nx ", r"points3D.txt:2: .*expected numbers"),
    ("images.txt", "\n1 ", "\n1 nan ", r"images.txt:\d+: image 1 pose: .*"),
])
def test_malformed_text_is_rejected_naming_the_line(name, old, new, pattern, video7_dir, tmp_path):
    folder = write_model(read_model(video7_dir), tmp_path / "t", text=True)
    text = (folder / name).read_text()
    (folder / name).write_text(text.replace(old, new, 1))
    with pytest.raises(ColmapFormatError, match=pattern):
        read_model(folder)


def test_missing_and_incomplete_folders(tmp_path, video7_dir):
    with pytest.raises(FileNotFoundError):
        read_model(tmp_path / "nothing")
    with pytest.raises(ColmapFormatError, match="not a COLMAP model folder"):
        read_model(tmp_path)
    folder = _write_raw(read_model(video7_dir), tmp_path / "m")
    (folder / "images.bin").unlink()
    with pytest.raises(ColmapFormatError, match="incomplete binary model: images.bin missing"):
        read_model(folder)


def test_ids_out_of_order_are_accepted(video7_dir, tmp_path):
    m = _copy(read_model(video7_dir))
    a, b = int(m.image_ids[0]), int(m.image_ids[1])
    m.image_ids[0], m.image_ids[1] = b, a  # the first two images swap ids; the tracks follow
    first, second = m.track_image_ids == a, m.track_image_ids == b
    m.track_image_ids[first], m.track_image_ids[second] = b, a
    back = read_model(_write_raw(m, tmp_path / "swapped"))
    assert back.image_ids[:2].tolist() == [b, a]
    assert np.array_equal(back.track_image_ids, m.track_image_ids)
