"""What a job is asked to do: its frozen dataclass config, built from defaults, a recipe, `--set` and the command's
flags (in that order of precedence), checked, saved as the run folder's config.json and read back from it.

- Recipes: small TOML files under recipes/ (`--recipe NAME`) or anywhere (`--recipe FILE`), one section per job
  (`[vae]`, `[sampler]`, `[stylizer]`), keys named as in config.json. A recipe sets any field of its job's config,
  including those with no flag of their own; `--set KEY=VALUE` does the same for one field.
- A config class lists its enumerated fields in CHOICES and its bounds in AT_LEAST and AT_MOST (config_problem), the
  fields it renamed in RENAMED_KEYS, and in MISSING_MEANS what a run made before a field existed was trained with.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path

from image_utilities import UserError

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
SECTIONS = ("vae", "sampler", "stylizer")  # a recipe's sections: one per job


class RunError(UserError, RuntimeError):
    """A run folder that cannot be used as asked (conflicting config, broken checkpoint)."""


def config_from_args(cls, args):
    """Build a config dataclass from an argparse namespace (fields with the same names)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**values)


# A run's identity is its config.json minus the keys below: a resumed run with any other setting changed is refused.
# Settings that choose how to run, not what is trained: a resumed run may change them.
RUNTIME_KEYS = ("steps", "log_every", "snapshot_every", "checkpoint_every", "strategy", "devices", "logical_cpus",
                "data_workers")


# Optimizer-only settings: a resumed run may change them too (say, a lower --lr after a NaN); the new value replaces
# the one restored with the optimizer's state, and config.json records it.
OPTIMIZER_KEYS = ("lr", "lr_schedule")  # lr_schedule: the VAE's (--lr-schedule)


RESUMABLE_KEYS = RUNTIME_KEYS + OPTIMIZER_KEYS


# Keras dtype policies a training job may run under (--precision).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class RunControl:
    """The part of every job's config that says how it runs (logging, snapshots, checkpoints, distribution)."""
    log_every: int = 10
    snapshot_every: int = 100
    checkpoint_every: int = 100
    strategy: str = "auto"
    devices: str = ""
    logical_cpus: int = 0


RUN_FLAGS = {
    "log_every": ("--log-every", int, "steps between metrics lines (metrics.jsonl, TensorBoard, screen)"),
    "snapshot_every": ("--snapshot-every", int, "steps between snapshot pictures (snapshots/, TensorBoard)"),
    "checkpoint_every": ("--checkpoint-every", int, "steps between checkpoints (always one at the last step)"),
    "strategy": ("--strategy", str, "tf.distribute strategy: auto (all GPUs when there are several), default (one "
                                    "device), mirrored, multiworker (TF_CONFIG); --batch-size is the global batch"),
}


def add_run_args(parser, defaults: RunControl, flags=tuple(RUN_FLAGS)):
    """The RunControl fields named in `flags` as options; the rest (devices, logical_cpus, ...) are set by a
    recipe or --set."""
    for key in flags:
        flag, kind, text = RUN_FLAGS[key]
        choices = ("auto", "default", "mirrored", "multiworker") if key == "strategy" else None
        parser.add_argument(flag, type=kind, default=getattr(defaults, key), choices=choices, help=text)


LR_SCHEDULES = ("constant", "cosine")
LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of lr


def lr_at(config, step: int) -> float:
    """The learning rate of a step: `lr` throughout (lr_schedule constant), or a half cosine from `lr` down to
    LR_FLOOR x `lr` at the last step (Adam at a constant rate keeps the weights wandering around the optimum; the
    decay lets them settle, which matters most in a short run)."""
    if config.lr_schedule == "constant" or config.steps <= 1:
        return config.lr
    progress = min(1.0, step / (config.steps - 1))
    return config.lr * (LR_FLOOR + (1.0 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def current_keys(cls, saved: dict) -> dict:
    """A saved config with keys that `cls` renamed since (its RENAMED_KEYS, old -> new) under their new names, so run
    folders written before a rename still load and resume."""
    if not isinstance(saved, dict):
        return saved
    renamed = getattr(cls, "RENAMED_KEYS", {})
    return {renamed.get(k, k): v for k, v in saved.items()}


def removed_problem(cls, saved: dict) -> str | None:
    """Why a saved config cannot be used any more: it was made with another value of a setting that has been removed
    (the class's REMOVED: {key: the one value the code still has})."""
    for key, kept in getattr(cls, "REMOVED", {}).items():
        if key in saved and saved[key] != kept:
            return (f"this run was made with {key}={saved[key]!r}, a setting that was measured and removed "
                    f"(findings: docs/); train a new run in another folder")
    return None


def missing_keys(cls, saved: dict) -> dict:
    """Values for the fields a saved config lacks: a field added since the run was made takes the value the code
    had before it existed (the class's MISSING_MEANS), else its default."""
    legacy = getattr(cls, "MISSING_MEANS", {})
    return {k: legacy[k] for k in legacy if k not in saved}


def field_defaults(config) -> dict:
    """A dataclass config's field defaults as config.json holds them (tuples as lists); {} for a plain dict."""
    if not dataclasses.is_dataclass(config):
        return {}
    defaults = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return json.loads(json.dumps(defaults))


def config_problem(config) -> str | None:
    """What is wrong with a config's values (None when nothing): a config class lists its enumerated fields in
    CHOICES ({field: allowed values}) and its numeric lower bounds in AT_LEAST ({field: bound})."""
    for key, allowed in getattr(config, "CHOICES", {}).items():
        value = getattr(config, key)
        if value not in allowed:
            return f"{key} is {value!r}: use one of {', '.join(map(str, allowed))}"
    for key, low in getattr(config, "AT_LEAST", {}).items():
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
            return f"{key} is {value!r}: it must be a number of at least {low:g}"
    for key, high in getattr(config, "AT_MOST", {}).items():
        if not getattr(config, key) <= high:
            return f"{key} is {getattr(config, key)!r}: it must be at most {high:g}"
    return None


def read_config(run_dir, cls, kind: str):
    """The `cls` config saved in RUN/config.json (lists back to tuples); RunError naming the file otherwise, also
    for values the code cannot use (config_problem)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(f"{run_dir}: not a {kind} run folder (no config.json)")
    try:
        raw = current_keys(cls, json.loads(path.read_text()))
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{**missing_keys(cls, raw),
                        **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in fields}})
    except (json.JSONDecodeError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: unreadable config ({e})") from None
    problem = removed_problem(cls, raw) or config_problem(config)
    if problem:
        raise RunError(f"{path}: {problem}")
    return config


# --------------------------------------------------------------------------------------------------------------------
# Recipes and --set: config values from a file or the command line

def add_config_args(parser, cls, section: str):
    """--recipe and --set on a job's parser; `cls` is the job's config class, `section` its recipe section."""
    parser.add_argument("--recipe", metavar="NAME|FILE",
                        help=f"a recipe: recipes/NAME.toml or a TOML file; its [{section}] section sets this job's "
                             "settings (the flags given here win) (default: none, the defaults are the recommended "
                             "route)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="one setting as config.json names it, over the recipe (repeat); the settings without a "
                             "flag of their own are listed in recipes/README.md")
    parser.set_defaults(config_class=cls, config_section=section)


def recipe_path(spec: str) -> Path:
    """A recipe named by --recipe: a file path, or NAME for recipes/NAME.toml."""
    path = Path(spec)
    if path.suffix == ".toml" or path.parent != Path("."):
        if not path.is_file():
            raise RunError(f"--recipe {spec}: no such file")
        return path
    named = RECIPE_DIR / f"{spec}.toml"
    if not named.is_file():
        have = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.toml")))
        raise RunError(f"--recipe {spec}: no such recipe (have {have}, or give a .toml file)")
    return named


def typed_value(cls, key: str, value, source: str):
    """`value` (from TOML, or a --set string) as the type of `cls`'s field `key` (a list's elements as the type of
    the default's, a field without a default as text); RunError naming `source`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        raise RunError(f"{source}: no setting '{key}' (settings: {', '.join(sorted(fields))})")
    default = field_defaults(cls).get(key, "")
    try:
        if isinstance(default, list):
            items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
            if not isinstance(items, list):
                raise TypeError
            like = default[0] if default else ""
            if default and len(items) != len(default):
                raise ValueError
            return tuple(typed_scalar(v, like) for v in items)
        return typed_scalar(value, default)
    except (ValueError, TypeError):
        kind = f"list of {len(default)} {type(default[0]).__name__}" if isinstance(default, list) and default \
            else type(default).__name__
        raise RunError(f"{source}: {key} = {value!r} is not a {kind}") from None


def typed_scalar(value, like):
    """`value` as the type of `like` (bool, int, float or str); a string is parsed (true/false, numbers)."""
    if isinstance(value, str) and not isinstance(like, str):
        if isinstance(like, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        value = float(value) if isinstance(like, float) else int(value)
    if isinstance(like, bool) != isinstance(value, bool):
        raise ValueError(value)
    if isinstance(like, float) and isinstance(value, int):
        value = float(value)
    if not isinstance(value, type(like)):
        raise TypeError(value)
    return value


def recipe_values(cls, section: str, recipe: str | None, settings) -> dict:
    """The config values a recipe's [section] and the --set KEY=VALUE strings give, checked against `cls`."""
    values = {}
    if recipe:
        path = recipe_path(recipe)
        try:
            recipe_file = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{path}: not TOML ({e})") from None
        unknown = [k for k, v in recipe_file.items() if k not in SECTIONS or not isinstance(v, dict)]
        if unknown:
            raise RunError(f"{path}: [{unknown[0]}] is not a section of a recipe (use {', '.join(SECTIONS)})")
        table = recipe_file.get(section, {})
        values.update({k: typed_value(cls, k, v, f"{path} [{section}]") for k, v in table.items()})
    for item in settings or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise RunError(f"--set {item}: give KEY=VALUE")
        values[key.strip()] = typed_value(cls, key.strip(), text.strip(), f"--set {item}")
    return values


def apply_recipe(parser, argv) -> None:
    """Before `parser` parses `argv`: make the --recipe and --set values of the job's (sub)command its defaults, so
    that its own flags still win. A no-op for commands without add_config_args."""
    import argparse
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe")
    pre.add_argument("--set", dest="settings", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    if not known.recipe and not known.settings:
        return
    job = parser
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs:
        job = next((subs[0].choices[a] for a in argv if a in subs[0].choices), None)
    if job is None or job.get_default("config_class") is None:
        return
    values = recipe_values(job.get_default("config_class"), job.get_default("config_section"), known.recipe,
                           known.settings)
    for action in job._actions:  # a repeatable flag given here replaces the recipe's list instead of adding to it
        if isinstance(action, argparse._AppendAction) and action.dest in values:
            given = any(a.split("=")[0] in action.option_strings for a in argv)  # --style X or --style=X
            values[action.dest] = [] if given else list(values[action.dest])
    job.set_defaults(**values)
