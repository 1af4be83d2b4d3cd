"""Results kept as data under docs/results/: a benchmark's summary with the date, the machine and the command that
produced it, so that every figure in the docs can be traced to a run of the committed code."""
from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import date
from pathlib import Path

import image_utilities as iu

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def machine() -> str:
    """The CPU's model name and the cores this process may use, e.g. 'AMD EPYC, 2 cores'."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def write_record(name: str, summary: dict, script: str, argv=None, minutes: float | None = None) -> Path:
    """docs/results/NAME.json: `summary` with today's date, this machine and the command line of `script`."""
    args = sys.argv[1:] if argv is None else argv
    record = {**summary, "date": date.today().isoformat(), "machine": machine(),
              "command": " ".join(["python", script, *map(shlex.quote, args)])}
    if minutes is not None:
        record["minutes"] = round(minutes, 1)
    return iu.atomic_write_json(RESULTS / f"{name}.json", record)
