#!/usr/bin/env bash
# Print the absolute path of the Python interpreter every make target uses.
#   PYTHON=python3 VENV=.venv bash tools/interpreter.sh
# - PYTHON itself when it runs inside a virtualenv or a conda environment (an activated env, a
#   GPU box's conda env with its CUDA torch), or when VENV=off;
# - otherwise the project's virtual environment, $VENV/bin/python (default .venv), which
#   `make setup` creates from PYTHON: a system Python such as Debian's or Ubuntu's refuses pip
#   installs (PEP 668, "externally-managed-environment"), and a project env keeps it clean.
# The path is printed even before the environment exists; tools/setup.sh creates it.
# Sourced (tools/setup.sh), it only defines in_env.
set -euo pipefail

# in_env PY: PY runs inside a virtualenv or a conda environment.
in_env() {
  "$1" - <<'PYEOF' 2>/dev/null
import os, sys
in_venv = sys.prefix != sys.base_prefix
in_conda = os.path.isdir(os.path.join(sys.prefix, "conda-meta"))
sys.exit(0 if in_venv or in_conda else 1)
PYEOF
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  PY=${PYTHON:-python3}
  VENV=${VENV:-.venv}
  exe=$(command -v "$PY" 2>/dev/null) || { echo "interpreter '$PY' not found (set PYTHON=...)" >&2; exit 1; }
  if [ "$VENV" = off ] || in_env "$exe"; then
    "$exe" -c 'import sys; print(sys.executable)'
  else
    case "$VENV" in /*) echo "$VENV/bin/python" ;; *) echo "$(pwd)/$VENV/bin/python" ;; esac
  fi
fi
