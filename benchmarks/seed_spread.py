"""How much of a multi-style experiment's verdict is its seed? Reads the results.json of several runs of
benchmarks/multistyle_experiment.py that differ only in --seed (the stylizers' seed; VAE and samples linked from one
folder) and prints, for every net that all of them trained, its loss at strength 0 and 1 relative to the
single-style nets of the same seed, per seed, and the ratio of the mean losses over the seeds (the single-style
nets vary with the seed too, so a ratio of means is steadier than a mean of ratios).

    python benchmarks/seed_spread.py runs/exp8 runs/exp10s1 runs/exp10s2 [--out OUT.json]

The folders must be one experiment at different seeds: their configurations may differ only in the stylizer seed
and in what says where and what to run (--out, --figure, --skip, --cin-twins).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import image_utilities as iu  # noqa: E402

RATIOS = ("loss_at_0_vs_single", "loss_at_1_vs_single")
SINGLE = ("single_A_loss", "single_B_loss")
SPEARMAN = "spearman_strength_vs_style_loss_to_A"
# configuration keys that say where and what to run, not what is measured (stylizer_seed: what varies)
PER_RUN = {"stylizer_seed", "out", "figure", "skip", "cin_twins"}


def read_results(folder: Path) -> dict:
    path = folder / "results.json"
    if not path.exists():
        raise ValueError(f"{path}: missing; has the experiment finished?")
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None
    if not isinstance(results, dict) or not all(isinstance(results.get(k), (int, float)) for k in SINGLE):
        raise ValueError(f"{path}: no single-style losses; is it a multistyle_experiment results file?")
    for name, entry in results.items():
        if isinstance(entry, dict) and RATIOS[0] in entry and not all(k in entry for k in (*RATIOS, SPEARMAN)):
            raise ValueError(f"{path}: net {name} lacks one of {', '.join((*RATIOS, SPEARMAN))}")
    return results


def seed_of(results: dict) -> int:
    return results.get("config", {}).get("stylizer_seed", 0)  # experiments from before the option: seed 0


def check_same_experiment(results: list[dict], folders) -> None:
    """Raises ValueError unless the runs differ only in their stylizer seed, each seed once."""
    def setup(r):
        return {k: v for k, v in r.get("config", {}).items() if k not in PER_RUN}

    first = setup(results[0])
    for r, folder in zip(results[1:], folders[1:]):
        this = setup(r)
        changed = sorted(k for k in this.keys() | first.keys() if this.get(k) != first.get(k))
        if changed:
            raise ValueError(f"{folder}: not the experiment of {folders[0]} at another seed (differs in "
                             f"{', '.join(changed)})")
    seeds = [seed_of(r) for r in results]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"stylizer seeds {seeds}: each seed once")


def spread(results: list[dict]) -> dict:
    """Per net trained in every result: its per-seed ratios at each end, and the ratios of the mean losses over the
    seeds (a net's loss at an end is its ratio times that seed's single-style loss)."""
    nets = [k for k, v in results[0].items() if isinstance(v, dict) and RATIOS[0] in v
            and all(k in r for r in results)]
    singles = np.array([[r[k] for k in SINGLE] for r in results])  # [seeds, 2]
    out = {}
    for net in nets:
        ratios = np.array([[r[net][k] for k in RATIOS] for r in results])  # [seeds, 2]
        mean_ratio = (ratios * singles).mean(0) / singles.mean(0)
        out[net] = {"per_seed": ratios.tolist(), "ratio_of_means": mean_ratio.tolist(),
                    "spearman_min": min(r[net][SPEARMAN] for r in results)}
    return {"seeds": [seed_of(r) for r in results], "single_losses": singles.tolist(),
            "nets": out}


def format_table(report: dict) -> str:
    seeds = report["seeds"]
    lines = ["| net | " + " | ".join(f"seed {s}: at 0 / at 1" for s in seeds)
             + " | ratio of mean losses: at 0 / at 1 | Spearman (min) |", "|---|" + "---|" * (len(seeds) + 2)]
    for net, r in report["nets"].items():
        cells = [f"{a:.2f}x / {b:.2f}x" for a, b in r["per_seed"]]
        a, b = r["ratio_of_means"]
        lines.append(f"| {net} | " + " | ".join(cells) + f" | **{a:.2f}x / {b:.2f}x** | {r['spearman_min']:.3f} |")
    singles = " | ".join(f"{a:.1f} / {b:.1f}" for a, b in report["single_losses"])
    lines.append(f"| single-style nets' losses (A / B) | {singles} | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="multistyle_experiment --out folders, one per seed")
    ap.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = ap.parse_args(argv)
    try:
        results = [read_results(f) for f in args.folders]
        check_same_experiment(results, args.folders)
        report = spread(results)
    except ValueError as e:
        return iu.fail(str(e))
    if not report["nets"]:
        return iu.fail("no multi-style net was trained in every folder")
    print(format_table(report))
    if args.out:
        iu.atomic_write_json(args.out, report)
    print(json.dumps({net: r["ratio_of_means"] for net, r in report["nets"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
