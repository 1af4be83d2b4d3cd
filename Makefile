# Two commands do everything from a fresh clone: `make demo` and `make test`.
# Each target creates or reuses .venv and reinstalls requirements only when requirements.txt changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.installed
DEMO   := runs/demo
RES    := res
# The demo trains the recommended route (the scripts' defaults) at the CPU budgets of recipes/cpu-demo.toml: about
# 13 minutes on 2 cores (docs/results-speed.md). Give a budget to change it, e.g. `make demo VAE_STEPS=5000
# STY_STEPS=2000 PAIRS=48` (more steps continue the demo's runs; after other changes to a recipe, `make clean`).
VAE_STEPS ?=
PAIRS     ?=
STY_STEPS ?=
budget = $(if $(2),$(1) $(2))

.PHONY: setup weights demo test test-slow bench bench-deps studio clean

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if cmp -s requirements.txt $(STAMP); then touch $(STAMP); else \
		echo "installing requirements into $(VENV) ..."; \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt && cp requirements.txt $(STAMP); fi

weights: setup
	@$(PY) perceptual.py fetch-weights >/dev/null

# The default suite in TEST_JOBS processes, a test file each at a time (module fixtures are built once); on 2 cores
# 10.5 min against 18 min in one process (fresh clones, 2026-11-30). TEST_JOBS=0 runs it in this process.
TEST_JOBS ?= 2
test: weights
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

test-slow: weights
	$(PY) -m pytest -m slow

# The benchmarks' own dependencies (PyTorch, CPU build: the speed reference), installed once; .ci/run installs them
# so that the test comparing our network with the PyTorch one runs in CI.
bench-deps: setup
	@if ! cmp -s benchmarks/requirements.txt $(VENV)/.bench.installed; then \
		echo "installing benchmarks/requirements.txt into $(VENV) ..."; \
		$(PY) -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt && \
		cp benchmarks/requirements.txt $(VENV)/.bench.installed; fi

# Benchmarks print ratios against references measured in the same run; the others are listed in docs/README.md.
bench: weights bench-deps
	@mkdir -p runs/bench
	$(PY) benchmarks/speed.py --out runs/bench/speed.json

demo: weights
	@mkdir -p $(DEMO)
	@echo "== stage 1: built-in default styles and content"
	$(PY) builtin_images.py --out $(RES)
	$(PY) image_utilities.py grid $(RES)/styles/*.png --out $(DEMO)/default_styles.png
	$(PY) image_utilities.py grid $(RES)/content/*.png --out $(DEMO)/default_content.png
	@echo "== stage 2: the VAE of the two built-in styles (resumes if interrupted)"
	$(PY) vae_keras.py train --recipe cpu-demo --run-dir $(DEMO)/vae --style $(RES)/styles/night_swirls.png \
		--style $(RES)/styles/honeycomb.png $(call budget,--steps,$(VAE_STEPS))
	$(PY) image_utilities.py gif $(DEMO)/vae/snapshots $(DEMO)/vae_training.gif --fps 4
	cp $(DEMO)/vae/quad_0.png $(DEMO)/vae_quad.png
	$(PY) vae_keras_gui.py --vae $(DEMO)/vae $(RES)/styles/night_swirls.png $(RES)/styles/honeycomb.png \
		--points 8 --save $(DEMO)/vae_interpolation.png
	@echo "== stage 3: sample interpolated styles from the VAE, and measure them"
	$(PY) style_sampler.py --recipe cpu-demo --vae $(DEMO)/vae --out $(DEMO)/samples $(call budget,--pairs,$(PAIRS))
	$(PY) inspect_images.py $(DEMO)/samples --sheet $(DEMO)/samples_sheet.png
	$(PY) sample_fidelity.py --samples $(DEMO)/samples --out $(DEMO)/samples/sample_fidelity.json
	$(PY) image_utilities.py gif $(DEMO)/samples $(DEMO)/samples_sweep.gif --glob 'pair_00000_*.png' --fps 4
	@echo "== stage 4: the stylizer on the samples and the built-in content"
	$(PY) stylizer.py train --recipe cpu-demo --samples $(DEMO)/samples --content $(RES)/content \
		--run-dir $(DEMO)/stylizer $(call budget,--steps,$(STY_STEPS))
	$(PY) image_utilities.py gif $(DEMO)/stylizer/snapshots $(DEMO)/stylizer_training.gif --fps 3
	$(PY) stylizer.py stylize --run-dir $(DEMO)/stylizer $(RES)/content/grace_hopper.png --sweep 5 \
		--out $(DEMO)/stylized --overwrite
	cp $(DEMO)/stylized/grace_hopper_sweep.png $(DEMO)/stylized_sweep.png
	@echo "== stage 5: paint with strength (a map), and flicker of stylized video with and without --stable"
	$(PY) stylizer.py stylize --run-dir $(DEMO)/stylizer $(RES)/content/grace_hopper.png \
		--strength-map $(RES)/maps/ramp.png --out $(DEMO)/mapped --overwrite
	$(PY) image_utilities.py grid $(RES)/maps/ramp.png $(RES)/content/grace_hopper.png \
		$(DEMO)/mapped/grace_hopper.png --cols 3 --out $(DEMO)/strength_map.png
	$(PY) video_stability.py --run-dir $(DEMO)/stylizer --style $(RES)/styles/night_swirls.png \
		--style $(RES)/styles/honeycomb.png --frames 12 --out $(DEMO)/video_stability.json
	@echo
	@echo "demo pictures:"
	@ls -1 $(DEMO)/*.png $(DEMO)/*.gif 2>/dev/null | sed 's/^/  /'

# The web studio on the demo's stylizer (after `make demo`): http://127.0.0.1:7860/
studio: setup
	$(PY) stylizer.py serve --run-dir $(DEMO)/stylizer --port 7860

clean:
	rm -rf $(DEMO)
