"""g2o pose graphs: file I/O (:mod:`sparselm.g2o.io`), the Problem and its gauge
(:mod:`sparselm.g2o.problem`) and the command-line format entry (:mod:`sparselm.g2o.format`)."""
from sparselm.g2o.io import G2OFormatError, G2OWarning, PoseGraph, read_g2o, write_g2o
from sparselm.g2o.problem import build_problem, graph_error, solution_to_graph

__all__ = ["G2OFormatError", "G2OWarning", "PoseGraph", "read_g2o", "write_g2o", "build_problem", "graph_error",
           "solution_to_graph"]
