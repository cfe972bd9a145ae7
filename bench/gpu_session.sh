#!/usr/bin/env bash
# A lent GPU's session, prepared as one command (the device tool's limits: one call of under
# 10 minutes; see bench/NOTES.md, "On a GPU box"). In order, each part time-boxed:
#   1. env.txt            torch, CUDA, the GPU
#   2. cuda_tests.txt     every test that needs CUDA (they skip themselves on a CPU), while the
#                         hard benchmark's 1500 scenes are generated on the CPU cores (data.txt,
#                         with checksums to compare against the same files made elsewhere)
#   3. runner.txt         `experiments run PLAN --only TABLES` with JOBS runs at a time on the
#                         GPU (float32: the spec sets amp false), until DEADLINE seconds after start
#   4. twist_gpu.txt      beside it, a short `gpu`-profile TWIST run (paper-size model, ScanNet-
#                         size scenes): round 0 + 1 round of a few steps, the CUDA path end to end
#   5. runs.tar.gz (+ ckpt.tar.gz.* parts)  these texts, every run folder's small files, the weights of
#                         the finished Sup-only runs (Phi only, optimizer state dropped) so that
#                         TWIST rows can start from them elsewhere: `bash bench/gpu_session.sh
#                         unpack DIR` puts them back in place.
#
# Measured on an H200 (bench/NOTES.md, "First run on a GPU"): jobs time-share the GPU and more
# than ~4 add nothing, so JOBS=4 WORKERS=2 is the better setting for a next session.
#   OUT=... PLAN=experiments/paper_tables.yaml TABLES="table1 convergence" JOBS=4 \
#       DEADLINE=470 bash bench/gpu_session.sh
# A dry run here (no GPU): PLAN=experiments/smoke.yaml TABLES=table1 JOBS=2 SKIP_TWIST=1 ...
set -u
if [ "${1:-}" = unpack ]; then  # here: the returned runs that finished, into place
    d=${2:?folder with runs.tar.gz}; stage=$(mktemp -d)
    tar -xzf "$d/runs.tar.gz" -C "$stage"
    if ls "$d"/ckpt.tar.gz.* > /dev/null 2>&1; then cat "$d"/ckpt.tar.gz.* | tar -xz -C "$stage"; fi
    ${PYTHON:-.venv/bin/python} - "${PLAN:-experiments/paper_tables.yaml}" "$stage" <<'EOF'
import shutil, sys
from pathlib import Path
from twist_lib.experiments import finished, load_spec
spec, stage = load_spec(sys.argv[1]), Path(sys.argv[2])
for run in spec.runs:  # a finished run that is not here yet; partial ones have no checkpoint
    weights = run.kind != "train" or (run.path(stage) / "checkpoints/final.pt").is_file()
    if finished(run, stage) and weights and not finished(run, "."):
        shutil.copytree(run.path(stage), run.path("."), dirs_exist_ok=True)
        print("unpacked", run.name)
EOF
    rm -rf "$stage"; exit
fi
OUT=${OUT:-runs/gpu_session}
PLAN=${PLAN:-experiments/paper_tables.yaml}
TABLES=${TABLES:-table1 convergence}
JOBS=${JOBS:-4}
DEADLINE=${DEADLINE:-470}
WORKERS=${WORKERS:-2}
PY=${PYTHON:-python3}
T0=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ $PY - <<'EOF'
import os, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
print("cpu cores", os.cpu_count())
EOF
nvidia-smi 2>&1 | head -15; } > "$OUT/env.txt" 2>&1

# 2. CUDA tests (GPU) beside the data generation (CPU)
DATA=$($PY -c "from twist_lib.config import PROFILES as P; print(P['hard']['data_root'])")
( $PY data_scripts/make_synthetic.py --out "$DATA" --scenes 1500 --size hard \
      --workers $(( $(nproc) - 2 )) --no-progress
  echo "generated in $(( $(date +%s) - T0 )) s"
  (cd "$DATA" && md5sum meta.json && ls scenes | head -3 | sed 's|^|scenes/|' | xargs md5sum) ) \
    > "$OUT/data.txt" 2>&1 &
gen=$!
timeout 150 $PY -m pytest -q -rs -p no:cacheprovider --continue-on-collection-errors \
    -k "cuda or CUDA or gpu" tests/ > "$OUT/cuda_tests.txt" 2>&1 &
tests=$!
wait $gen

# 3. the runs, and 4. the short gpu-profile TWIST run beside them
# (its own process group, so that the jobs it started stop with it, and nothing else does)
setsid timeout -s TERM "$(left)" $PY -m twist_lib experiments run "$PLAN" --only $TABLES \
    --jobs "$JOBS" --set num_workers="$WORKERS" > "$OUT/runner.txt" 2>&1 &
runner=$!
wait $tests
[ "${SKIP_TWIST:-0}" = 1 ] || timeout 180 $PY -m twist_lib twist --config configs/twist_synthetic.yaml --profile gpu \
    synthetic_scenes=40 data_root=runs/gpu_session_data/scannet40 label_ratio=20 steps=30 \
    steps_per_round=30 rounds=1 val_scenes=8 log_every=10 ckpt_every=30 progress=false \
    run_dir=runs/gpu_session_twist > "$OUT/twist_gpu.txt" 2>&1
wait $runner
kill -TERM -- -$runner 2> /dev/null; sleep 3; kill -KILL -- -$runner 2> /dev/null
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv >> "$OUT/env.txt" 2>&1

$PY -m twist_lib experiments status "$PLAN" --only $TABLES > "$OUT/status.txt" 2>&1
# 5. pack: small files of every run folder; finished Sup-only weights, as many as fit
$PY - "$PLAN" "$OUT" <<'EOF'
import io, subprocess, sys, tarfile, torch
from pathlib import Path
from twist_lib.experiments import finished, load_spec
spec, out = load_spec(sys.argv[1]), Path(sys.argv[2])
root = Path(spec.out)
with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
    for f in sorted(out.glob("*.txt")):
        tar.add(f, arcname=f"gpu_session/{f.name}")
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix != ".pt" and "pseudo" not in f.parts[-2]:
            tar.add(f)
budget, parts = 60 * 2**20, io.BytesIO()
with tarfile.open(fileobj=parts, mode="w:gz") as tar:
    for run in spec.runs:
        path = run.path(".") / "checkpoints" / "final.pt"
        if run.kind != "train" or not finished(run, ".") or not path.is_file():
            continue
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        ckpt["optimizers"] = {}
        buf = io.BytesIO(); torch.save(ckpt, buf)
        if parts.tell() + buf.tell() > budget:
            print("no room for", path); continue
        info = tarfile.TarInfo(str(path)); info.size = buf.tell(); buf.seek(0)
        tar.addfile(info, buf); print("packed", path)
data = parts.getvalue()
for i in range(0, len(data), 15 * 2**20):
    (out / f"ckpt.tar.gz.{i // (15 * 2**20)}").write_bytes(data[i:i + 15 * 2**20])
EOF
for f in env data cuda_tests runner twist_gpu; do echo "== $f"; tail -n 25 "$OUT/$f.txt"; done
$PY -m twist_lib experiments status "$PLAN" --only $TABLES
echo "done in $(( $(date +%s) - T0 )) s"; rm -f "$OUT"/*.txt; ls -la "$OUT"
