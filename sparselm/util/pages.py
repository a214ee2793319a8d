"""Zero-filled arrays for the big per-observation buffers, without numpy's huge-page advice.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every array of
4 MiB or more. Where the kernel's THP ``defrag`` setting is ``madvise`` (Debian's and Ubuntu's
default), a fault on such a region may stall in direct memory compaction before a huge page is
handed out. On the first linearisation of a 10^7-observation problem this made the first touch of
the ~2 GB Jacobian cost 5.7 s of system time against 1.3 s of user time (the second linearisation
took 0.7 s). :func:`zeros` maps anonymous memory itself and gives no advice, so the kernel applies
its default policy (huge pages where ``enabled`` is ``always``, plain pages where it is ``madvise``)
and never compacts memory inside a fault. The values are those of ``np.zeros``; only the page
policy differs.
"""
from __future__ import annotations

import mmap

import numpy as np

#: below this many bytes :func:`zeros` is ``np.zeros``: numpy gives no huge-page advice there (its threshold
#: is 4 MiB). From 4 MiB up the advice already costs: a fresh 5.5 MB array took 7-11 ms to first touch
#: from ``np.zeros`` against ~2 ms from its own mapping (2-core Intel Xeon VM, THP ``defrag=madvise``)
MAPPED_MIN_BYTES = 4 * 2**20


def zeros(shape, dtype=np.float64) -> np.ndarray:
    """``np.zeros(shape, dtype)``; arrays of at least :data:`MAPPED_MIN_BYTES` bytes live in their own
    anonymous mapping without huge-page advice, released when the array is."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    n_bytes = count * dtype.itemsize
    if n_bytes < MAPPED_MIN_BYTES:
        return np.zeros(shape, dtype)
    mapping = mmap.mmap(-1, n_bytes)  # anonymous memory reads as zeros
    return np.frombuffer(mapping, dtype=dtype, count=count).reshape(shape)
