#!/usr/bin/env bash
# Set up everything twist_lib, its tests and the book need, on a fresh machine (idempotent).
#   bash tools/setup.sh        (what `make setup` runs; PYTHON=..., VENV=... as in the Makefile)
# The interpreter (tools/interpreter.sh): an active virtualenv or conda env is used as it is;
# otherwise the project's .venv is created from PYTHON and everything goes there (PEP 668: a
# system Python refuses pip installs). VENV=off installs into PYTHON itself.
# torch: installs torch==2.13.0 (the CPU build) only when no torch is importable, because an
# unpinned `torch` pulls gigabytes of CUDA packages; a GPU box keeps the CUDA torch it has.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${PYTHON:-python3}
PY=$(PYTHON="$BASE" bash tools/interpreter.sh)
if [ ! -x "$PY" ]; then
  venv_dir=$(dirname "$(dirname "$PY")")
  echo "creating the project's virtual environment $venv_dir from $(command -v "$BASE")"
  if ! "$BASE" -m venv "$venv_dir"; then
    rm -rf "$venv_dir"
    echo "error: '$BASE -m venv' failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
    echo "       (or activate an environment of your own, or run with VENV=off)" >&2
    exit 1
  fi
fi
echo "interpreter: $PY"
if "$PY" -c "import torch" 2>/dev/null; then
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
  "$PY" -m pip install torch==2.13.0
fi
"$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 64)" 2>/dev/null \
  || "$PY" -m pip install -q "setuptools>=64"
"$PY" -m pip install -q -r requirements.txt
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
# The kernel that papermill, nbval and the book build start for the notebooks (kernelspec
# "python3"): inside an environment it is registered there (Jupyter prefers it over a user-wide
# one), so two checkouts with their own .venv never point each other's notebooks at the wrong env.
source tools/interpreter.sh   # in_env
if in_env "$PY"; then
  where=--sys-prefix
else
  where=--user
fi
"$PY" -m ipykernel install $where --name python3 --display-name "Python 3 (twist)" >/dev/null
# The JavaScript that draws the book's ipywidgets offline (require.js and the ipywidgets embed
# bundle, pinned; into third_party/widgets_js, which the book copies into its _static). Without
# it the rest works, and the book build tries the fetch again and fails if it cannot.
PYTHON="$PY" bash tools/widgets_js.sh \
  || echo "warning: tools/widgets_js.sh failed (npm registry unreachable?): the book will not build" >&2
echo "setup done: $("$PY" -c 'import twist_lib, torch; print("twist_lib", twist_lib.__version__, "torch", torch.__version__)')"
