#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 from its PyPI sdist, CPU-only, against the installed torch.
#   bash tools/build_minkowski.sh            (what `make minkowski` runs)
# Needs libopenblas-dev (installed with apt-get when missing and we are root).
# Fixes applied to the sdist (see the book's appendix, Conventions: "Sparse convolution backends"):
#   - `from collections import Sequence` -> `collections.abc` (Python >= 3.10);
#   - `--blas=openblas` so setup.py never imports numpy.distutils (gone on Python >= 3.12);
#   - no pip build isolation, so pip never pulls an unpinned (CUDA) torch into a build env.
# For a CUDA build on a GPU box see README.md ("MinkowskiEngine on a GPU box").
set -euo pipefail
PY=${PYTHON:-python3}
VERSION=0.5.4
WORK=${ME_BUILD_DIR:-third_party}
URL=https://files.pythonhosted.org/packages/21/5c/c543c4bc5fbe73ac3e38465b3da4f24a61f7a4ac5baec867e582e94aa551/MinkowskiEngine-0.5.4.tar.gz
SHA256=b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94

if "$PY" -c "import MinkowskiEngine" 2>/dev/null; then
  echo "MinkowskiEngine already installed"
else
  if ! ldconfig -p | grep -q libopenblas; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev
    else
      echo "libopenblas-dev is missing: sudo apt-get install libopenblas-dev" >&2; exit 1
    fi
  fi
  mkdir -p "$WORK" && cd "$WORK"
  [ -f MinkowskiEngine-$VERSION.tar.gz ] || curl -sSLfO "$URL"
  echo "$SHA256  MinkowskiEngine-$VERSION.tar.gz" | sha256sum -c -
  rm -rf MinkowskiEngine-$VERSION && tar xzf MinkowskiEngine-$VERSION.tar.gz && cd MinkowskiEngine-$VERSION
  grep -rl "from collections import" --include=*.py MinkowskiEngine | xargs sed -i \
    -e 's/^from collections import Sequence, namedtuple$/from collections import namedtuple\nfrom collections.abc import Sequence/' \
    -e 's/^from collections import Sequence$/from collections.abc import Sequence/'
  MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py bdist_wheel --blas=openblas --cpu_only
  "$PY" -m pip install --no-deps --force-reinstall dist/*.whl
  cd ../..
fi
# Proof: one sparse convolution.
"$PY" - <<'PYEOF'
import torch, MinkowskiEngine as ME
coords = torch.IntTensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]])
x = ME.SparseTensor(torch.ones(3, 2), coordinates=coords)
conv = ME.MinkowskiConvolution(2, 4, kernel_size=3, dimension=3)
y = conv(x)
print(f"MinkowskiEngine {ME.__version__}: conv ok, output {tuple(y.F.shape)}")
PYEOF
