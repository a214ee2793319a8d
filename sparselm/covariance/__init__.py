"""Covariance of the estimate, block by block; the math is in :mod:`sparselm.covariance.estimate`.

``sparselm.covariance`` (the attribute of the top-level package) is the function
:func:`~sparselm.covariance.estimate.covariance`, as users call it; import this package's modules
with ``from sparselm.covariance.<module> import ...`` (or ``from sparselm.covariance import ...``).
"""
from sparselm.covariance.estimate import CovarianceError, covariance
from sparselm.covariance.gauge import GaugeError
from sparselm.covariance.result import Covariance, UndefinedCovarianceError

__all__ = ["covariance", "Covariance", "CovarianceError", "GaugeError", "UndefinedCovarianceError"]
