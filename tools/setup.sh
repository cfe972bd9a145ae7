#!/usr/bin/env bash
# Set up everything twist_lib, its tests and the book need, on a fresh machine (idempotent).
#   bash tools/setup.sh        (what `make setup` runs)
# torch: installs torch==2.13.0 (the CPU build) only when no torch is importable, because an
# unpinned `torch` pulls gigabytes of CUDA packages; a GPU box keeps the CUDA torch it has.
set -euo pipefail
PY=${PYTHON:-python3}
if "$PY" -c "import torch" 2>/dev/null; then
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
  "$PY" -m pip install torch==2.13.0
fi
"$PY" -m pip install -q -r requirements.txt
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
# The kernel that papermill and nbval start for the book's notebooks (kernelspec "python3").
"$PY" -m ipykernel install --user --name python3 --display-name "Python 3 (twist)" >/dev/null
echo "setup done: $("$PY" -c 'import twist_lib, torch; print("twist_lib", twist_lib.__version__, "torch", torch.__version__)')"
