#!/usr/bin/env bash
# One batched run on the lent GPU machine (see docs/benchmarks.md). Usage: scripts/device_run.sh PHASE...
# Phases: env, sim, map, bench, tests. Results go to $OUT (device tool) or ./work/device-out.
set -uo pipefail
OUT=${OUT:-work/device-out}; mkdir -p "$OUT" work
export PYTHONUNBUFFERED=1
WHEELS=${WHEELS:-.whl}
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  # pip --target puts the wheel's data files (Pythia8's xmldoc) under the target, not the prefix
  PYTHIA8DATA=$(find /tmp/site -type d -path '*Pythia8/xmldoc' | head -1); export PYTHIA8DATA
else
  export PYTHONPATH=$PWD
fi
G="python3 -m gnn4itk"
for phase in "$@"; do
  echo "=== phase $phase $(date -u +%FT%TZ)"
  case $phase in
    env)
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
      python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))"
      nproc ;;
    sim)
      # train / validation / held-out test events: distinct seeds, so the sets never overlap
      $G simulate --pileup 200 --events ${SIM_EVENTS:-144} --jobs 16 --seed 1000 --output work/sim/train --no-progress --json "$OUT/sim_train.json" | tail -4
      $G simulate --pileup 200 --events ${VAL_EVENTS:-8} --jobs 8 --seed 800000 --output work/sim/val --no-progress | tail -2
      $G simulate --pileup 200 --events ${TEST_EVENTS:-8} --jobs 8 --seed 900000 --output work/sim/test --no-progress | tail -2 ;;
    map)
      $G build-module-map --events work/sim/train --output work/maps/generic --no-progress | tail -5
      ls -la work/maps ;;
    bench)
      $G bench track-building --device cuda --json "$OUT/bench_track_building.json" 2>&1 | tail -40
      if [ -f work/maps/generic.npz ]; then MAPARG="--map work/maps/generic.npz --event work/sim/test"; else MAPARG=""; fi
      $G bench module-map --device cuda $MAPARG --json "$OUT/bench_module_map.json" 2>&1 | tail -40
      $G bench radius-graph --device cuda --json "$OUT/bench_radius_graph.json" 2>&1 | tail -40 ;;
    train)
      # a time limit keeps the call inside the lease; the newest epoch is kept as last.ckpt either way
      timeout ${TRAIN_SECONDS:-300} $G train gnn --config configs/train_gnn_module_map.yaml --max-epochs ${EPOCHS:-30} 2>&1 | grep -v Warning | tail -25
      d=work/train/gnn_module_map
      src=$d/gnn.ckpt; [ -f $src ] || src=$d/checkpoints/last.ckpt
      # keep the weights only (acorn layout), not the optimiser state
      python3 -c "import sys; from gnn4itk.models import load_acorn_checkpoint as l, save_acorn_checkpoint as s; s(l(sys.argv[1]), sys.argv[2])" $src "$OUT/module_map_gnn.ckpt"
      ls -la "$OUT/module_map_gnn.ckpt"
      cp $d/logs/version_0/metrics.csv "$OUT/train_metrics.csv" 2>/dev/null ;;
    validate)
      $G validate --pipeline ModuleMap --events work/sim/test --device cuda --module-map work/maps/generic.npz \
        --gnn "$OUT/module_map_gnn.ckpt" --json "$OUT/validate_module_map.json" 2>&1 | grep -v -i warn | tail -30 ;;
    tests)
      python3 -m pytest -q -x -p no:cacheprovider ${TEST_ARGS:-tests/test_pipeline.py tests/test_track_building.py tests/test_module_map_graph.py} 2>&1 | tail -15 ;;
  esac
done
