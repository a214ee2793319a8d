"""Covariance of the estimate, block by block; the math is in :mod:`sparselm.covariance.estimate`.

This package is itself callable: ``sparselm.covariance(problem, summary, blocks=..., gauge=...)`` is
:func:`sparselm.covariance.estimate.covariance` (so that the call the users write and the package
holding the code share one name, and ``sparselm.covariance.gauge`` etc. stay importable).
"""
import sys
import types

from sparselm.covariance.estimate import CovarianceError, covariance
from sparselm.covariance.gauge import GaugeError
from sparselm.covariance.result import Covariance, UndefinedCovarianceError

__all__ = ["covariance", "Covariance", "CovarianceError", "GaugeError", "UndefinedCovarianceError"]


class _CallablePackage(types.ModuleType):
    """The package's module type: calling it calls :func:`covariance`."""

    def __call__(self, *args, **kwargs):
        return covariance(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
