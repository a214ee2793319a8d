"""The lowest layer: atomic file writes, phase timing, thread settings, system memory, units.

Nothing here imports any other part of sparselm.
"""
