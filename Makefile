# Two commands do everything from a fresh clone: `make demo` and `make test`.
# Each target creates or reuses .venv and reinstalls requirements only when requirements.txt changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.installed
DEMO   := runs/demo
RES    := res
# Demo budgets: a few CPU minutes per stage on 2 cores. Override e.g. `make demo VAE_STEPS=5000`.
VAE_STEPS ?= 1000
PAIRS     ?= 24
STY_STEPS ?= 300
# Training precision of the demo's VAE and stylizer: bfloat16 convolutions with float32 variables, Grams and losses
# (on CPUs with AMX the VAE step takes 0.42x the time of the float32 step before issue 16, the stylizer's 0.46x of
# its float32 step); VAE_PRECISION=float32 STY_PRECISION=float32 train as before.
VAE_PRECISION ?= mixed_bfloat16
STY_PRECISION ?= mixed_bfloat16
# Seed of the demo's VAE. Since training recalibrates the batch norms before sampling, seeds 0 and 1 both give
# usable samples (before, stale statistics collapsed some runs; table in the README's "Is the VAE a continuum?").
VAE_SEED ?= 1
# The demo's VAE decays its learning rate (cosine) and uses the texture decoder: the noise image sets the layout and
# the code the statistics, so no layout term (--feature-weight 0). Its texture layers are the default relu1_2-relu3_3:
# relu4_3 lowered the t=1 endpoint error at 64 px (0.321 -> 0.245) for 1.2x the step, but with it make demo took
# 14 min 57 s - 16 min 30 s (budget 15), and its stylizer on the paintings gained 0.03-0.04 (README).
# The sampler draws at the stylizer's size (the texture decoder is fully convolutional) and the stylizer trains on the
# mean Gram of the samples at each t, moved so that the pure samples' mean is the style image itself (--anchor-ends),
# with half the examples at a pure style (--end-share 0.5), and conditional instance norm (--conditioning cin): on
# the paintings the closest net to the single-style nets, or level with the closest, at both ends over three stylizer
# seeds (1.05x / 1.16x; README, "Multi-style vs single-style").
# STY_SIZE is the stylizer's --size, the scale of the styles for the VAE (--style-size) and the samples' size (a
# multiple of 8). A run folder refuses other settings than it was made with: after changing these, `make clean`.
STY_SIZE ?= 128

.PHONY: setup weights demo test test-slow bench studio clean

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if cmp -s requirements.txt $(STAMP); then touch $(STAMP); else \
		echo "installing requirements into $(VENV) ..."; \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt && cp requirements.txt $(STAMP); fi

weights: setup
	@$(PY) perceptual.py fetch-weights >/dev/null

# The default suite in TEST_JOBS processes, a test file each at a time (module fixtures are built once); on 2 cores
# 10.5 min against 18 min in one process (fresh clones, this session). TEST_JOBS=0 runs it in this process.
TEST_JOBS ?= 2
test: weights
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

test-slow: weights
	$(PY) -m pytest -m slow

# Benchmarks print ratios against references measured in the same run. The others: benchmarks/vae_recon.py,
# benchmarks/sampler.py, sample_fidelity.py, benchmarks/vae_cost.py, benchmarks/multistyle_experiment.py,
# benchmarks/lpips_crosscheck.py, video_stability.py, benchmarks/profile_steps.py, benchmarks/micro_ops.py,
# benchmarks/norm_modes.py, benchmarks/decoder_variation.py, benchmarks/seed_spread.py
# (see README).
bench: weights
	@mkdir -p runs/bench
	@if ! cmp -s benchmarks/requirements.txt $(VENV)/.bench.installed; then \
		$(PY) -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt && \
		cp benchmarks/requirements.txt $(VENV)/.bench.installed; fi
	$(PY) benchmarks/speed.py --out runs/bench/speed.json

demo: weights
	@mkdir -p $(DEMO)
	@echo "== stage 1: built-in default styles and content"
	$(PY) builtin_images.py --out $(RES)
	$(PY) image_utilities.py grid $(RES)/styles/*.png --out $(DEMO)/default_styles.png
	$(PY) image_utilities.py grid $(RES)/content/*.png --out $(DEMO)/default_content.png
	@echo "== stage 2: continuum VAE on the two built-in styles (resumes if interrupted)"
	$(PY) vae_keras.py train --run-dir $(DEMO)/vae --style $(RES)/styles/night_swirls.png \
		--style $(RES)/styles/honeycomb.png --size 64 --style-size $(STY_SIZE) --latent-dim 32 --steps $(VAE_STEPS) \
		--batch-size 16 \
		--lr 1e-3 --beta 0.02 --recon gram --log-every 100 --snapshot-every 100 --encode-crops 256 \
		--noise-channels 4 --path-weight 1 --endpoint-weight 1 --diversity-weight 10 \
		--lr-schedule cosine --decoder texture --feature-weight 0 \
		--precision $(VAE_PRECISION) --seed $(VAE_SEED)
	$(PY) image_utilities.py gif $(DEMO)/vae/snapshots $(DEMO)/vae_training.gif --fps 4
	cp $(DEMO)/vae/quad_0.png $(DEMO)/vae_quad.png
	$(PY) vae_keras_gui.py --vae $(DEMO)/vae $(RES)/styles/night_swirls.png $(RES)/styles/honeycomb.png \
		--points 8 --save $(DEMO)/vae_interpolation.png
	@echo "== stage 3: sample interpolated styles from the VAE, and measure them"
	$(PY) style_sampler.py --vae $(DEMO)/vae --out $(DEMO)/samples --pairs $(PAIRS) --points 9 --sample-size $(STY_SIZE)
	$(PY) inspect_images.py $(DEMO)/samples --sheet $(DEMO)/samples_sheet.png
	$(PY) sample_fidelity.py --samples $(DEMO)/samples --out $(DEMO)/samples/sample_fidelity.json
	$(PY) image_utilities.py gif $(DEMO)/samples $(DEMO)/samples_sweep.gif --glob 'pair_00000_*.png' --fps 4
	@echo "== stage 4: multi-style stylizer on the samples and the built-in content"
	$(PY) stylizer.py train --samples $(DEMO)/samples --content $(RES)/content --run-dir $(DEMO)/stylizer \
		--size $(STY_SIZE) --steps $(STY_STEPS) --batch-size 4 --log-every 25 --snapshot-every 50 \
		--checkpoint-every 100 --style-targets mean --anchor-ends --end-share 0.5 --conditioning cin \
		--precision $(STY_PRECISION)
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
