#!/usr/bin/env bash
# Issue 9 on a lent GPU machine (docs/BENCHMARKS.md, "Issue 9 on a GPU"): the GPU smoke test,
# then the cpu-tiny preset and its `loss.sdm.anchor` variants trained for 48 and 96 epochs
# side by side, each printing its test per-modality mAP along the way (bench/modality_probe.py
# CURVE lines). The GPU's speed is not the point of the second part: the curves say how many
# epochs each variant needs, which is what a 2-core CPU cannot afford to find out.
# Outcome on an H200 (2026-12-04, docs/BENCHMARKS.md "GPU smoke test"): the smoke test ran
# (9.7 % MFU); the small trainings were host-bound at 17-20 s per epoch, no faster than the
# 2-core CPU, and no curve came back within the lease. Keep the second part for a machine with
# a longer lease, or drop it.
#
#   bash bench/gpu_issue9.sh            # on the device: python3 holds torch; .whl holds the rest
#
# Writes $OUT/smoke.json, $OUT/curves.txt (CURVE and RESULT lines) and $OUT/logs.tar.gz.
set -u
OUT=${OUT:-/tmp/gpu_issue9}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# several trainings share the CPU cores: one OpenMP pool each of 16 threads (and one per loader
# worker) oversubscribes them; the first try ran 30 s per epoch that way
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
LOGS=$(mktemp -d)

timeout 100 python3 bench/gpu_smoke.py > "$OUT/smoke.json" 2> "$LOGS/smoke.err"
echo "smoke rc=$?"; cat "$OUT/smoke.json"; tail -3 "$LOGS/smoke.err"

DATA=/tmp/synth0
python3 -c "from pathlib import Path; from reid_core.data.synth import synthesize; \
print(synthesize(Path('$DATA'), seed=0)['images'])"

W="data.num_workers=2"
probe() {  # NAME EVERY overrides...
  local name=$1 every=$2; shift 2
  timeout 200 python3 bench/modality_probe.py --every "$every" "$name" "$DATA" cpu-tiny "$W" "$@" \
    > "$LOGS/$name.log" 2>&1 &
}
probe colour96 12 train.epochs=96
probe grey96 12 train.epochs=96 loss.sdm.anchor=grey
probe drawn96 12 train.epochs=96 loss.sdm.anchor=drawn
probe drawn48 12 train.epochs=48 loss.sdm.anchor=drawn
wait
grep -h "^CURVE\|^RESULT" "$LOGS"/*.log | tee "$OUT/curves.txt"
grep -l "Traceback" "$LOGS"/*.log && tail -5 $(grep -l "Traceback" "$LOGS"/*.log)
tar czf "$OUT/logs.tar.gz" -C "$LOGS" .
