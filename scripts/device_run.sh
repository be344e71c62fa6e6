#!/usr/bin/env bash
# One batched run on the lent GPU machine (see docs/benchmarks.md). Usage: scripts/device_run.sh PHASE...
# Phases: env, sim, mapsim, map, coverage, train, validate, train-embedding, train-edges, validate-ml, bench-ml, bench,
# speed, tests. Results go to $OUT (device tool) or ./work/device-out. Times are bounded by environment variables
# (*_MINUTES, *_SECONDS) so that one call stays inside the device's 10-minute limit.
set -uo pipefail
OUT=${OUT:-work/device-out}; mkdir -p "$OUT" work
export PYTHONUNBUFFERED=1
WHEELS=${WHEELS:-.whl}  # one or more carried wheel folders, space-separated
wheel_files=$(for d in $WHEELS; do ls "$d"/*.whl 2>/dev/null; done)
# Or the simulation wheels unpacked and xz-packed (26 MB instead of 57 MB of wheels), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform \
#     manylinux_2_34_x86_64 --platform manylinux_2_17_x86_64 -d whl pythia8mc==8.317.2 pyacts==48.1.0
#   mkdir site && (cd site && for w in ../whl/*.whl; do unzip -q -o $w; done && rm -rf \
#     pythia8mc-*.data/data/share/Pythia8/{htmldoc,pdfdoc} acts/*Arrow* && find . -name '*.pyi' -delete)
#   tar -C site -cJf .devin/simsite.tar.xz .
SIMSITE=${SIMSITE:-.devin/simsite.tar.xz}
site=""
if [ -n "$wheel_files" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheel_files || exit 1
  site=/tmp/site
elif [ -f "$SIMSITE" ]; then
  [ -d /tmp/site/acts ] || { mkdir -p /tmp/site && tar -xJf "$SIMSITE" -C /tmp/site; } || exit 1
  site=/tmp/site
fi
if [ -n "$site" ]; then
  export PYTHONPATH=/tmp/site:$PWD
  # the wheels' data files (Pythia8's xmldoc) lie under the target, not the prefix
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
      $G simulate --pileup 200 --events ${TEST_EVENTS:-8} --jobs 8 --seed 900000 --output work/sim/test --no-progress | tail -2
      # the held-out ttbar sample of docs/physics.md
      [ "${TTBAR_EVENTS:-0}" -gt 0 ] && $G simulate --pileup 200 --events $TTBAR_EVENTS --jobs $TTBAR_EVENTS --seed 910000 \
        --hard-scatter ttbar --output work/sim/ttbar --no-progress | tail -2 ;;
    mapsim)
      # module-map statistics: hard-spectrum gun particles (pT >= 0.9 GeV), cheap per target-like particle
      timeout ${MAPSIM_SECONDS:-150} $G simulate --pileup 200 --events ${MAPSIM_EVENTS:-2000} --generator gun \
        --gun-pt-min 0.9 --jobs 16 --seed 5000000 --output work/sim/mapgun --no-progress | tail -3
      ls work/sim/mapgun | grep -c hits ;;
    map)
      # One pass over the gun events builds the map (particles of pT >= 0.9 GeV only: the map serves target
      # particles, pT >= 1 GeV; soft tracks' rare module combinations would only widen the graph) and
      # measures its coverage on held-out Pythia8 events at growing particle counts along the way.
      $G bench module-map --coverage-study --events work/sim/mapgun --test-events-dir work/sim/test --test-events 4 \
        --map-min-pt ${MAP_MIN_PT:-0.9} --steps ${COVERAGE_STEPS:-1e5,3e5,1e6,3e6,1e9} --save-map work/maps/generic.npz \
        --plot "$OUT/module_map_coverage.png" --device cuda --json "$OUT/coverage.json" 2>&1 | grep -v -i warn | tail -12
      ls -la work/maps
      $G bench module-map --device cuda --map work/maps/generic.npz --event work/sim/test \
        --json "$OUT/bench_module_map.json" 2>&1 | grep -v -i warn | tail -30 ;;
    train)
      # a time limit keeps the call inside the lease; the newest epoch is kept as last.ckpt either way
      INIT=""; [ -n "${INIT_FROM:-}" ] && INIT="--init-from $INIT_FROM"
      $G train gnn --config configs/train_gnn_module_map.yaml --max-epochs ${EPOCHS:-30} $INIT \
        --max-minutes ${TRAIN_MINUTES:-5} 2>&1 | grep -v Warning | tail -25
      d=work/train/gnn_module_map
      src=$d/gnn.ckpt; [ -f $src ] || src=$d/checkpoints/last.ckpt
      # keep the weights only (acorn layout), not the optimiser state
      python3 -c "import sys; from gnn4itk.models import load_acorn_checkpoint as l, save_acorn_checkpoint as s; s(l(sys.argv[1]), sys.argv[2])" $src "$OUT/module_map_gnn.ckpt"
      ls -la "$OUT/module_map_gnn.ckpt"
      cp $d/logs/version_0/metrics.csv "$OUT/train_metrics.csv" 2>/dev/null ;;
    validate)
      $G validate --pipeline ModuleMap --events work/sim/test --device cuda --module-map work/maps/generic.npz \
        --gnn "$OUT/module_map_gnn.ckpt" --json "$OUT/validate_module_map.json" 2>&1 | grep -v -i warn | tail -30 ;;
    train-embedding)
      # the MetricLearning and DoubleMetricLearning embeddings (weights only, acorn layout, back in $OUT)
      for kind in metric_learning double_metric_learning; do
        minutes=$EMB_MINUTES; [ $kind = double_metric_learning ] && minutes=${DEMB_MINUTES:-$EMB_MINUTES}
        $G train $kind --config configs/train_${kind}_default.yaml --max-minutes $minutes 2>&1 | grep -v Warning | tail -8
        cp work/train/${kind}_default/${kind}.ckpt "$OUT/${kind}_embedding.ckpt"
        cp work/train/${kind}_default/logs/version_0/metrics.csv "$OUT/train_metrics_${kind}.csv"
      done ;;
    train-edges)
      # filter and GNN of the MetricLearning pipeline, on graphs of the embedding trained before (this call's
      # train-embedding, or the shipped file)
      e=work/train/metric_learning_default/metric_learning.ckpt
      [ -f $e ] || { mkdir -p $(dirname $e); cp gnn4itk/data/weights/metric_learning_embedding.ckpt $e; }
      # the GNN's graphs need a filter: the shipped one when this call trains none before it
      f=work/train/filter_default/filter.ckpt
      [ -f $f ] || { mkdir -p $(dirname $f); cp gnn4itk/data/weights/metric_learning_filter.ckpt $f; }
      # Resumable: FILTER_INIT / GNN_INIT name the weights to start from (the shipped files, or the last
      # call's), *_MINUTES=0 skips a stage; each run's metrics come back numbered by RUN_TAG.
      # stage, config, its output folder, minutes, weights to start from, name of the result
      train_edge_stage() {
        [ "$4" = 0 ] && return
        rm -rf "$3/logs"
        $G train $1 --config $2 --max-minutes $4 ${5:+--init-from $5} 2>&1 | grep -v Warning | tail -8
        cp "$3/$1.ckpt" "$OUT/$6.ckpt"
        cp "$3/logs/version_0/metrics.csv" "$OUT/train_metrics_$6_${RUN_TAG:-0}.csv"
      }
      train_edge_stage filter configs/train_filter_default.yaml work/train/filter_default ${FILTER_MINUTES:-2.5} \
        "${FILTER_INIT:-}" metric_learning_filter
      train_edge_stage gnn ${GNN_CONFIG:-configs/train_gnn_metric_learning.yaml} work/train/gnn_metric_learning ${GNN_MINUTES:-3} \
        "${GNN_INIT:-}" metric_learning_gnn ;;
    validate-ml)
      # the pipelines' configurations name files in gnn4itk/data/weights: put this call's there
      for f in metric_learning_embedding double_metric_learning_embedding metric_learning_filter metric_learning_gnn; do
        [ -f "$OUT/$f.ckpt" ] && cp "$OUT/$f.ckpt" gnn4itk/data/weights/
      done
      for p in ${VALIDATE_PIPELINES:-MetricLearning DoubleMetricLearning}; do
        for sample in ${VALIDATE_SAMPLES:-test}; do  # test (minimum bias) and, where simulated, ttbar
          echo "--- $p on $sample"
          $G validate --pipeline $p --events work/sim/$sample --max-events ${VAL_MAX:-4} --device cuda ${VALIDATE_ARGS:-} \
            --json "$OUT/validate_${p}_$sample${RUN_TAG:+_$RUN_TAG}.json" 2>&1 | grep -v -i warn | tail -${VALIDATE_LINES:-14}
        done
      done ;;
    bench-ml)
      # issue #15: the metric-learning pipelines on the held-out event with the weights in gnn4itk/data/weights
      # (validate-ml puts this call's there), and their GNN beside the peer's where .devin/peer travels
      peer=""; [ -f .devin/peer/interaction_gnn.py ] && peer="--peer-gnn-source .devin/peer"
      for p in ${PIPELINES:-MetricLearning}; do
        events="--event work/sim/test/event000000000"
        [ -d work/sim/ttbar ] && events="$events --event work/sim/ttbar/event000000000"
        timeout ${BENCH_S:-200} $G bench pipeline --device cuda --pipeline $p $events \
          --variants ${VARIANTS:-eager,scripted} --repeats ${REPEATS:-2} --warmup 1 $peer \
          --json "$OUT/bench_pipeline_$p${RUN_TAG:+_$RUN_TAG}.json" 2>&1 | grep -v -i warn | tail -40
      done ;;
    speed)
      # The GPU speed figures of the module-map builder (#3) and track building (#5) in one go, old code against
      # new where a copy of the old travels in the repository root (bench_old_graph_builder.py, bench_old_tb/,
      # untracked and not ignored). Needs the simulation wheels; about 3 minutes on a fresh machine.
      [ -d work/sim/test ] || $G simulate --pileup 200 --events 1 --jobs 1 --seed 900000 --output work/sim/test --no-progress | tail -1
      if [ ! -f work/maps/gun2m.npz ]; then
        $G simulate --pileup 200 --generator gun --gun-pt-min 0.9 --events 210 --jobs 16 --seed 5000000 \
          --output work/sim/mapgun2m --no-progress | tail -1
        $G build-module-map --events work/sim/mapgun2m --min-pt 0.9 --output work/maps/gun2m --no-progress | tail -2
      fi
      old_builder=""; [ -f bench_old_graph_builder.py ] && old_builder="--compare-builder bench_old_graph_builder.py"
      $G bench module-map --device cuda --map work/maps/gun2m.npz --event work/sim/test/event000000000 --repeats 30 \
        --warmup 5 --check-cpu $old_builder --json "$OUT/bench_module_map.json" 2>&1 | grep -v -i warn | tail -30
      old_tb=""; [ -d bench_old_tb ] && old_tb="--compare-with bench_old_tb"
      $G bench track-building --device cuda $old_tb --json "$OUT/bench_track_building.json" 2>&1 | tail -16
      python3 -m pytest -q -x -p no:cacheprovider tests/test_track_building*.py tests/test_module_map_graph*.py \
        tests/test_models.py 2>&1 | tail -4 ;;
    tests)
      python3 -m pytest -q -x -p no:cacheprovider ${TEST_ARGS:-tests/test_pipeline.py tests/test_track_building.py tests/test_module_map_graph.py} 2>&1 | tail -15 ;;
  esac
done
