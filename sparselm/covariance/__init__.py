"""Covariance of the estimate, block by block; see :mod:`sparselm.covariance.estimate`."""
from sparselm.covariance.estimate import CovarianceError, covariance
from sparselm.covariance.gauge import GaugeError
from sparselm.covariance.result import Covariance, UndefinedCovarianceError

__all__ = ["covariance", "Covariance", "CovarianceError", "GaugeError", "UndefinedCovarianceError"]
