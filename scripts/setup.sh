#!/usr/bin/env bash
# Idempotent set-up: system packages (CHOLMOD headers, OpenBLAS), a virtual environment in .venv,
# and sparselm installed into it in editable mode with the test extra and the bench extra (the
# peers pycolmap and gtsam: tests compare against pycolmap's camera models).
# Usage: scripts/setup.sh            (re-running it is cheap: each step checks before it acts)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libsuitesparse-dev libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# CHOLMOD's supernodal factorization calls BLAS: make sure the system BLAS/LAPACK is OpenBLAS,
# not the ~10x slower reference implementation.
arch=$(uname -m)-linux-gnu
for lib in libblas.so.3 liblapack.so.3; do
  alt="$lib-$arch"
  target=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-pthread || true)
  if [ -n "$target" ] && [ "$(readlink -f /etc/alternatives/$alt 2>/dev/null)" != "$(readlink -f "$target")" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: pointing $alt at $target"
    $SUDO update-alternatives --set "$alt" "$target" >/dev/null
  fi
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.sparselm-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  echo "setup: installing sparselm (editable) into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "numpy" "cython" "setuptools>=61" "wheel"
  .venv/bin/python -m pip install -q --no-build-isolation -e ".[test,bench]"
  touch "$stamp"
fi
