"""``sparselm.least_squares``: a drop-in for ``scipy.optimize.least_squares`` (see :mod:`sparselm.scipy_api.front`)."""
from sparselm.scipy_api.front import TERMINATION_MESSAGES, least_squares

__all__ = ["least_squares", "TERMINATION_MESSAGES"]
