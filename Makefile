# The two commands of the README:
#   make demo   solve a bundle-adjustment problem (an embedded default when FILE is not given)
#   make test   run the whole test suite (the real BAL files come from SPARSELM_DATA)
# Both install what they need first (scripts/setup.sh is idempotent).

VENV   := .venv
PY     := $(VENV)/bin/python
FILE   ?=
ARGS   ?=
SPARSELM_DATA ?= $(abspath ../shared/bal)
SPARSELM_G2O_DATA ?= $(abspath ../shared/g2o)
SPARSELM_COLMAP_DATA ?= $(abspath ../shared/colmap)
export SPARSELM_DATA SPARSELM_G2O_DATA SPARSELM_COLMAP_DATA

.PHONY: setup demo test bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/bin/sparselm solve $(FILE) $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

bench: setup
	@$(PY) -c "import pycolmap" 2>/dev/null || $(PY) -m pip install -q --no-build-isolation -e ".[bench]"
	$(PY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
