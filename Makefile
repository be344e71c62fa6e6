# Every set-up step lives here: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= sim,train,serve,dev
WORK   ?= work
# The default module map is built on first use from simulated events (too large to ship: 69 MB with MAP_EVENTS=210).
DEFAULT_MAP := gnn4itk/data/module_map/generic_default.npz
MAP_EVENTS  ?= 210   # hard-gun events (~9.5k particles of pT >= 0.9 GeV each: 2.0M); docs/module_map.md
JOBS        ?= 2
PYTEST_ARGS ?= -n 2

# Triton's PyTorch backend (what the libtorch flavour needs), built for the installed torch: CPU build here,
# GPU build where nvcc exists. The script rebuilds only when torch or the sources change.
PYTORCH_BACKEND := build/triton-pytorch-backend

.PHONY: install test demo serve default-map pytorch-backend build-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing below pulls a different (CUDA) build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.*"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# Compilers and headers for the backend build (Debian packages; CI and developer machines run as root).
build-deps:
	@command -v cmake >/dev/null && command -v c++ >/dev/null && test -f /usr/share/cmake/RapidJSON/RapidJSONConfig.cmake || { \
	  echo "installing cmake, g++ and rapidjson-dev for Triton's PyTorch backend"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake g++ make rapidjson-dev >/dev/null; }

pytorch-backend: $(STAMP) build-deps
	PYTHON=$(PY) scripts/build_pytorch_backend.sh $(PYTORCH_BACKEND)

test: $(STAMP) pytorch-backend
	# pytest exits 5 when it collects no test: say so instead of failing or passing silently.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

default-map: $(DEFAULT_MAP)

$(DEFAULT_MAP): | $(STAMP)
	$(VENV)/bin/gnn4itk simulate --pileup 200 --generator gun --gun-pt-min 0.9 --events $(MAP_EVENTS) --seed 5000000 --jobs $(JOBS) --output $(WORK)/map_gun_events
	$(VENV)/bin/gnn4itk build-module-map --events $(WORK)/map_gun_events --min-pt 0.9 --output $(basename $@)

# The main job on the embedded default: a held-out mu=200 event through the ModuleMap pipeline, first with
# the inference CLI, then served by tritonserver to the client as Athena sends them; truth metrics for both.
demo: $(STAMP) $(DEFAULT_MAP)
	$(VENV)/bin/gnn4itk simulate --pileup 200 --events 1 --seed 900000 --jobs $(JOBS) --output $(WORK)/demo/events
	$(PY) -m gnn4itk.inference -i $(WORK)/demo/events/event000000000 -o $(WORK)/demo/tracks.parquet
	$(PY) scripts/demo_serving.py --events $(WORK)/demo/events --models $(WORK)/demo/models

serve: $(STAMP)
	$(VENV)/bin/gnn4itk serve --repository $(WORK)/models $(SERVE_ARGS)

clean:
	rm -rf $(VENV) $(WORK) .pytest_cache
