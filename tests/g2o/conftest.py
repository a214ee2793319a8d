"""The real pose graphs the g2o tests use (found by the ``g2o_file`` fixture of tests/conftest.py)."""

FILES = ["intel", "parking-garage", "sphere2500", "smallGrid3D"]
