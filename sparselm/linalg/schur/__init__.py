"""Schur elimination of an eliminated group (the points of bundle adjustment): the structure of the
reduced system S, the per-linearisation products (linearize), the per-trial elimination (eliminate)
and back substitution (kernels), the direct solvers (direct: sparse_schur, dense_schur), the
iterative one (iterative: PCG on S, implicit or explicit) and the factor-size estimate."""
