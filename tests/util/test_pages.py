"""util/pages.zeros: the values, shape and dtype of np.zeros, in an anonymous mapping when large."""
import mmap

import numpy as np
import pytest

from sparselm.util import pages


def _owner(array):
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


@pytest.mark.parametrize("shape,dtype", [((1000, 2, 12), np.float64), ((4096,), np.int32), ((3, 0, 5), np.float64)])
def test_large_arrays_are_zero_writable_and_mapped(monkeypatch, shape, dtype):
    monkeypatch.setattr(pages, "MAPPED_MIN_BYTES", 1)
    a = pages.zeros(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert not a.any()
    if a.size:
        assert isinstance(_owner(a), mmap.mmap)
        a[...] = 7
        assert (a == 7).all()


def test_small_arrays_are_plain_numpy_arrays():
    a = pages.zeros((10, 2))
    assert isinstance(a, np.ndarray) and not isinstance(_owner(a), mmap.mmap) and not a.any()
