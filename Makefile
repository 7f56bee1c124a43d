# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SAMPLE := examples/sample_checkpoint.pt

.PHONY: demo test bench lint clean fixtures fixtures-tf .browser fixtures-keras

# The core needs only numpy and ml_dtypes: the demo installs just that.
$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $@

# torch must be the pinned CPU build: install it first so nothing pulls the CUDA wheels.
$(VENV)/.test: pyproject.toml $(VENV)/.core
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.core
	@echo "== modelport inspect $(SAMPLE)"
	$(VENV)/bin/modelport inspect $(SAMPLE)
	@echo "== modelport scan $(SAMPLE)"
	$(VENV)/bin/modelport scan $(SAMPLE)
	@echo "== modelport convert: weights to safetensors, then the whole checkpoint (--full)"
	mkdir -p build/demo
	$(VENV)/bin/modelport convert $(SAMPLE) build/demo/weights.safetensors --force --verify
	$(VENV)/bin/modelport convert $(SAMPLE) build/demo/full.safetensors --full --force
	$(VENV)/bin/modelport convert build/demo/full.safetensors build/demo/roundtrip.pt --full --force
	@echo "== back to .pt with --full: every tensor and value of the original, bit for bit"
	$(VENV)/bin/modelport verify $(SAMPLE) build/demo/roundtrip.pt --full

# The view's browser tests drive Debian's Chromium (Playwright's own browser download cannot
# reach the network here); installed once, as root or through sudo.
CHROMIUM := $(shell command -v chromium || command -v chromium-browser)
.browser:
	@if [ -z "$(CHROMIUM)" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y --no-install-recommends chromium \
	  || ($$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium); \
	fi

test: $(VENV)/.test .browser
	$(PY) -m pytest -q -p no:cacheprovider

# The small fixtures committed under tests/fixtures/files (with digests.json), written by the real
# libraries, so the core's tests run with numpy alone. Commit what this changes.
fixtures: $(VENV)/.test
	$(PY) tests/fixtures/generate.py --committed tests/fixtures/files

$(VENV)/.bench: $(VENV)/.test
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(VENV)/.bench
	$(PY) bench/inspect_bench.py
	$(PY) bench/convert_bench.py
	$(PY) bench/scan/run.py
	$(PY) bench/gguf_bench.py
	$(PY) bench/tf_bench.py --tfpy $(TFPY)
	$(PY) bench/recognize_bench.py

$(VENV)/.dev: $(VENV)/.test
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

# TensorFlow fixtures (committed; make test never needs TensorFlow). TFPY: a Python with
# tensorflow>=2.16 and keras>=3 installed.
TFPY ?= /work/tfenv/bin/python
fixtures-tf:
	$(TFPY) tests/fixtures/tf/generate_tf.py

# Keras/TFLite fixtures (committed; same TensorFlow Python as fixtures-tf).
fixtures-keras:
	$(TFPY) tests/fixtures/keras/generate_keras.py

clean:
	rm -rf $(VENV) build src/*.egg-info
