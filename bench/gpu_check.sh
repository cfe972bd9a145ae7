#!/usr/bin/env bash
# The prepared GPU check of the scale issue: one script, about 8 minutes on one H200.
#
#   bash bench/gpu_check.sh            # from the repository root, on a machine with CUDA
#
# Writes under ${OUT:-runs/gpu_check}: env.txt (torch, CUDA, GPU), cuda_tests.txt (every test
# that needs CUDA), bench.csv / bench.txt (the benchmark suite, --quick, on CUDA), twist.txt (a
# short `gpu`-profile TWIST run on ScanNet-size synthetic scenes: round 0 + 1 round, a few
# steps each, with the seconds per step) and, with two or more GPUs, torchrun.txt (the
# same run on 2 ranks). Each part has its own time limit so that one hang cannot eat the rest.
#
# The machine needs no internet: torch, numpy, scipy, tqdm and pyyaml come with most CUDA images;
# missing pure-Python packages (plotly, for the HTML views) are installed from wheels in .whl/
# when that folder is there (`pip download plotly -d .whl` on a machine with internet). Not yet
# run on a GPU: no GPU has been lent to this project's sessions so far.
set -u
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
if [ -d .whl ]; then $PY -m pip install -q --no-index --find-links .whl plotly pyyaml tqdm 2>&1 | tail -1; fi

$PY - <<'EOF' | tee "$OUT/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF

# 1. the tests that need CUDA (they skip themselves on a CPU)
timeout 180 $PY -m pytest -q -rs -k "cuda or CUDA or gpu" tests/ 2>&1 | tee "$OUT/cuda_tests.txt" | tail -5

# 2. the benchmark suite on CUDA (sparse U-Net, module A's torch path, a self-training step)
timeout 150 $PY bench/run.py --quick --device cuda --csv "$OUT/bench.csv" 2>&1 | tee "$OUT/bench.txt" | tail -30

# 3. a short gpu-profile TWIST run on ScanNet-size synthetic scenes (paper model, 4 + 4 scenes)
RUN="$OUT/twist_gpu"
rm -rf "$RUN"
timeout 240 $PY -m twist_lib twist --config configs/twist_synthetic.yaml --profile gpu \
    synthetic_scenes=40 data_root="$OUT/data_scannet40" label_ratio=20 steps=30 \
    steps_per_round=30 rounds=1 val_scenes=8 log_every=10 ckpt_every=30 progress=false \
    run_dir="$RUN" 2>&1 | tee "$OUT/twist.txt" | tail -5
$PY - "$RUN" <<'EOF' | tee -a "$OUT/twist.txt"
import csv, sys
from pathlib import Path
for log in sorted(Path(sys.argv[1]).glob("round_*/log.csv")):
    rows = [r for r in csv.DictReader(log.open()) if r.get("time_s")]
    if len(rows) >= 2:
        t = [float(r["time_s"]) for r in rows]
        steps = [int(r["step"]) for r in rows]
        mem = max(float(r.get("gpu_mem_gib") or 0) for r in rows)
        print(f"{log.parent.name}: {(t[-1] - t[0]) / (steps[-1] - steps[0]):.3f} s per step "
              f"(steps {steps[0]}-{steps[-1]}), peak GPU memory {mem:.1f} GiB")
EOF

# 3b. host syncs per stage (device-independent counts) and the CPU memory estimate's inputs
timeout 120 $PY bench/host_syncs.py 2>&1 | tee "$OUT/host_syncs.txt" | tail -8

# 4. two ranks with torchrun when there are two GPUs
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    timeout 240 torchrun --nproc_per_node=2 -m twist_lib twist --config configs/twist_synthetic.yaml \
        --profile gpu synthetic_scenes=40 data_root="$OUT/data_scannet40" label_ratio=20 steps=30 \
        steps_per_round=30 rounds=1 val_scenes=8 progress=false run_dir="$OUT/twist_gpu_2ranks" \
        2>&1 | tee "$OUT/torchrun.txt" | tail -5
fi
echo "figures in $OUT"
