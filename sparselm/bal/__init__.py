"""BAL ("Bundle Adjustment in the Large") problems: file I/O, synthetic problems, the dataset registry."""
from sparselm.bal.io import BALFormatError, BALProblem, read_bal, write_bal
from sparselm.bal.registry import (ChecksumError, DatasetInfo, DatasetNotFoundError, cache_dir, dataset_info,
                                   fetch, list_datasets, resolve)
from sparselm.bal.synthetic import SyntheticProblem, default_problem, synthetic_problem
from sparselm.bal.problem import build_problem, reprojection_errors, solution_to_bal

__all__ = [
    "BALFormatError", "BALProblem", "read_bal", "write_bal",
    "SyntheticProblem", "default_problem", "synthetic_problem",
    "ChecksumError", "DatasetInfo", "DatasetNotFoundError", "cache_dir", "dataset_info", "fetch",
    "list_datasets", "resolve",
    "build_problem", "reprojection_errors", "solution_to_bal",
]
