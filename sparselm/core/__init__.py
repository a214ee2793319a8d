"""The problem model: parameter and residual groups (problem), weighting (sigma / covariance /
information -> square-root information), robust losses, the column layout of J and the
normal matrix (layout), and the evaluator of residuals, Jacobians, gradient and cost."""
