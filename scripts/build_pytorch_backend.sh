#!/usr/bin/env bash
# Build Triton's PyTorch (libtorch) backend, r24.10, against the torch installed in $PYTHON's environment.
#
#   scripts/build_pytorch_backend.sh [OUT_DIR]      # default build/triton-pytorch-backend
#
# Sources: ../shared/vendor/triton-r24.10/*.tar.gz when that folder exists ($TRITON_VENDOR_DIR overrides),
# else git clones of the r24.10 branches. GPU build (TRITON_ENABLE_GPU=ON) where nvcc is found, CPU build
# otherwise ($TRITON_BACKEND_GPU=ON|OFF forces it). The result, OUT_DIR/libtriton_pytorch.so, is rebuilt only
# when its inputs change: torch's version and location, the GPU switch and the source commits (OUT_DIR/STAMP).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=$(realpath -m "${1:-$HERE/build/triton-pytorch-backend}")
VENDOR=${TRITON_VENDOR_DIR:-$HERE/../shared/vendor/triton-r24.10}
TAG=r24.10
REPOS="pytorch_backend backend core common"
JOBS=${JOBS:-$(nproc)}

TORCH_DIR=$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__)')
PYTHON_INCLUDE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ -n "${TRITON_BACKEND_GPU:-}" ]; then GPU=$TRITON_BACKEND_GPU
elif command -v nvcc >/dev/null 2>&1 && "$PYTHON" -c 'import sys, torch; sys.exit(torch.version.cuda is None)'; then GPU=ON
else GPU=OFF; fi
if [ -d "$VENDOR" ]; then SOURCE="vendor $(cat "$VENDOR/COMMITS" | tr '\n' ' ')"; else SOURCE="git $TAG"; fi
STAMP_TEXT="torch $TORCH_VERSION at $TORCH_DIR; gpu $GPU; $SOURCE"
if [ -f "$OUT/libtriton_pytorch.so" ] && [ "$(cat "$OUT/STAMP" 2>/dev/null)" = "$STAMP_TEXT" ]; then
  echo "Triton PyTorch backend up to date: $OUT ($STAMP_TEXT)"; exit 0
fi
for tool in cmake make c++; do
  command -v $tool >/dev/null || { echo "building the Triton PyTorch backend needs $tool" >&2; exit 1; }
done
echo "building Triton's PyTorch backend ($TAG, GPU $GPU) for torch $TORCH_VERSION into $OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/triton-pytorch-backend.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
for repo in $REPOS; do
  if [ -d "$VENDOR" ]; then
    mkdir -p "$WORK/src" && tar -xzf "$VENDOR/triton-$repo-$TAG.tar.gz" -C "$WORK/src"
  else
    git clone -q --depth 1 --branch "$TAG" "https://github.com/triton-inference-server/$repo.git" "$WORK/src/$repo"
  fi
done
# common's unit tests (googletest, fetched at configure time) are not needed for the backend library.
sed -i 's/^add_subdirectory(test)/# gnn4itk: tests not built/' "$WORK/src/common/src/CMakeLists.txt"
CUDA_ARGS=()
if [ "$GPU" = ON ]; then
  # nvcc 12.9+/13 dropped the oldest architectures the backend repository's small kernel library lists
  # (compute_53 ...): build it for the card's architecture family only (Hopper by default).
  sed -i -E 's/CUDA_ARCHITECTURES "[^"]*"/CUDA_ARCHITECTURES "'"${CUDA_ARCHS:-90}"'"/' "$WORK/src/backend/CMakeLists.txt"
  CUDA_ARGS=(-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}")
fi
# common's JSON helpers need RapidJSON's headers and CMake config (Debian: rapidjson-dev).
cmake -S "$WORK/src/pytorch_backend" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DTRITON_ENABLE_GPU=$GPU -DTRITON_PYTORCH_ENABLE_TORCHVISION=OFF -DTRITON_ENABLE_STATS=ON \
  -DCMAKE_CXX_FLAGS="-Wno-error=deprecated-declarations" \
  -DTRITON_PYTORCH_INCLUDE_PATHS="$TORCH_DIR/include;$TORCH_DIR/include/torch/csrc/api/include" \
  -DTRITON_PYTORCH_LIB_PATHS="$TORCH_DIR/lib" \
  -DPython3_INCLUDE_DIR="$PYTHON_INCLUDE" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  -DFETCHCONTENT_SOURCE_DIR_REPO-COMMON="$WORK/src/common" \
  -DFETCHCONTENT_SOURCE_DIR_REPO-CORE="$WORK/src/core" \
  -DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND="$WORK/src/backend" \
  -DTRITON_COMMON_ENABLE_PROTOBUF=OFF -DTRITON_COMMON_ENABLE_GRPC=OFF \
  "${CUDA_ARGS[@]}" ${CMAKE_ARGS:-} > "$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target triton-pytorch-backend -j "$JOBS" > "$WORK/build.log" 2>&1 \
  || { tail -60 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$OUT"
cp "$WORK/build/libtriton_pytorch.so" "$OUT/libtriton_pytorch.so.tmp" && mv "$OUT/libtriton_pytorch.so.tmp" "$OUT/libtriton_pytorch.so"
echo "$TORCH_DIR/lib" > "$OUT/TORCH_LIB"   # gnn4itk serve puts this libtorch on the server's library path
echo "$STAMP_TEXT" > "$OUT/STAMP"
echo "built $OUT/libtriton_pytorch.so ($STAMP_TEXT)"
