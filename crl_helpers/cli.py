"""The ``crl`` command: ``crl train`` pretrains an encoder (SimCLR, or ``--method``) and evaluates it, end to end.

Bad input exits with status 2 and one line naming the value and the fix; any other error
with status 1 and one line (``--debug`` shows the traceback). Ctrl-C exits with status 130
and keeps the last finished epoch's checkpoint. A folder that already holds a checkpoint is
never written over unless ``--resume`` (continue it) or ``--overwrite`` (start afresh) says
so, and a folder another run is writing to is refused. Under ``torchrun --nproc_per_node=N``
every process trains its share of each batch and only rank 0 prints.

Example:
    >>> build_parser().parse_args(["train", "--epochs", "3"]).epochs
    3
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from crl_helpers.data import DATASETS

class UsageError(ValueError):
    """A flag that argparse refused; :func:`main` prints it on one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block and exits; one line that names the flag and the fix is kinder.
    def error(self, message: str):
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _int_at_least(low: int, example: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; e.g. {example}") from None
        if value < low or (high is not None and value >= high):
            bound = f">= {low}" if high is None else f"in [{low}, {high})"
            raise argparse.ArgumentTypeError(f"{value} must be {bound}; e.g. {example}")
        return value
    return parse


def _positive_float(example: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; e.g. {example}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0; e.g. {example}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="crl", description="Contrastive representation learning (SimCLR).")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="pretrain with SimCLR, then kNN, linear probe and plots",
                       description="Pretrain an encoder with SimCLR on a dataset, then evaluate it. "
                                   "Defaults: built-in shapes dataset, small ConvNet, CPU preset.")
    t.add_argument("--preset", default="cpu", help="named config to start from: cpu (default), cifar10-gpu")
    t.add_argument("--method", help="the objective: simclr (default), instdisc (memory bank), moco, "
                                    "supcon (uses labels), triplet, debiased (Chuang et al. 2020), simsiam, "
                                    "simsiam_no_stopgrad (collapses); only simclr runs under torchrun")
    t.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (folder: --data-root is the image folder)")
    t.add_argument("--data-root", help="where datasets are downloaded and cached (default: data)")
    t.add_argument("--encoder", help="convnet (CPU default), resnet18 (CIFAR stem), resnet18-imagenet")
    t.add_argument("--epochs", type=_int_at_least(1, 30))
    t.add_argument("--batch-size", type=_int_at_least(2, 256),
                   help="the global batch (under torchrun, divisible by the number of processes)")
    t.add_argument("--temperature", type=_positive_float("0.2"), help="NT-Xent temperature tau > 0")
    t.add_argument("--lr", type=_positive_float("2e-3"), help="peak learning rate")
    t.add_argument("--optimizer", help="adamw or sgd")
    t.add_argument("--device", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, mps")
    t.add_argument("--out", help="output directory (default: runs/<preset>)")
    t.add_argument("--seed", type=_int_at_least(0, 0, high=2**32))
    t.add_argument("--view-size", type=_int_at_least(8, 24),
                   help="side of the training views in pixels (default: 24 for the cpu preset, the images' own for "
                        "cifar10-gpu); evaluation always reads the images at their own size")
    t.add_argument("--n-train", type=_int_at_least(2, 5000), help="use only this many training images")
    t.add_argument("--n-test", type=_int_at_least(1, 2000), help="use only this many test images")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh even if <out> holds a checkpoint (it is replaced after the first epoch)")
    t.add_argument("--umap", action=argparse.BooleanOptionalAction, default=None,
                   help="also draw umap.png, a UMAP of the test features (default: no; UMAP's first call in "
                        "a process compiles for ~20 s on 2 cores)")
    t.add_argument("--precision", help="auto (default: bf16 on CUDA and on CPUs with bfloat16 units, else fp32), "
                                       "bf16, fp32")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    i = sub.add_parser("instructor", help="write the instructor version of the notebooks (solutions inline)",
                       description="Write every course notebook with the reference solution of each exercise "
                                   "inline, made from the same notebooks (crl_helpers.exercises.instructor).")
    i.add_argument("--notebooks", default="notebooks", help="the course's notebook folder (default: notebooks)")
    i.add_argument("--out", default="instructor", help="output folder (default: instructor)")
    site = sub.add_parser("site", help="build the course as a static HTML site (notebooks executed in a tier)",
                          description="Execute the learner's notebooks in a tier (copies, in build/site-<tier>/, "
                                      "which caches runs for the next build) and render them with the README as "
                                      "home page into a static site that loads nothing from another host "
                                      "(crl_helpers.site; needs pip install -e \".[site]\").")
    lecture = sub.add_parser("lecture", help="write the course's interactive explorers as one static page, no code",
                             description="Execute the notebooks as crl site does (reusing its build folder) and "
                                         "write a page holding only the explorers that compute in the browser "
                                         "(temperature, UMAP, run comparison), for showing in a lecture; it opens "
                                         "from file:// offline (crl_helpers.site.build_lecture; needs "
                                         "pip install -e \".[site]\").")
    for command, out in ((site, "site"), (lecture, "lecture")):
        command.add_argument("--tier", default="smoke", help="smoke (default: fast, as in CI), cpu, or gpu (needs CUDA)")
        command.add_argument("--out", default=out, help=f"output folder (default: {out}); open <out>/index.html")
        command.add_argument("--notebooks", default="notebooks", help="the course's notebook folder (default: notebooks)")
    a = sub.add_parser("assign", help="write the course for a grading tool (nbgrader): solution regions, points",
                       description="Write every notebook with exercises as an nbgrader source assignment: solution "
                                   "regions from the reference solutions and autograded cells that run the same "
                                   "checkers (crl_helpers.assign), in an nbgrader course folder.")
    a.add_argument("--format", default="nbgrader", help="the grading tool: nbgrader (default, the only one)")
    a.add_argument("--notebooks", default="notebooks", help="the course's notebook folder (default: notebooks)")
    a.add_argument("--out", default="nbgrader", help="the nbgrader course folder to write (default: nbgrader)")
    a.add_argument("--points", type=_positive_float("1"), default=1.0, help="points per exercise (default: 1)")
    g = sub.add_parser("grade", help="grade submitted notebooks: one verdict per exercise, in a CSV",
                       description="Run each submission (a notebook, or a folder of one student's notebooks) on a "
                                   "temporary copy in a fresh kernel and write one row per exercise: passed, not yet, "
                                   "error, timeout or refused (crl_helpers.grading; needs nbclient).")
    g.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="a notebook or a folder of notebooks")
    g.add_argument("--out", default="grades.csv", help="the CSV to write (default: grades.csv)")
    g.add_argument("--tier", default="smoke", help="smoke (default), cpu, or gpu: the tier the notebooks run in")
    g.add_argument("--cell-timeout", type=_positive_float("300"), default=300.0,
                   help="seconds a cell may run (default: 300)")
    g.add_argument("--memory-gb", type=float,
                   help="the kernel's address-space limit in GiB (default: 8, none in the gpu tier; 0: none)")
    return parser


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` that the parsed flags describe (raises ValueError on bad values)."""
    from crl_helpers.train import CLI_FLAGS, PRESETS

    if args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    changes = {field: getattr(args, flag.replace("-", "_")) for field, flag in CLI_FLAGS.items()
               if getattr(args, flag.replace("-", "_")) is not None}
    if args.umap is not None:
        changes["umap"] = args.umap
    if args.quiet:
        changes["progress"] = False
    try:
        return replace(PRESETS[args.preset], **changes)
    except ValueError as err:
        # TrainConfig names its field ("encoder='x' is unknown ..."); on the command line, name the flag.
        message = str(err)
        for field, flag in CLI_FLAGS.items():
            if message.startswith(f"{field}="):
                message = f"--{flag} {message[len(field) + 1:]}"
                break
        raise ValueError(message) from err


def _summary(metrics: dict, out: str, umap: bool = True) -> str:
    rows = [
        ("kNN accuracy (trained encoder)", f"{metrics['knn_acc']:.3f}"),
        ("kNN accuracy (random init)", f"{metrics['knn_acc_random_init']:.3f}"),
        ("linear probe accuracy", f"{metrics['linear_acc']:.3f}"),
        ("epochs", str(metrics["epochs"])),
        ("training time", f"{metrics['train_seconds']:.1f} s"),
        ("throughput", f"{metrics['images_per_second']:.0f} images/s"),
        ("device", metrics["device"]),
        ("outputs", f"{out}/ (checkpoint.pt, history.csv, metrics.json, curves.png{', umap.png' if umap else ''})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _check_fresh(out: str, resume: bool, overwrite: bool) -> None:
    # A finished or interrupted run is hours of compute: never replace its checkpoint by accident.
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one of them")
    checkpoint = Path(out) / "checkpoint.pt"
    if not resume and not overwrite and checkpoint.exists():
        raise ValueError(f"--out {out!r} already holds checkpoint.pt; continue that run with --resume, "
                         f"start afresh with --overwrite, or choose another --out")


def _fail(message: str, rank0: bool) -> None:
    # Under torchrun every rank has the same flags, data and checkpoint, hence the same error: rank 0 says it.
    if rank0:
        message = re.sub(r"\x1b\[[0-9;]*m", "", message)  # torch's messages carry terminal bold codes
        print(f"crl: error: {' '.join(message.split())}", file=sys.stderr)


def _instructor(notebooks: str, out: str) -> int:
    from crl_helpers.exercises.instructor import write_instructor_version

    if Path(out).resolve() == Path(notebooks).resolve():
        raise ValueError(f"--out {out!r} is the notebook folder itself; choose another folder, e.g. instructor")
    written = write_instructor_version(notebooks, out)
    print(f"crl: wrote {len(written)} instructor notebooks (solutions inline) to {out}/")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from crl_helpers.assign import FORMATS, write_nbgrader
    from crl_helpers.exercises.solutions import WITHHOLD_ENV, solutions_withheld

    if args.format not in FORMATS:
        raise ValueError(f"--format {args.format!r} is unknown; choose one of {', '.join(FORMATS)}")
    if solutions_withheld():  # checked first: no half-written folder
        raise ValueError(f"the solutions are withheld in this install ({WITHHOLD_ENV} is set); unset it to write "
                         f"the assignment")
    if Path(args.out).resolve().is_relative_to(Path(args.notebooks).resolve()):
        raise ValueError(f"--out {args.out} is inside the notebook folder {args.notebooks}; choose another, "
                         f"e.g. nbgrader")
    written = write_nbgrader(args.notebooks, args.out, points=args.points)
    print(f"crl: wrote {len(written)} nbgrader source notebooks to {args.out}/source/ (then, in {args.out}/: "
          f"nbgrader generate_assignment <name>)")
    return 0


def _grade(args: argparse.Namespace) -> int:
    try:
        import nbclient  # noqa: F401  (checked before any notebook runs)
    except ImportError as err:
        raise ValueError(f"crl grade needs {err.name}: pip install -e \".[site]\"") from None
    from crl_helpers.grading import grade, summary_table, write_grades

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {args.out!r} is a folder; name the CSV file, e.g. grades.csv")
    for submission in args.submissions:
        if Path(submission).is_dir() and out.resolve().is_relative_to(Path(submission).resolve()):
            raise ValueError(f"--out {args.out} is inside the submission {submission}, which grading never writes "
                             f"into; choose another place, e.g. grades.csv")
    # An --out that cannot be written fails now, not after the first student's notebooks have run.
    parent = out.resolve().parent
    if not (parent.is_dir() and os.access(parent, os.W_OK) and (not out.exists() or os.access(out, os.W_OK))):
        raise ValueError(f"--out {args.out} cannot be written (its folder is missing, not a folder, or read-only); "
                         f"choose another file, e.g. grades.csv")
    rows = []

    def save(these):  # after each submission: an interrupted run keeps what it graded
        rows.extend(these)
        write_grades(rows, out)
        if these:
            passed = sum(row.verdict == "passed" for row in these)
            print(f"crl: graded {these[0].submission} ({passed} of {len(these)} passed)", flush=True)

    notes = []

    def note(submission, notebook, problems):  # a notebook that did not run to the end, checks or not
        if problems:
            index, what = problems[0]
            notes.append(f"crl: note: {submission}: {notebook} did not run cleanly ({len(problems)} failed cells); "
                         f"cell {index}: {what}")

    try:
        grade(args.submissions, tier=args.tier, cell_timeout=args.cell_timeout, memory_gb=args.memory_gb,
              on_submission=save, on_notebook=note)
    except KeyboardInterrupt:
        kept = f"{len({r.submission for r in rows})} graded submissions are in {out}" if rows else "nothing was graded"
        print(f"crl: interrupted; {kept}", file=sys.stderr)
        return 130
    print(summary_table(rows))
    print("\n".join(notes + [f"crl: {len(rows)} verdicts written to {out}"]))
    return 0


def _site(tier: str, out: str, notebooks: str, lecture: bool = False) -> int:
    command = "lecture" if lecture else "site"
    try:
        from crl_helpers.site import SiteError, build_lecture, build_site
        import myst_nb  # noqa: F401  (the site's dependencies, checked before any notebook runs)
    except ImportError as err:
        raise ValueError(f"crl {command} needs {err.name}: pip install -e \".[site]\"") from None
    if Path(out).resolve().is_relative_to(Path(notebooks).resolve()):
        raise ValueError(f"--out {out} is inside the notebook folder {notebooks}; choose another, e.g. {command}")
    try:
        result = (build_lecture if lecture else build_site)(tier, out, notebooks_dir=notebooks)
    except SiteError as err:  # a notebook that raised, or Sphinx: not bad input, still one line
        _fail(str(err), True)
        return 1
    for warning in result.warnings:
        print(f"crl: sphinx: {warning}", file=sys.stderr)
    what = "lecture page" if lecture else "site"
    print(f"crl: {what} ({tier} tier, {len(result.executed)} notebooks) written to {out}/; open {result.index}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``crl``; returns the exit status (0 done, 2 bad input, 1 unexpected error, 130 interrupted).

    Every error is one line on stderr; ``--debug`` shows the traceback instead.
    """
    from crl_helpers.distributed import is_main_process

    rank0 = is_main_process()
    out, config = None, None
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "instructor":
            return _instructor(args.notebooks, args.out)
        if args.command == "assign":
            return _assign(args)
        if args.command == "grade":
            return _grade(args)
        if args.command in ("site", "lecture"):
            return _site(args.tier, args.out, args.notebooks, lecture=args.command == "lecture")
        from crl_helpers.device import pick_device
        from crl_helpers.report import train_and_evaluate

        config = config_from_args(args)
        out = config.out_dir
        try:  # --device cuda without a GPU fails here, before any folder is made
            device = pick_device(config.device)
        except ValueError as err:
            raise ValueError(re.sub(r"^device=", "--device ", str(err))) from err
        if device.type == "cpu" and config.encoder != "convnet" and rank0:
            # Not an error (it works, and --n-train makes it small), but hours for a full dataset on a laptop.
            # Measured on 2 cores: ResNet-18 ~16 source images/s, the convnet ~1,200.
            print(f"crl: note: --encoder {config.encoder} on the CPU is about 75x slower than the default convnet "
                  "(2 cores: a CIFAR-10 epoch takes about 50 minutes); the progress bar shows the estimate. "
                  "For a quick CPU run: --encoder convnet, or --n-train 2000", file=sys.stderr)
        if rank0 and config.progress:  # --quiet prints nothing but the summary
            from crl_helpers.device import describe_precision

            print(f"crl: {describe_precision(device, config.precision)}")
        _check_fresh(out, args.resume, args.overwrite)
        result = train_and_evaluate(config, resume=args.resume)
    except KeyboardInterrupt:
        if rank0:
            saved = out is not None and (Path(out) / "checkpoint.pt").exists()
            where = (f"the last finished epoch is saved in {out}/checkpoint.pt; continue with: "
                     f"crl train --resume --out {out} (and the same flags)" if saved
                     else "no epoch finished, nothing was saved")
            lead = "\n" if config is not None and config.progress else ""  # end the progress bar's line
            print(f"{lead}crl: interrupted; {where}", file=sys.stderr)
        return 130
    except Exception as err:
        import torch

        from crl_helpers.checkpoint import CheckpointError
        from crl_helpers.image_data import DatasetUnavailable
        from crl_helpers.train import NonFiniteLossError

        if debug:
            raise
        if isinstance(err, (ValueError, DatasetUnavailable, CheckpointError, NonFiniteLossError)):
            _fail(str(err), rank0)
            return 2
        if isinstance(err, torch.cuda.OutOfMemoryError):  # the one crash a student can fix by a flag
            batch = config.batch_size
            world = int(os.environ.get("WORLD_SIZE", "1") or 1)
            smaller = max(2, world, batch // 2 // world * world)
            kept = (f"; the last finished epoch is kept in {out}/checkpoint.pt"
                    if out and (Path(out) / "checkpoint.pt").exists() else "")
            _fail(f"out of GPU memory at --batch-size {batch}; try --batch-size {smaller}{kept}", rank0)
            return 2
        # Anything else is unexpected: still one line, with the way to the traceback.
        first = " ".join(str(err).split())[:300]
        _fail(f"{type(err).__name__}: {first} (unexpected; run again with --debug for the traceback, and "
              f"please report it)", rank0)
        return 1
    if rank0:
        print(_summary(result.metrics, out, config.umap))
    return 0


if __name__ == "__main__":  # python -m crl_helpers.cli
    sys.exit(main())
