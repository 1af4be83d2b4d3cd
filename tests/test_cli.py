"""The command lines of our scripts and benchmarks: every option has help text showing its default, `--help` does
not wait for TensorFlow, a flag name means one thing in every script, and the training commands show few options."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import builtin_images
import image_utilities
import inspect_images
import perceptual
import sample_fidelity
import style_sampler
import stylizer
import vae_keras
import vae_keras_gui
import video_stability

ROOT = Path(__file__).resolve().parent.parent
# (module, subcommand or None): every --help page of the scripts this project's CLI rules cover.
PAGES = [(builtin_images, None), (inspect_images, None), (style_sampler, None), (vae_keras_gui, None),
         (sample_fidelity, None), (video_stability, None),
         (image_utilities, "gif"), (image_utilities, "grid"), (perceptual, "fetch-weights"), (perceptual, "lpips"),
         *[(stylizer, c) for c in ("train", "stylize", "export", "optimize", "evaluate", "serve")],
         *[(vae_keras, c) for c in ("train", "encode", "reconstruct", "sample")]]


def help_page(module, command, capsys) -> str:
    with pytest.raises(SystemExit):
        module.build_parser().parse_args([command, "--help"] if command else ["--help"])
    return capsys.readouterr().out


def options(page: str) -> dict[str, str]:
    """{--flag: its help text} from the options section of a --help page."""
    blocks, flag = {}, None
    for line in page.split("options:", 1)[1].splitlines():
        if re.match(r"  -", line):
            flag = re.findall(r"--[\w-]+", line)[0]
            blocks[flag] = line
        elif flag:
            blocks[flag] += " " + line.strip()
    return blocks


def required(page: str) -> set[str]:
    usage = " ".join(page.split("\n\n", 1)[0].split())
    while re.search(r"\[[^\[\]]*\]", usage):
        usage = re.sub(r"\[[^\[\]]*\]", "", usage)  # drop optional parts, innermost first
    return set(re.findall(r"--[\w-]+", usage))


@pytest.mark.parametrize("module,command", PAGES, ids=[f"{m.__name__} {c or ''}".strip() for m, c in PAGES])
def test_every_option_has_help_and_shows_its_default(module, command, capsys):
    page = help_page(module, command, capsys)
    blocks = options(page)
    for flag, text in blocks.items():
        if flag == "--help":
            continue
        described = re.sub(r"^\s*--[\w-]+(\s+[A-Z_:,.]+)?(,\s*--[\w-]+)?", "", text).strip()
        assert described and not described.startswith("(default"), f"{flag} has no help text"
        assert flag in required(page) or "default" in text, f"{flag} does not show its default"


def test_no_description_is_printed_twice(capsys):
    for module, command in PAGES:
        page = help_page(module, command, capsys)
        paragraphs = [p.strip() for p in page.split("\n\n") if len(p.strip()) > 40]
        assert len(paragraphs) == len(set(paragraphs)), f"{module.__name__} {command}"


def test_one_meaning_per_flag(capsys):
    pages = {(m.__name__, c): options(help_page(m, c, capsys)) for m, c in PAGES}
    sampler, gui = pages[("style_sampler", None)], pages[("vae_keras_gui", None)]
    train, stylize = pages[("stylizer", "train")], pages[("stylizer", "stylize")]
    optimize, evaluate = pages[("stylizer", "optimize")], pages[("stylizer", "evaluate")]
    # --steps is training steps: points along an interpolation are --points
    assert "--steps" not in sampler and "--steps" not in gui and {"--points"} <= set(sampler) & set(gui)
    assert "training steps" in train["--steps"]
    # --style is a style image everywhere; the sampler's pair is --pair and the stylizer's sample folder --samples
    assert "--styles" not in sampler and "--styles" not in train and "--style-image" not in train
    assert "style image" in train["--style"] and "style image" in optimize["--style"]
    assert "--pair" in sampler and "--samples" in train
    # --size is the training crop; other sizes are named for what they mean
    assert "--size" not in optimize and "--size" not in stylize and "--max-size" not in stylize
    assert "--size" not in sampler and "--sample-size" in sampler and "stylizer's --size" in sampler["--sample-size"]
    assert "--max-side" in optimize and "--max-side" in stylize
    # --json prints JSON; a file to write is --out
    assert "--json" not in evaluate and "--out" in evaluate
    for page in pages.values():
        if "--json" in page:
            assert re.match(r"\s*--json\s+print", page["--json"])
    assert "weight of the last style (0 = the first style, 1 = the last)" in stylize["--strength"]


@pytest.mark.parametrize("script", ["stylizer", "style_sampler", "inspect_images", "image_utilities",
                                    "builtin_images", "perceptual", "vae_keras_gui", "vae_keras", "sample_fidelity",
                                    "video_stability"])
def test_help_does_not_import_tensorflow(script):
    code = f"import sys, {script}; {script}.build_parser().format_help(); sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("module,command", [(vae_keras, "train"), (stylizer, "train")])
def test_training_commands_list_at_most_16_options(module, command, capsys):
    """The recommended route is the default: a training command shows its budgets and run controls, and a recipe
    (--recipe, --set) reaches every other setting."""
    page = options(help_page(module, command, capsys))
    assert len(page) <= 16, sorted(page)
    assert {"--recipe", "--set", "--steps", "--size", "--run-dir"} <= set(page)


# The benchmark scripts (torch_johnson.py and reference_steps.py are modules the others import).
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if "\ndef main(" in p.read_text())


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_answers_help_with_its_options_described(name, capsys):
    """Each benchmark's --help exits 0 and describes every option (the numbers in docs/ come from these commands)."""
    module = load_benchmark(name)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    page = capsys.readouterr().out
    assert page.startswith("usage:")
    for flag, text in options(page).items():
        described = re.sub(r"^\s*--[\w-]+(\s+[A-Z_:,.|]+)?(,\s*--[\w-]+)?", "", text).strip()
        assert flag == "--help" or described, f"{name} {flag} has no help text"
