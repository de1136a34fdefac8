# femurseg: the two commands are `make demo` and `make test`.
# Each creates .venv on first use, pinning the local CPU build of torch so no CUDA wheels are fetched.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
SHAPES ?= $(wildcard ../shared/shapes/llp26)

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,dicomseg,cohort]" "$(TORCH_PIN)"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/femurseg demo -o demo_output

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) demo_output
