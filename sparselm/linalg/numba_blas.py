"""BLAS routines callable from numba kernels (SciPy's bundled BLAS), with on-disk caching intact.

numba cannot cache a kernel that calls a ctypes function pointer: the pointer is a process-specific
address baked into the machine code. Here the routine's address, from ``scipy.linalg.cython_blas``,
is registered with LLVM under a fixed symbol name when this module is imported, and kernels call
the symbol by name (``numba.types.ExternalFunction``); a kernel loaded from the cache by a later
process resolves the name against that process's registration. Import this module before such a
kernel is compiled or loaded (its callers' modules import it).

The routines run single-threaded inside each numba worker under sparselm's thread policy
(:mod:`sparselm.util.threads` caps every loaded OpenBLAS at one thread), so the parallelism comes
from calling them on separate chunks in a ``prange``.
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

_DSYRK = "sparselm_scipy_dsyrk"
llvm.add_symbol(_DSYRK, get_cython_function_address("scipy.linalg.cython_blas", "dsyrk"))
_dsyrk = types.ExternalFunction(_DSYRK, types.void(*([types.voidptr] * 10)))


@intrinsic
def _data_pointer(typingctx, array):
    """The address of ``array``'s first element, as the ``void *`` a BLAS argument takes."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.bitcast(data, cgutils.voidptr_t)

    return types.voidptr(array), codegen


@numba.njit(cache=True)
def gram_lower(a, out, beta):
    """``out`` <- beta ``out`` + A^T A on the lower triangle, for a C-contiguous (k, n) array A, by BLAS ``dsyrk``.

    ``out`` is a C-contiguous (n, n) array read column-major: ``out[c, r]`` (r >= c) receives
    beta out[c, r] + (A^T A)[r, c] = beta out[c, r] + sum_i a[i, r] a[i, c]; the entries r < c are left
    untouched. beta = 0 overwrites (``out``'s old values are not read, NaN included), beta = 1
    accumulates. 2 k n (n + 1) / 2 flops. (In BLAS terms: C = A' A'^T + beta C with A' = the n x k
    column-major view of ``a``.)"""
    n = a.shape[1]
    ints = np.empty(2, np.int32)
    ints[0] = n
    ints[1] = a.shape[0]
    flags = np.empty(2, np.uint8)
    flags[0] = 76  # 'L': lower triangle of the column-major C
    flags[1] = 78  # 'N': C = A' A'^T
    scalars = np.empty(2)
    scalars[0] = 1.0
    scalars[1] = beta
    _dsyrk(_data_pointer(flags[0:1]), _data_pointer(flags[1:2]), _data_pointer(ints[0:1]), _data_pointer(ints[1:2]),
           _data_pointer(scalars[0:1]), _data_pointer(a), _data_pointer(ints[0:1]), _data_pointer(scalars[1:2]),
           _data_pointer(out), _data_pointer(ints[0:1]))
