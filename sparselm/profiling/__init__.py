"""Where a solve spends its time and memory (run, structure, report, plots, jit) and the
environment it runs in (doctor, blas)."""
