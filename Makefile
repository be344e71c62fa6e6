# Every set-up step lives here: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= sim,train,serve,dev
WORK   ?= work
PYTEST_ARGS ?= -n 2

.PHONY: install test demo serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing below pulls a different (CUDA) build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.*"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

test: $(STAMP)
	# pytest exits 5 when it collects no test: say so instead of failing or passing silently.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

demo: $(STAMP)
	$(VENV)/bin/gnn4itk simulate --pileup 200 --events 1 --seed 1 --output $(WORK)/demo/events

serve: $(STAMP)
	$(VENV)/bin/gnn4itk serve --repository $(WORK)/models $(SERVE_ARGS)

clean:
	rm -rf $(VENV) $(WORK) .pytest_cache
