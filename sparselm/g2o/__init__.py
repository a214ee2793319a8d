"""g2o pose graphs: file I/O (:mod:`sparselm.g2o.io`)."""
from sparselm.g2o.io import G2OFormatError, G2OWarning, PoseGraph, read_g2o, write_g2o

__all__ = ["G2OFormatError", "G2OWarning", "PoseGraph", "read_g2o", "write_g2o"]
