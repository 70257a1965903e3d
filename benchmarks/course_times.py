"""Time the course: every notebook executed in order, as shipped, in one tier, with a fresh run cache.

    python benchmarks/course_times.py --tier cpu --out benchmarks/course_times_cpu.json

Each notebook runs in a fresh kernel with ``notebooks/`` as the working directory, as in JupyterLab,
and all of them share one new ``CRL_CACHE`` folder, so the times are those of a student's first pass
through the course (a later notebook loads what an earlier one trained). ``--tier smoke`` sets
``CRL_SMOKE=1``; ``--tier cpu`` hides CUDA. The load average before and after each notebook is recorded,
to say what else was running. Prints a Markdown table; ``--out`` also writes the figures as JSON, ``--keep``
the executed notebooks (whose printed numbers the README quotes).

    python benchmarks/course_times.py --readme

rewrites the time columns of README.md's course table from ``course_times_{smoke,cpu}.json``, so that the
README, notebook 00 (which reads the CPU file) and the JSON cannot drift; ``tests/test_benchmarks.py`` checks it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
README = NOTEBOOKS.parent / "README.md"
TIMES = {tier: Path(__file__).resolve().parent / f"course_times_{tier}.json" for tier in ("smoke", "cpu")}


def readme_table(text: str, times: dict[str, dict]) -> str:
    """``text`` (README.md) with the smoke and CPU columns of the course table set from ``times`` (tier -> JSON).

    A row ``| 05 training | ... | 0.3 min | 3.6 min |`` takes its notebook's seconds, the total row the sums.

    Example:
        >>> times = {t: {"notebooks": [{"notebook": "05_training", "seconds": s}], "total_seconds": s}
        ...          for t, s in (("smoke", 18.0), ("cpu", 240.0))}
        >>> table = ["| 05 training | x | | 0.1 min | 9.9 min |", "| **all eight, in order** | | | **1 min** | **2 min** |"]
        >>> print(readme_table(chr(10).join(table), times))
        | 05 training | x | | 0.3 min | 4.0 min |
        | **all eight, in order** | | | **0.3 min** | **4.0 min** |
    """
    seconds = {tier: {r["notebook"][:2]: r["seconds"] for r in data["notebooks"]} for tier, data in times.items()}
    lines = []
    for line in text.split("\n"):
        cells = line.split("|")  # ["", " 05 training ", ..., " 0.3 min ", " 3.6 min ", ""]
        key = line[2:4] if line.startswith("| ") else ""
        if key.isdigit() and key in seconds["cpu"] and line.endswith(" min |"):
            cells[-3], cells[-2] = (f" {seconds[tier][key] / 60:.1f} min " for tier in ("smoke", "cpu"))
        elif line.startswith("| **all eight, in order** |"):
            cells[-3], cells[-2] = (f" **{times[tier]['total_seconds'] / 60:.1f} min** " for tier in ("smoke", "cpu"))
        lines.append("|".join(cells))
    return "\n".join(lines)


def read_times() -> dict[str, dict]:
    return {tier: json.loads(path.read_text()) for tier, path in TIMES.items()}


def printed_step_seconds(nb) -> float | None:
    """The training step that notebook 00 times and prints ("one 512-view step of the small ConvNet: 112 ms"), in
    seconds, read from the executed notebook ``nb``; 00 scales the course's times by it. ``None`` if it is not there.

    Example:
        >>> import nbformat
        >>> cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        ...     "stream", text="device: cpu | one 512-view step of the small ConvNet: 112 ms (1.0x)")])
        >>> printed_step_seconds(nbformat.v4.new_notebook(cells=[cell]))
        0.112
    """
    import re

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            found = re.search(r"one 512-view step of the small ConvNet: (\d+) ms", output.get("text", ""))
            if found:
                return int(found.group(1)) / 1000
    return None


def time_course(tier: str, only: list[str] | None = None, keep: str | None = None) -> list[dict]:
    import nbclient
    import nbformat

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
            sys.path.insert(0, str(NOTEBOOKS.parent))  # crl_site is beside the package, in the clone
            from crl_site.build import final_progress_text

            final_progress_text(nb)  # progress bars as they ended, as on the site
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(keep) / path.name)
        rows.append({"notebook": path.stem, "seconds": round(seconds, 1), "load_before": round(load_before, 2),
                     "load_after": round(os.getloadavg()[0], 2)})
        step = printed_step_seconds(nb) if path.stem.startswith("00") else None
        if step is not None:  # notebook 00 scales the times by this step, timed in the same pass
            rows[-1]["step_seconds"] = step
        print(f"{path.stem}: {seconds / 60:.1f} min (load {load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("smoke", "cpu"), default="cpu")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 05 06")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--keep", help="write the executed notebooks into this folder (outside notebooks/)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite README.md's course table from course_times_{smoke,cpu}.json")
    args = parser.parse_args()
    if args.readme:
        README.write_text(readme_table(README.read_text(encoding="utf-8"), read_times()), encoding="utf-8")
        print(f"wrote the course table of {README}")
        return
    rows = time_course(args.tier, args.only, args.keep)
    total = sum(r["seconds"] for r in rows)
    print(f"\n| notebook | {args.tier} tier (min) |\n|---|---|")
    for r in rows:
        print(f"| {r['notebook']} | {r['seconds'] / 60:.1f} |")
    print(f"| total | {total / 60:.1f} |")
    if args.out:
        from crl_helpers.device import cpu_name

        Path(args.out).write_text(json.dumps({
            "tier": args.tier, "date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(),
            "cores": os.cpu_count(), "crl_data": bool(os.environ.get("CRL_DATA")), "notebooks": rows,
            "total_seconds": round(total, 1)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
