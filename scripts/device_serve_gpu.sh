#!/usr/bin/env bash
# GPU serving with a real tritonserver on a CUDA host that has no tritonserver and no internet (the lent
# H100: Python 3.12, torch, numpy 2). See docs/serving.md, "GPU serving without the NGC container".
#
#   scripts/device_serve_gpu.sh prepare          # here, where pip works: fill $CARRY (default .triton-gpu, ~42 MB)
#                                                # and $DEVIN (.devin: backend sources, RapidJSON; 1.3 MB)
#   scripts/device_serve_gpu.sh [PHASE...]       # there; phases: serve autocast bench bench-pipeline load gpu-tests
#                                                # data pipeline-synthetic pipeline-event (issue #15: gnn4itk bench
#                                                # pipeline; .devin/peer holds the peer GNN's source if carried)
#                                                # (default: the first four); setup also builds Triton's PyTorch
#                                                # backend for the GPU (RapidJSON headers from $DEVIN/rapidjson)
#                                                # SERVE_DEBUG=1: python models log input sums (GNN4ITK_SERVE_DEBUG)
#
# Results go to $OUT (device tool) or work/device-out. On the device tool: carry .triton-gpu, .devin/vendor and
# .devin/rapidjson, and start the command with `export PYTHONPATH=$PWD PYTHONUNBUFFERED=1;`. The 64 MiB limit
# leaves no room for a real event and map beside .triton-gpu: a second call on the still-warm machine (within
# 30 s) can carry them alone (e.g. .devin/data), since setup reuses /tmp/triton, /tmp/site and the backend.
set -uo pipefail
CARRY=${CARRY:-.triton-gpu}
OUT=${OUT:-work/device-out}
WORK=${WORK:-/tmp/gpu-serve}
export PYTHONUNBUFFERED=1

prepare() {
  # tritonserver 2.51 + python backend stub for 3.12 from the nvidia-pytriton wheel, numpy<2 for the stub
  # (its pybind11 2.10 breaks on numpy 2), the client wheels the device lacks, and Ubuntu's libpython3.12
  # in case the device's Python has no shared libpython (the stub embeds it).
  local dl; dl=$(mktemp -d); mkdir -p "$CARRY/wheels"
  local plat="--platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64"
  for spec in nvidia-pytriton==0.7.0 numpy==1.26.4 tritonclient==2.73.0 python-rapidjson==1.25 geventhttpclient==2.6.1 \
              gevent==26.9.0 greenlet==3.3.2 zope.event==6.2 zope.interface==8.7 brotli==1.2.1 protobuf==6.33.6; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$dl" "$spec" || return 1
  done
  (cd "$dl" && mkdir unz && cd unz && unzip -q ../nvidia_pytriton-*.whl)
  local stage="$dl/stage" t="$dl/stage/tritonserver"
  mkdir -p "$t/pytriton/tritonserver/python_backend_stubs"
  cp -a "$dl"/unz/pytriton/tritonserver/{bin,backends,caches} "$t/pytriton/tritonserver/"
  cp -a "$dl/unz/pytriton/tritonserver/python_backend_stubs/3.12" "$t/pytriton/tritonserver/python_backend_stubs/"
  cp -a "$dl/unz/nvidia_pytriton.libs" "$t/"
  rm -f "$t"/nvidia_pytriton.libs/libpython3-*.13.so.1.0   # the 3.13 stub's; 3.12 uses the host's libpython
  mkdir -p "$stage/np1" && unzip -q "$dl"/numpy-1.26.4-*.whl -d "$stage/np1" || return 1  # a cp312 wheel: unpacked, not installed
  rm -rf "$stage"/np1/numpy/{tests,*/tests,f2py} "$stage/np1/bin"
  tar -C "$stage" -cf - tritonserver np1 | xz -9 -T0 > "$CARRY/tritonserver-gpu.tar.xz"
  cp "$dl"/{tritonclient,python_rapidjson,geventhttpclient,gevent,greenlet,zope_event,zope_interface,brotli,protobuf}-*.whl "$CARRY/wheels/"
  local apt="$dl/apt"; mkdir -p "$apt/lists/partial"
  echo "deb [trusted=yes] http://archive.ubuntu.com/ubuntu noble-updates main" > "$apt/sources.list"
  local o="-oDir::Etc::SourceList=$apt/sources.list -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists=$apt/lists -oAPT::Architecture=amd64"
  apt-get $o update >/dev/null 2>&1 && (cd "$CARRY" && apt-get $o download libpython3.12t64 >/dev/null 2>&1) \
    || echo "no Ubuntu libpython3.12 fetched: fine where the GPU host's Python has libpython3.12.so"
  rm -rf "$dl"; du -sh "$CARRY"/*
  # What the GPU build of Triton's PyTorch backend needs there: the r24.10 sources (../shared does not
  # travel) and RapidJSON's headers with a relocatable CMake config (that host has no apt).
  local devin=${DEVIN:-.devin}
  mkdir -p "$devin/vendor" "$devin/rapidjson/include"
  cp "${TRITON_VENDOR_SOURCE:-../shared/vendor/triton-r24.10}"/{*.tar.gz,COMMITS} "$devin/vendor/" || return 1
  cp -r /usr/include/rapidjson "$devin/rapidjson/include/" || { echo "apt-get install rapidjson-dev first"; return 1; }
  printf '%s\n' 'get_filename_component(RAPIDJSON_CMAKE_DIR "${CMAKE_CURRENT_LIST_FILE}" PATH)' \
    'set(RAPIDJSON_INCLUDE_DIRS "${RAPIDJSON_CMAKE_DIR}/include")' > "$devin/rapidjson/RapidJSONConfig.cmake"
  du -sh "$devin"/*
}

setup() {
  # A warm machine keeps /tmp from an earlier call: a later call need not carry $CARRY again (the 64 MiB limit).
  if [ -d /tmp/site/tritonclient ]; then echo "client wheels already in /tmp/site"
  else python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/wheels/*.whl || return 1; fi
  export PYTHONPATH=/tmp/site:$PWD
  export GNN4ITK_TRITONSERVER=/tmp/triton/tritonserver/pytriton/tritonserver
  if [ -x "$GNN4ITK_TRITONSERVER/bin/tritonserver" ]; then echo "tritonserver already in /tmp/triton"
  else mkdir -p /tmp/triton && tar -C /tmp/triton -xJf "$CARRY/tritonserver-gpu.tar.xz" || return 1; fi
  local site; site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  # numpy<2 first for the stubs only (this shell keeps the host's numpy 2); torch's site-packages after it
  export GNN4ITK_TRITONSERVER_PYTHONPATH=/tmp/triton/np1:$site
  local libdir; libdir=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  if [ ! -e "$libdir/libpython3.12.so.1.0" ] && ! ldconfig -p | grep -q 'libpython3\.12\.so\.1\.0'; then
    [ -d /tmp/libpy ] || dpkg -x "$CARRY"/libpython3.12t64_*.deb /tmp/libpy || return 1
    export LD_LIBRARY_PATH=/tmp/libpy/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "libpython3.12.so.1.0 not on this host: using Ubuntu's from $CARRY"
  fi
  # Triton's PyTorch backend, GPU build, against this host's torch (RapidJSON's headers travel in $DEVIN).
  export GNN4ITK_PYTORCH_BACKEND=/tmp/triton-pytorch-backend
  [ -d "${DEVIN:-.devin}/vendor" ] && export TRITON_VENDOR_DIR=${TRITON_VENDOR_DIR:-$PWD/${DEVIN:-.devin}/vendor}
  TRITON_BACKEND_GPU=ON JOBS=16 PYTHON=python3 CMAKE_ARGS="-DRapidJSON_DIR=$PWD/${DEVIN:-.devin}/rapidjson -G Ninja" \
    scripts/build_pytorch_backend.sh "$GNN4ITK_PYTORCH_BACKEND" || return 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, numpy, google.protobuf, grpc, tritonclient.grpc; print(sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'protobuf', google.protobuf.__version__, 'grpcio', grpc.__version__)" || return 1
  PYTHONPATH=$GNN4ITK_TRITONSERVER_PYTHONPATH python3 -c "import numpy; print('stub numpy', numpy.__version__)"
  ldd "$GNN4ITK_TRITONSERVER/python_backend_stubs/3.12/triton_python_backend_stub" | grep -E 'python|not found'
}

compare_labels() {  # two LABELS .pt files -> how many tracks differ
  python3 - "$1" "$2" <<'EOF'
import sys, torch
sys.path.insert(0, "scripts")
from serve_gpu_check import track_difference
a, b = (torch.load(p, weights_only=True).numpy() for p in sys.argv[1:3])
print(f"LABELS equal: {bool((a.shape == b.shape) and (a == b).all())}; tracks {track_difference(a, b)}")
EOF
}

run_phase() {
  echo "=== $1 $(date -u +%T)"
  case $1 in
    serve)
      timeout ${SERVE_S:-200} python3 scripts/serve_gpu_check.py --work "$WORK" --out "$OUT" --repeats ${REPEATS:-10} ${SERVE_DEBUG:+--debug} 2>&1 | grep -v -i warn ;;
    autocast)
      timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_pipeline.py -k autocast 2>&1 | tail -4
      local event; event=$(ls "$WORK"/event/*-hits.parquet | head -1); event=${event%-hits.parquet}
      for precision in fp32 autocast; do
        local flag=""; [ $precision = autocast ] && flag="-a"
        echo "--- python -m gnn4itk.inference -d cuda -t $flag"
        timeout 120 python3 -m gnn4itk.inference -i "$event" -d cuda -t $flag -mmp "$WORK/synthetic_map.npz" \
          -o "$WORK/labels_$precision.pt" 2>&1 | grep -v -i -E "warn|configuration:" | tail -14
      done
      compare_labels "$WORK/labels_fp32.pt" "$WORK/labels_autocast.pt" ;;
    bench)
      timeout ${BENCH_S:-150} python3 -m gnn4itk bench serving --device cuda --json "$OUT/bench_serving_cuda.json" 2>&1 | grep -v -i warn ;;
    bench-pipeline)
      timeout ${BENCH_S:-150} python3 -m gnn4itk bench serving --device cuda --torchscript "$WORK/torchscript/ModuleMap/fused.pt" \
        --features "$WORK/features.npy" --repeats 10 --requests 40 --json "$OUT/bench_serving_modulemap_cuda.json" 2>&1 | grep -v -i warn ;;
    load)  # issue #14: both flavours under load, every answer checked; LOAD_ARGS e.g. "--counts 1 --concurrency 8"
      timeout ${LOAD_S:-560} python3 scripts/serve_gpu_load.py --map "${LOAD_MAP:-synthetic:12}" --event "${LOAD_EVENT:-synthetic}" \
        --out "$OUT/load" ${LOAD_ARGS:-} 2>&1 | grep -v -i -E "warn|^\s*$" ;;
    data)  # the default map and held-out events with truth (/tmp/data/minbias, /tmp/data/ttbar: the FEATURES
           # columns and particle_id, and the particles), carried xz-compressed in .devin/data (alone: 64 MiB limit)
      mkdir -p /tmp/data
      for f in "${DEVIN:-.devin}"/data/*.xz; do
        [ -e "$f" ] && python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$f" "/tmp/data/$(basename "${f%.xz}")"
      done
      ls -la /tmp/data ;;
    pipeline-synthetic)  # issue #15: pile-up sweep and the ITk-density case on synthetic events and map
      timeout ${BENCH_S:-300} python3 -m gnn4itk bench pipeline --device cuda --synthetic-pileup ${PILEUPS:-50,100,200,300} \
        --itk-density ${ITK_DENSITY:-7} $PEER --json "$OUT/bench_pipeline_synthetic.json" 2>&1 | grep -v -i warn ;;
    pipeline-event)  # issue #15: the held-out events (truth: metrics per variant) with the default map, for each of $PIPELINES
      local events=""; for e in ${PIPELINE_EVENTS:-/tmp/data/minbias /tmp/data/ttbar}; do events="$events --event $e"; done
      for pipeline in ${PIPELINES:-ModuleMap}; do
        timeout ${BENCH_S:-200} python3 -m gnn4itk bench pipeline --device cuda --pipeline "$pipeline" $events \
          --module-map /tmp/data/map.npz ${PIPELINE_ARGS:-} $PEER --json "$OUT/bench_pipeline_$pipeline.json" 2>&1 | grep -v -i warn
      done ;;
    gpu-tests)
      timeout ${TEST_S:-200} python3 -m pytest -q -p no:cacheprovider tests/test_python_backend_model.py -x 2>&1 | tail -5 ;;
    *) echo "unknown phase $1"; return 2 ;;
  esac
}

if [ "${1:-}" = prepare ]; then prepare; exit; fi
mkdir -p "$OUT"
PEER=""; [ -f "${DEVIN:-.devin}/peer/interaction_gnn.py" ] && PEER="--peer-gnn-source ${DEVIN:-.devin}/peer"
if [ -z "${SKIP_SETUP:-}" ]; then setup || { echo "setup failed"; exit 1; }; fi  # SKIP_SETUP=1: a dry run here
for phase in "${@:-serve autocast bench bench-pipeline}"; do
  for p in $phase; do run_phase "$p"; done
done
