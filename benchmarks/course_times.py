"""Time the course: every notebook executed in order, as shipped, in one tier, with a fresh run cache.

    python benchmarks/course_times.py --tier cpu --out benchmarks/course_times_cpu.json

Each notebook runs in a fresh kernel with ``notebooks/`` as the working directory, as in JupyterLab,
and all of them share one new ``CRL_CACHE`` folder, so the times are those of a student's first pass
through the course (a later notebook loads what an earlier one trained). ``--tier smoke`` sets
``CRL_SMOKE=1``; ``--tier cpu`` hides CUDA. The load average before and after each notebook is recorded,
to say what else was running. Prints a Markdown table; ``--out`` also writes the figures as JSON, ``--keep``
the executed notebooks (whose printed numbers the README quotes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def time_course(tier: str, only: list[str] | None = None, keep: str | None = None) -> list[dict]:
    os.environ.pop("CRL_SMOKE", None)
    if tier == "smoke":
        os.environ["CRL_SMOKE"] = "1"
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["CRL_CACHE"] = tempfile.mkdtemp(prefix=f"crl_course_{tier}_")
    rows = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        if only and not any(path.stem.startswith(o) for o in only):
            continue
        nb = nbformat.read(path, as_version=4)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        seconds = time.perf_counter() - start
        if keep:  # the executed copy, to read the run's numbers from (never into notebooks/)
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(keep) / path.name)
        rows.append({"notebook": path.stem, "seconds": round(seconds, 1), "load_before": round(load_before, 2),
                     "load_after": round(os.getloadavg()[0], 2)})
        print(f"{path.stem}: {seconds / 60:.1f} min (load {load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("smoke", "cpu"), default="cpu")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 05 06")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--keep", help="write the executed notebooks into this folder (outside notebooks/)")
    args = parser.parse_args()
    rows = time_course(args.tier, args.only, args.keep)
    total = sum(r["seconds"] for r in rows)
    print(f"\n| notebook | {args.tier} tier (min) |\n|---|---|")
    for r in rows:
        print(f"| {r['notebook']} | {r['seconds'] / 60:.1f} |")
    print(f"| total | {total / 60:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "tier": args.tier, "date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "crl_data": bool(os.environ.get("CRL_DATA")), "notebooks": rows,
            "total_seconds": round(total, 1)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
