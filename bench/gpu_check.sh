#!/usr/bin/env bash
# The device checks as one short run (about 6 minutes on a lent GPU): CUDA training with AMP,
# DDP over NCCL (with 2+ GPUs; one GPU cannot host two NCCL ranks), folder predict, sharded
# predict (torchrun --shard auto + merge) against the single run, and GPU training and
# prediction slices/s (bench/train_speed.py, bench/predict_speed.py).
#
#   on the lent machine (the `run` tool, carry [".whl"]):   bash bench/gpu_check.sh
#   here, every step on the CPU:   DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_check.sh
#
# The lent machine has no network and its own python3 with PyTorch; sliceseg's other
# dependencies travel as wheels in .whl/ (docs/benchmarks.md, "GPU check", says how to fetch
# them). Everything is logged to $OUT/gpu_check.log (OUT: the run tool's folder that comes
# back; /tmp/sliceseg-gpu-check elsewhere); the exit code is the number of failed steps.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
RESULTS=${OUT:-/tmp/sliceseg-gpu-check}
WORK=$(mktemp -d)
mkdir -p "$RESULTS"
LOG=$RESULTS/gpu_check.log
: > "$LOG"
export PYTHONUNBUFFERED=1
if ! $PY -c "import pydicom, highdicom, nibabel, slicerio, nrrd" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$ROOT"/.whl/*.whl || { echo "no wheels in $ROOT/.whl" | tee -a "$LOG"; exit 99; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
TORCHRUN=("$PY" -m torch.distributed.run)
failed=0

step() { # NAME SECONDS COMMAND...: run, log, time, count a failure
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name ($(date +%H:%M:%S))" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  echo "-- $name: exit $rc, $((SECONDS - start)) s" | tee -a "$LOG"
  [ "$rc" = 0 ] || failed=$((failed + 1))
}

step environment 60 $PY -c "import torch, sliceseg, os
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
print('devices', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
print('sliceseg', sliceseg.__version__, 'cpus', len(os.sched_getaffinity(0)))"
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

step phantom 120 $PY -m sliceseg phantom "$WORK/phantom" --train-subjects 8 --test-subjects 2
MODEL=$WORK/model/sliceseg_best.pt
step "train, one process (AMP on CUDA)" 180 \
  $PY -m sliceseg train "$WORK/phantom/train" --out "$WORK/model" --max-minutes 1.5 --device "$DEVICE"
step "training speed from the history" 30 $PY -c "import csv, sys, pathlib
rows = list(csv.DictReader(open(sys.argv[1])))
slices = len(list(pathlib.Path(sys.argv[2]).rglob('*.dcm')))
last = rows[-1]
epochs, seconds = int(last['epoch']), float(last['elapsed_seconds'])
print(f\"{epochs} epochs in {seconds:.0f} s, validation Dice {last['val_dice']}\")
print(f\"{epochs * slices / seconds:.1f} slices/s counting all {slices} (validation's ~20 % too)\")" \
  "$WORK/model/sliceseg_history.csv" "$WORK/phantom/train"
if [ "$DEVICE" = cuda ] && [ "$GPUS" -ge 2 ]; then
  step "train, DDP over NCCL on $GPUS GPUs" 180 "${TORCHRUN[@]}" --nproc_per_node="$GPUS" \
    -m sliceseg train "$WORK/phantom/train" --out "$WORK/model_ddp" --max-minutes 1 --device cuda
else
  echo "== DDP over NCCL: skipped ($GPUS GPU(s); NCCL needs one GPU per rank)" | tee -a "$LOG"
fi
step "predict a folder" 180 $PY -m sliceseg predict "$MODEL" "$WORK/phantom/test/dicoms" \
  --out "$WORK/one" --device "$DEVICE"
step "predict in 2 shards (torchrun, --shard auto)" 180 "${TORCHRUN[@]}" --nproc_per_node=2 \
  -m sliceseg predict "$MODEL" "$WORK/phantom/test/dicoms" --out "$WORK/shards" --shard auto --device auto
step merge 120 $PY -m sliceseg merge "$WORK/shards"
step "shards + merge against one run" 30 $PY -c "import sys, pandas as pd
one, two = (pd.read_csv(p, index_col=0) for p in sys.argv[1:])
areas = [c for c in one.columns if c not in ('file', 'confidence', 'unlike_training')]
diff = (one[areas] - two[areas]).abs().max().max()
print(f'{len(one)} rows; largest area difference {diff:.4f} mm²')
sys.exit(0 if list(one.index) == list(two.index) and diff <= 1.0 else 1)" \
  "$WORK/one/csa.csv" "$WORK/shards/csa.csv"
step "training speed (bench/train_speed.py)" 150 $PY "$ROOT/bench/train_speed.py" --device "$DEVICE" --arch unet
step "prediction speed (bench/predict_speed.py)" 150 $PY "$ROOT/bench/predict_speed.py" --device "$DEVICE"
echo "== $failed step(s) failed; log: $LOG" | tee -a "$LOG"
rm -rf "$WORK"
exit "$failed"
