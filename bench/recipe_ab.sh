#!/usr/bin/env bash
# Recipe A/B: train variants of sliceseg's recipe side by side on copies of one real-MR set.
#
#   bench/recipe_ab.sh WORK SET MINUTES SEED VARIANT...
#
# SET: mni, small or spine (bench/real_mr.py --set); VARIANT: `default` (the defaults),
# `baseline` (the plain MONAI recipe) or a TOML settings file for `sliceseg train`, named by its
# file name without .toml. Every variant trains at the same time, one torch thread each, for
# MINUTES, on its own copy of the same data (made once in WORK/SET-sSEED-data), so all see the
# same machine load and a cheaper variant makes more steps. Each run's table lands in
# WORK/SET-sSEED-NAME/results.md, the 1-minute load every 30 s in WORK/SET-sSEED-load.txt;
# `python bench/recipe_ab_table.py WORK NAME...` prints the rows of docs/benchmarks.md's A/Bs.
# NEIGHBOUR_MM=3 (environment) writes the set with unlabelled slices 3 mm on either side of
# each labelled one (WORK/SET-sSEED-n3-data), which 2.5D variants (context_slices) read and
# the others ignore.
# Give the whole chain the CPU first when other work shares the machine, e.g. run it under
# `setsid` and write -15 to /proc/PID/autogroup.
set -euo pipefail
if [ $# -lt 5 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
WORK=$1; SET=$2; MINUTES=$3; SEED=$4; shift 4
BENCH=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python}
mkdir -p "$WORK"
NEIGHBOUR_MM=${NEIGHBOUR_MM:-0}
base="$WORK/$SET-s$SEED"
[ "$NEIGHBOUR_MM" = 0 ] || base="$base-n$NEIGHBOUR_MM"
if [ ! -f "$base-data/data.json" ]; then
  (cd "$BENCH" && $PY -c "import sys; from pathlib import Path; from real_mr import SETS, prepare_data
prepare_data(Path(sys.argv[1]), seed=int(sys.argv[2]), regenerate=False, bench_set=SETS[sys.argv[3]],
             neighbour_mm=float(sys.argv[4]))" \
    "$base-data" "$SEED" "$SET" "$NEIGHBOUR_MM")
fi
variants=("$@")
names=()
for variant in "${variants[@]}"; do
  name=$(basename "$variant" .toml)
  names+=("$name")
  rm -rf "$base-$name"; mkdir -p "$base-$name"
  cp -r "$base-data/train" "$base-data/test" "$base-data/data.json" "$base-$name/"
done
: > "$base-load.txt"
( while true; do cut -d' ' -f1 /proc/loadavg >> "$base-load.txt"; sleep 30; done ) &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
pids=()
for i in "${!names[@]}"; do
  variant=${variants[$i]}; name=${names[$i]}
  case $variant in
    baseline) who=(--only baseline) ;;
    default) who=(--only sliceseg) ;;
    *) who=(--only sliceseg --train-config "$(cd "$(dirname "$variant")" && pwd)/$(basename "$variant")") ;;
  esac
  (cd "$BENCH" && $PY real_mr.py --set "$SET" --seed "$SEED" --out "$base-$name" --threads 1 \
    --neighbour-mm "$NEIGHBOUR_MM" \
    --minutes "$MINUTES" "${who[@]}" > "$base-$name.log" 2>&1) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
