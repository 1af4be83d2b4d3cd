"""A stylizer run folder: its settings (StylizerConfig, saved as config.json), the names of its styles (styles.json)
and the trained network they describe (load_stylizer). Imports no TensorFlow until a net is loaded, so every
script's --help stays fast.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from run_config import LR_SCHEDULES, PRECISIONS, RunControl, RunError, read_config

CONDITIONINGS = ("channels", "balance", "cin", "none")
STYLE_TARGETS = ("each", "mean")
# Temporal consistency of stylize --video --stable MODE (stylizer_video.py; video_stability.py measures
# each): none; stats (instance-norm statistics smoothed across frames); flow (the flow-warped previous output blended
# in where the optical flow is reliable); both.
STABLE_MODES = ("none", "stats", "flow", "both")


@dataclasses.dataclass(frozen=True)
class StylizerConfig(RunControl):
    """A stylizer run's settings. The defaults are the recommended route at a GPU budget: conditional instance norm,
    targets at each sampled weight the mean Gram of its samples moved so that the pure styles are the paintings
    themselves, half the examples at a pure style; 256 px crops, 40,000 steps of 4 (Johnson et al.'s two epochs of
    COCO). recipes/cpu-demo.toml is the CPU budget; recipes/README.md says what each setting does."""
    samples: str = ""                # a style_sampler.py folder (VAE-sampled styles)
    style_images: tuple = ()         # or style images: one (a single-style net) or more (direct Gram mixing)
    content: str = ""                # the folder of content photos (COCO's train2014 in real use)
    conditioning: str = "cin"        # how the style weights enter the net ("none" for a single style)
    style_targets: str = "mean"      # a sample's (crop's) own Gram, or "mean": the mean over its style weights
    anchor_ends: bool = True         # samples: shift targets so the pure styles' mean is the painting's own Gram
    end_share: float = 0.5           # the share of examples drawn at a pure style (t = 0 or 1; a sample of one style)
    style_crop_size: int = 0         # with style images: Gram targets of random crops of this size (0: whole image)
    strength_draw: str = "uniform"   # with style images: t ~ U(0, 1), or "ends": t in {0, 1} only
    size: int = 256
    steps: int = 40000
    batch_size: int = 4
    lr: float = 1e-3
    lr_schedule: str = "cosine"      # from lr down to 0.05 x lr at the last step, or "constant"
    precision: str = "mixed_bfloat16"
    content_layer: str = "relu3_3"   # relu2_2 keeps finer detail and leaves the style less room
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 10.0
    seed: int = 0
    snapshot_every: int = 500
    checkpoint_every: int = 500
    data_workers: int = 0            # content photos decoded at once (0: one per core)

    RENAMED_KEYS = {"styles": "samples"}  # config.json of older runs (see run_config.current_keys)
    # What runs made before a field existed, or before the defaults became the recommended route, were trained with.
    MISSING_MEANS = {"lr_schedule": "constant", "style_targets": "each", "anchor_ends": False, "end_share": 0.0,
                     "conditioning": "channels", "precision": "float32", "strength_draw": "uniform",
                     "style_crop_size": 0, "size": 224}
    # Settings measured and removed, with the one value the code still has: a run made with another is refused.
    REMOVED = {"residual": False}
    CHOICES = {"conditioning": CONDITIONINGS, "strength_draw": ("uniform", "ends"), "style_targets": STYLE_TARGETS,
               "precision": PRECISIONS, "content_layer": ("relu2_2", "relu3_3"), "lr_schedule": LR_SCHEDULES}
    AT_LEAST = {"size": 16, "steps": 1, "batch_size": 1, "lr": 0.0, "end_share": 0.0, "style_crop_size": 0,
                "content_weight": 0.0, "style_weight": 0.0, "tv_weight": 0.0}
    AT_MOST = {"end_share": 1.0}


def load_stylizer(run_dir):
    """(net, config, style names) of a trained run folder; RunError with a one-line reason otherwise."""
    from distribute import dtype_policy
    from run_dir import restore_latest
    from stylizer_net import build_stylizer

    config = read_config(run_dir, StylizerConfig, "stylizer")
    names = read_style_names(run_dir, config)
    with dtype_policy("float32"):  # inference in float32 whatever the training precision
        net = build_stylizer(len(names), config.conditioning)
    restore_latest(run_dir, net=net)
    return net, config, names


def read_style_names(run_dir, config: StylizerConfig) -> list[str]:
    """The style names of a run (RUN/styles.json, written by training), checked against the run's config: RunError
    naming the file when it is missing, unreadable or counts another number of styles than the net was made for."""
    path = Path(run_dir) / "styles.json"
    if not path.exists():
        raise RunError(f"{run_dir}: not a stylizer run folder (no styles.json)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not JSON ({e})") from None
    names = record.get("style_names") if isinstance(record, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise RunError(f"{path}: needs \"style_names\", a list of one name per style")
    expected = record.get("num_styles", len(config.style_images) or None)
    if expected is not None and len(names) != expected:
        raise RunError(f"{path}: names {len(names)} styles, but the net was trained on {expected}")
    return names
