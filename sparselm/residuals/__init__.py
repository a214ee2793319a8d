"""Residual types: numba kernels that evaluate one kind of residual for a whole group at once."""
from sparselm.residuals.base import ResidualType
from sparselm.residuals.numeric import numeric_jacobian
from sparselm.residuals.check import check_jacobian, JacobianCheck

__all__ = ["ResidualType", "numeric_jacobian", "check_jacobian", "JacobianCheck"]
