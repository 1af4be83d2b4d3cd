# Two commands do everything from a fresh clone: `make demo` and `make test`.
# Each target creates or reuses .venv and reinstalls requirements only when requirements.txt changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.installed
DEMO   := runs/demo
RES    := res

.PHONY: setup weights demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if cmp -s requirements.txt $(STAMP); then touch $(STAMP); else \
		echo "installing requirements into $(VENV) ..."; \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt && cp requirements.txt $(STAMP); fi

weights: setup
	@$(PY) perceptual.py fetch-weights >/dev/null

test: weights
	$(PY) -m pytest

test-slow: weights
	$(PY) -m pytest -m slow

bench: weights
	@if ! cmp -s benchmarks/requirements.txt $(VENV)/.bench.installed; then \
		$(PY) -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt && \
		cp benchmarks/requirements.txt $(VENV)/.bench.installed; fi
	$(PY) benchmarks/vae_recon.py

demo: weights
	@mkdir -p $(DEMO)
	@echo "== stage 1: built-in default styles and content"
	$(PY) image_utilities.py defaults --out $(RES)
	$(PY) image_utilities.py grid $(RES)/styles/*.png --out $(DEMO)/default_styles.png
	$(PY) image_utilities.py grid $(RES)/content/*.png --out $(DEMO)/default_content.png
	@echo
	@echo "demo pictures:"
	@ls -1 $(DEMO)/*.png $(DEMO)/*.gif 2>/dev/null | sed 's/^/  /'

clean:
	rm -rf $(DEMO)
