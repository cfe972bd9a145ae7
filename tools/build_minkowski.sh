#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 from its PyPI sdist against the installed torch.
#   bash tools/build_minkowski.sh            CPU-only (what `make minkowski` runs)
#   CUDA=1 bash tools/build_minkowski.sh     with CUDA (what `make minkowski CUDA=1` runs)
# Needs libopenblas-dev (installed with apt-get when missing and we are root).
# Fixes applied to the sdist (see the book's appendix, Conventions: "Sparse convolution backends"):
#   - `from collections import Sequence` -> `collections.abc` (Python >= 3.10);
#   - `--blas=openblas` so setup.py never imports numpy.distutils (gone on Python >= 3.12);
#   - no pip build isolation, so pip never pulls an unpinned (CUDA) torch into a build env.
# CUDA=1 (a CUDA torch whose CUDA major version matches nvcc's; no GPU needed to compile):
#   CUDA_HOME (default /usr/local/cuda), TORCH_CUDA_ARCH_LIST (default "9.0": H100/H200, sm_90;
#   e.g. "8.0;8.6;9.0"), MAX_JOBS (default nproc; each nvcc job takes 2-3 GB of memory).
#   The source patches for CUDA 12/13, CCCL 3 and libstdc++ 12 are in cuda_patches below; when
#   CUDA_HOME lacks the cuBLAS/cuSPARSE/cuRAND headers (a toolkit assembled from pip wheels),
#   those of torch's pip `nvidia-*` wheels are used. The wheel is installed; the proof
#   convolution runs on the GPU when torch sees one, otherwise on the CPU (GPU path untested).
set -euo pipefail
PY=${PYTHON:-python3}
CUDA=${CUDA:-0}
VERSION=0.5.4
WORK=${ME_BUILD_DIR:-third_party}
URL=https://files.pythonhosted.org/packages/21/5c/c543c4bc5fbe73ac3e38465b3da4f24a61f7a4ac5baec867e582e94aa551/MinkowskiEngine-0.5.4.tar.gz
SHA256=b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94
ROOT=$(pwd)
# setup.py runs a bare `pip uninstall`: make it the pip of $PY.
PY_EXE=$(command -v "$PY") || { echo "interpreter '$PY' not found" >&2; exit 1; }
export PATH="$(dirname "$PY_EXE"):$PATH"

# add_include FILE HEADER: put `#include <HEADER>` before FILE's first #include, once.
add_include() {
  grep -q "^#include <$2>" "$1" || sed -i "0,/^#include/s||#include <$2>\n#include|" "$1"
}

# Source patches for CUDA >= 12 / CUDA 13 (CCCL 3) / torch >= 2.x (C++17/20) / GCC 12. Idempotent;
# run in the extracted sdist. Each comment quotes the compile error the edit fixes.
cuda_patches() {
  # '"nvtx3::domain" is ambiguous' (every .cu): the bundled cuDF copy of NVTX3 v3.0 clashes with
  # the toolkit's NVTX3 that torch/CCCL include; CUDF_FUNC_RANGE only marks a profiler range.
  cat > src/3rdparty/cudf/detail/nvtx/ranges.hpp <<'HPP'
#pragma once
// Patched by tools/build_minkowski.sh: NVTX ranges off (bundled NVTX3 clashes with CUDA >= 12's).
#define CUDF_FUNC_RANGE()
HPP
  # 'namespace "thrust" has no member "device"' (concurrent_unordered_map.cuh): no longer
  # included transitively by CCCL.
  add_include src/3rdparty/concurrent_unordered_map.cuh thrust/execution_policy.h
  # 'namespace "thrust" has no member class "unary_function"' (coordinate_map_functors.cuh):
  # removed in CCCL 3 (CUDA 13); the base only added typedefs that nothing reads.
  perl -0pi -e 's/\n\s*: public thrust::unary_function<uint32_t,\s*thrust::pair<uint32_t, uint32_t>> \{/ {/' \
    src/coordinate_map_functors.cuh
  # 'namespace "thrust" has no member "remove_if"' / '"unique"' (coordinate_map_gpu.cu).
  add_include src/coordinate_map_gpu.cu thrust/remove.h
  add_include src/coordinate_map_gpu.cu thrust/unique.h
  # 'namespace "thrust" has no member "device"' / '"sort_by_key"' / 'no instance of overloaded
  # function "thrust::reduce_by_key"' (spmm.cu).
  add_include src/spmm.cu thrust/execution_policy.h
  add_include src/spmm.cu thrust/sort.h
  add_include src/spmm.cu thrust/reduce.h
  # 'incomplete type "at::Tensor" is not allowed' (spmm.cu): torch 2.14's ATen/cuda/CUDAUtils.h
  # uses at::Tensor but includes only CUDAContext.h; include the Tensor definition first.
  grep -q "^#include <ATen/core/Tensor.h>" src/spmm.cu ||
    sed -i 's|^#include <ATen/cuda/CUDAUtils.h>|#include <ATen/core/Tensor.h>\n&|' src/spmm.cu
  # 'no suitable constructor exists to convert from "int" to "cudaMemLocation"'
  # (concurrent_unordered_map.cuh): CUDA 13 changed cudaMemPrefetchAsync(ptr, n, int device,
  # stream) to (ptr, n, cudaMemLocation, flags, stream).
  local f=src/3rdparty/concurrent_unordered_map.cuh
  grep -q me_mem_prefetch "$f" || {
    perl -pi -e 's/cudaMemPrefetchAsync\(/me_mem_prefetch(/g' "$f"
    perl -0pi -e 's|(#define CONCURRENT_UNORDERED_MAP_CUH\n)|$1\n#include <cuda_runtime_api.h>\ninline cudaError_t me_mem_prefetch(const void* p, size_t n, int dev, cudaStream_t s)\n{\n#if CUDART_VERSION >= 13000\n  cudaMemLocation loc{};\n  loc.type = cudaMemLocationTypeDevice;\n  loc.id   = dev;\n  return cudaMemPrefetchAsync(p, n, loc, 0, s);\n#else\n  return cudaMemPrefetchAsync(p, n, dev, s);\n#endif\n}\n|' "$f"
  }
  # 'more than one instance of overloaded function "std::__to_address"' (coordinate_map_gpu.cuh,
  # libstdc++ 12 + CCCL 3: `shared_ptr = unique_ptr&&` also finds cuda::std::__to_address by ADL):
  # build the shared_ptr from the raw pointer and the deleter instead.
  perl -0pi -e 's/m_map = map_type::create\(((?:[^;])*?)\);/{\n        auto created = map_type::create($1);\n        auto deleter = created.get_deleter();\n        m_map.reset(created.release(), std::move(deleter));\n      }/s' \
    src/coordinate_map_gpu.cuh
}

# Environment of a CUDA build: CUDA_HOME, the arch list, the checks torch would fail later on.
cuda_env() {
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  [ -x "$CUDA_HOME/bin/nvcc" ] || { echo "no nvcc at $CUDA_HOME/bin/nvcc: set CUDA_HOME" >&2; exit 1; }
  local nvcc_ver torch_cuda
  nvcc_ver=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
  torch_cuda=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
  [ -n "$torch_cuda" ] || { echo "torch is a CPU-only build: a CUDA build needs a CUDA torch" >&2; exit 1; }
  # torch.utils.cpp_extension raises on a major-version mismatch, only warns on a minor one.
  if [ "${nvcc_ver%%.*}" != "${torch_cuda%%.*}" ]; then
    echo "nvcc $nvcc_ver vs torch CUDA $torch_cuda: majors differ, torch refuses to build" >&2; exit 1
  fi
  echo "CUDA build: nvcc $nvcc_ver, torch CUDA $torch_cuda, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
  # CUDA 13 moved Thrust/CUB/libcu++ to include/cccl: nvcc adds it, g++ (the .cpp sources) does not
  # ('fatal error: thrust/host_vector.h: No such file or directory' in direct_max_pool.cpp).
  if [ -d "$CUDA_HOME/include/cccl" ]; then
    export CPLUS_INCLUDE_PATH="$CUDA_HOME/include/cccl${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}"
  fi
  # 'fatal error: cublas_v2.h: No such file or directory' when the toolkit lacks the math
  # libraries: take the headers and libcusparse of torch's pip nvidia-* wheels.
  if [ ! -f "$CUDA_HOME/include/cusparse.h" ]; then
    local inc=- lib=-
    read -r inc lib < <("$PY" - <<'PYEOF'
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
inc, lib = [], []
for root in roots:
    for h in ("cusparse.h", "cublas_v2.h", "curand.h"):
        for p in glob.glob(os.path.join(root, "*", "include", h)):
            if os.path.dirname(p) not in inc:
                inc.append(os.path.dirname(p))
    lib += sorted(glob.glob(os.path.join(root, "*", "lib", "libcusparse.so*")))
print(":".join(inc) or "-", lib[0] if lib else "-")
PYEOF
    ) || true
    if [ -z "$inc" ] || [ "$inc" = - ] || [ -z "$lib" ] || [ "$lib" = - ]; then
      echo "cusparse.h / libcusparse not in $CUDA_HOME nor in torch's nvidia wheels" >&2; exit 1
    fi
    echo "cuBLAS/cuSPARSE/cuRAND from torch's wheels: $inc, $lib"
    export CPATH="$inc${CPATH:+:$CPATH}"
    mkdir -p "$ROOT_WORK/cuda-link" && ln -sf "$lib" "$ROOT_WORK/cuda-link/libcusparse.so"
    export LIBRARY_PATH="$ROOT_WORK/cuda-link${LIBRARY_PATH:+:$LIBRARY_PATH}"
  fi
}

if [ "$CUDA" = 1 ]; then
  installed='import sys, MinkowskiEngine as ME; sys.exit(0 if ME.is_cuda_available() else 1)'
else
  installed='import MinkowskiEngine'
fi
if "$PY" -c "$installed" >/dev/null 2>&1; then
  echo "MinkowskiEngine already installed"
else
  if ! ldconfig -p | grep -q libopenblas; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev
    else
      echo "libopenblas-dev is missing: sudo apt-get install libopenblas-dev" >&2; exit 1
    fi
  fi
  mkdir -p "$WORK" && ROOT_WORK=$(cd "$WORK" && pwd) && cd "$WORK"
  [ -f MinkowskiEngine-$VERSION.tar.gz ] || curl -sSLfO "$URL"
  echo "$SHA256  MinkowskiEngine-$VERSION.tar.gz" | sha256sum -c -
  rm -rf MinkowskiEngine-$VERSION && tar xzf MinkowskiEngine-$VERSION.tar.gz && cd MinkowskiEngine-$VERSION
  grep -rl "from collections import" --include=*.py MinkowskiEngine | xargs sed -i \
    -e 's/^from collections import Sequence, namedtuple$/from collections import namedtuple\nfrom collections.abc import Sequence/' \
    -e 's/^from collections import Sequence$/from collections.abc import Sequence/'
  start=$SECONDS
  if [ "$CUDA" = 1 ]; then
    cuda_env
    cuda_patches
    MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py bdist_wheel --blas=openblas --force_cuda
  else
    MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py bdist_wheel --blas=openblas --cpu_only
  fi
  echo "MinkowskiEngine wheel built in $((SECONDS - start)) s: $(ls dist/*.whl) ($(du -h dist/*.whl | cut -f1))"
  "$PY" -m pip install --no-deps --force-reinstall dist/*.whl
  cd "$ROOT"
fi
# Proof: one sparse convolution (CUDA=1: on the GPU when torch sees one, else on the CPU only).
CUDA=$CUDA "$PY" - <<'PYEOF'
import os, torch, MinkowskiEngine as ME
device = "cpu"
if os.environ.get("CUDA") == "1":
    print(f"MinkowskiEngine {ME.__version__}: built with CUDA {ME.cuda_version()}, "
          f"is_cuda_available() = {ME.is_cuda_available()}")
    if torch.cuda.is_available():
        device = "cuda"
    else:
        print("torch sees no GPU: the CUDA kernels are untested here (CPU convolution only)")
coords = torch.IntTensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]])
x = ME.SparseTensor(torch.ones(3, 2), coordinates=coords, device=device)
conv = ME.MinkowskiConvolution(2, 4, kernel_size=3, dimension=3).to(device)
y = conv(x)
print(f"MinkowskiEngine {ME.__version__}: conv ok on {device}, output {tuple(y.F.shape)}")
PYEOF
