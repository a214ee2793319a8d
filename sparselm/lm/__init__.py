"""Levenberg-Marquardt: options, the trust-region strategy, the minimiser loop, the summary it
reports, the up-front memory estimate, and :func:`sparselm.lm.solve.solve` wiring them together."""
