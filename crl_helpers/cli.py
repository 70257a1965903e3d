"""The ``crl`` command: ``crl train`` pretrains an encoder (SimCLR, or ``--method``) and evaluates it, end to end.

Bad input exits with status 2 and one line naming the value and the fix; any other error
with status 1 and one line (``--debug`` shows the traceback). Ctrl-C exits with status 130
and keeps the last finished epoch's checkpoint (SIGTERM: status 143, the same). A folder that
already holds a checkpoint or another run's report is never written over unless ``--resume``
(continue it) or ``--overwrite`` (start afresh) says so, and a folder another run is writing
to is refused. ``crl instructor`` never replaces a notebook that differs from what it would
write (a learner's edits) without ``--overwrite``, nor writes through a link into the
notebooks. Under ``torchrun --nproc_per_node=N`` every process trains its share of each batch
and only rank 0 prints.

Example:
    >>> build_parser().parse_args(["train", "--epochs", "3"]).epochs
    3
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import re
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from crl_helpers.data import DATASETS

#: TrainConfig field -> the ``crl train`` flag that sets it: the one place where Python names meet flags.
CLI_FLAGS = {
    "dataset": "dataset", "data_root": "data-root", "encoder": "encoder", "epochs": "epochs",
    "batch_size": "batch-size", "temperature": "temperature", "lr": "lr", "device": "device", "out_dir": "out",
    "seed": "seed", "n_train": "n-train", "n_test": "n-test", "optimizer": "optimizer", "method": "method",
    "precision": "precision", "view_size": "view-size",
}
# Settings that are a flag of their own rather than a field's value.
_CLI_SWITCHES = {"TrainConfig.umap=False": "--no-umap", "TrainConfig.umap=True": "--umap",
                 "TrainConfig.progress=False": "--quiet", "resume=True": "--resume", "resume=False": "--overwrite"}


def cli_words(message: str) -> str:
    """A message of the package in the command line's words: ``TrainConfig.lr`` becomes ``--lr``.

    The package names what to change as Python spells it (``TrainConfig.lr=500.0``, ``resume=True``);
    the ``crl`` user set flags, so every error the CLI prints passes through here. Fields without a
    flag keep their Python name.

    Example:
        >>> cli_words("TrainConfig.lr=500.0 must be <= 100; lower TrainConfig.lr, or train without resume=True")
        '--lr 500.0 must be <= 100; lower --lr, or train without --resume'
        >>> cli_words("device='tpu' is not a device name")
        "--device 'tpu' is not a device name"
    """
    for python, flag in _CLI_SWITCHES.items():
        message = message.replace(python, flag)

    def flag(match: re.Match) -> str:
        field, assigned = match.group(1), match.group(2)
        if field not in CLI_FLAGS:
            return match.group(0)
        return f"--{CLI_FLAGS[field]}" + (" " if assigned else "")

    message = re.sub(r"TrainConfig\.(\w+)(=?)", flag, message)
    return re.sub(r"(?<![\w.])device=", "--device ", message)  # crl_helpers.device.pick_device names its argument

# Writing failed for a reason the user can fix (not a bug): no space, a quota, a file-size limit, no permission.
_DISK_ERRORS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


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
    t.add_argument("--threads", type=_int_at_least(1, 1),
                   help="CPU threads for training and evaluation (default: measured while training, from 1 up to "
                        "the CPUs this process may use; OMP_NUM_THREADS also fixes it)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    i = sub.add_parser("instructor", help="write the instructor version of the notebooks (solutions inline)",
                       description="Write every course notebook with the reference solution of each exercise "
                                   "inline, made from the same notebooks (crl_helpers.exercises.instructor).")
    i.add_argument("--notebooks", default="notebooks", help="the course's notebook folder (default: notebooks)")
    i.add_argument("--out", default="instructor", help="output folder (default: instructor)")
    i.add_argument("--overwrite", action="store_true",
                   help="replace notebooks in --out that differ from the instructor version (a learner's edits)")
    site = sub.add_parser("site", help="build the course as a static HTML site (notebooks executed in a tier)",
                          description="Execute the learner's notebooks in a tier (copies, in build/site-<tier>/, "
                                      "which caches runs for the next build) and render them, with a home page "
                                      "that says how to start and the lecture page, into a static site that "
                                      "loads nothing from another host (the crl_site package; needs a clone and "
                                      "pip install -e \".[site]\").")
    lecture = sub.add_parser("lecture", help="write the course's interactive explorers as one static page, no code",
                             description="Execute the notebooks as crl site does (reusing its build folder) and "
                                         "write a page holding only the explorers that compute in the browser "
                                         "(temperature, UMAP, run comparison), for showing in a lecture; it opens "
                                         "from file:// offline (crl_site.build_lecture; needs a clone and "
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
    r = sub.add_parser("reference", help="make the longer reference runs of an experiment that the notebooks plot",
                       description="Train every setting of one of the course's experiments at every seed for more "
                                   "epochs than a notebook's tier, probing the encoder every few epochs, and write "
                                   "the per-epoch metrics with this command, the date and the machine to a JSON "
                                   "file (crl_helpers.reference_runs); an interrupted file is continued.")
    r.add_argument("experiment", help="augmentation, temperature or negatives")
    r.add_argument("--epochs", type=_int_at_least(1, 40), default=40, help="epochs per run (default: 40)")
    r.add_argument("--seeds", type=_int_at_least(0, 0, high=2**32), nargs="+", default=[0, 1, 2],
                   help="one run per seed (default: 0 1 2)")
    r.add_argument("--probe-every", type=_int_at_least(1, 5), default=5,
                   help="kNN probes after epoch 1, every this many epochs and after the last (default: 5)")
    r.add_argument("--out", help="the JSON file (default: reference/<experiment>.json)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _reference(args: argparse.Namespace, argv: list[str] | None) -> int:
    from crl_helpers.reference_runs import make_reference

    out = args.out or str(Path("reference") / f"{args.experiment}.json")
    command = " ".join(["crl", *(sys.argv[1:] if argv is None else argv)])
    try:
        ref = make_reference(args.experiment, args.epochs, args.seeds, args.probe_every, out, command=command,
                             progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ncrl: interrupted; the finished runs are kept in {out}; the same command continues it",
              file=sys.stderr)
        return 130
    _print_out(f"crl: {len(ref['settings'])} settings x {len(ref['seeds'])} seeds, {ref['epochs']} epochs each, "
               f"written to {out} ({ref['seconds'] / 60:.1f} min of training)")
    return 0


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` that the parsed flags describe (raises ValueError on bad values)."""
    from crl_helpers.train import PRESETS

    if args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    changes = {field: getattr(args, flag.replace("-", "_")) for field, flag in CLI_FLAGS.items()
               if getattr(args, flag.replace("-", "_")) is not None}
    if args.umap is not None:
        changes["umap"] = args.umap
    if args.quiet:
        changes["progress"] = False
    return replace(PRESETS[args.preset], **changes)  # TrainConfig's messages reach the user through cli_words


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
    # A finished or interrupted run is hours of compute: never replace its files by accident.
    from crl_helpers.run_dir import check_outputs

    check_outputs(out, resume, overwrite)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit) while training: handled as Ctrl-C, so files are cleaned up."""


@contextlib.contextmanager
def _sigterm_interrupts():
    # SIGTERM's default action ends the process on the spot, leaving a half-written checkpoint.pt.<hex>.tmp;
    # raised as an exception it runs the same clean-up as Ctrl-C. Only the main thread may set handlers.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_out(text: str, out: str | None = None) -> None:
    """Print ``text`` on stdout; a closed pipe or an encoding that cannot show it never fails the run.

    After hours of training, printing must not be what fails: a closed pipe (``crl train ... | head``)
    or a stdout that cannot encode a non-ASCII ``--out`` costs nothing but the summary, which
    ``metrics.json`` holds (``out`` names it).
    """
    try:
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        print(text.encode(encoding, "backslashreplace").decode(encoding), flush=True)
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # Python would report the pipe again when it flushes at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if out is not None:
            with contextlib.suppress(OSError):
                print(f"crl: note: stdout was closed before the summary; the run finished, see {out}/metrics.json",
                      file=sys.stderr)


def _fail(message: str, rank0: bool) -> None:
    # Under torchrun every rank has the same flags, data and checkpoint, hence the same error: rank 0 says it.
    if rank0:
        message = re.sub(r"\x1b\[[0-9;]*m", "", message)  # torch's messages carry terminal bold codes
        with contextlib.suppress(OSError):  # a closed stderr (crl train 2>&1 | head) has no one to tell
            print(f"crl: error: {' '.join(message.split())}", file=sys.stderr)


def _instructor(notebooks: str, out: str, overwrite: bool = False) -> int:
    from crl_helpers.exercises.instructor import write_instructor_version

    if out.strip() and Path(out).resolve() == Path(notebooks).resolve():
        raise ValueError(f"--out {out!r} is the notebook folder itself; choose another folder, e.g. instructor")
    written = write_instructor_version(notebooks, out, overwrite=overwrite)
    _print_out(f"crl: wrote {len(written)} instructor notebooks (solutions inline) to {out}/")
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
    # Publishing lives in its own package (crl_site, the [site] extra), imported only here. Its checks (a clone
    # around it, its packages, --out, one build per build folder) run before any notebook does.
    try:
        from crl_site import SiteError, build_lecture, build_site
    except ImportError as err:
        raise ValueError(f"crl {'lecture' if lecture else 'site'} needs {err.name}: from a clone of the course, "
                         f"pip install -e \".[site]\"") from None
    try:
        result = (build_lecture if lecture else build_site)(tier, out, notebooks_dir=notebooks)
    except SiteError as err:  # a notebook that raised, or the renderer: not bad input, still one line
        _fail(str(err), True)
        return 1
    for warning in result.warnings:
        print(f"crl: warning: {warning}", file=sys.stderr)
    what = "lecture page" if lecture else "site"
    print(f"crl: {what} ({tier} tier, {len(result.executed)} notebooks) written to {out}/; open {result.index}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``crl``; returns the exit status (0 done, 2 bad input, 1 unexpected error, 130 interrupted,
    143 terminated by SIGTERM).

    Every error is one line on stderr; ``--debug`` shows the traceback instead.
    """
    from crl_helpers.distributed import is_main_process

    rank0 = is_main_process()
    out, config = None, None
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "instructor":
            return _instructor(args.notebooks, args.out, args.overwrite)
        if args.command == "assign":
            return _assign(args)
        if args.command == "grade":
            return _grade(args)
        if args.command == "reference":
            return _reference(args, argv)
        if args.command in ("site", "lecture"):
            return _site(args.tier, args.out, args.notebooks, lecture=args.command == "lecture")
        from crl_helpers.device import pick_device
        from crl_helpers.report import train_and_evaluate

        config = config_from_args(args)
        out = config.out_dir
        from crl_helpers.distributed import check_torchrun_environment

        check_torchrun_environment()  # stray or malformed RANK / WORLD_SIZE: refused before any folder is made
        if config.dataset == "folder" and Path(out).resolve().is_relative_to(Path(config.data_root).resolve()):
            raise ValueError(f"--out {out} is inside --data-root {config.data_root}, whose sub-folders are the "
                             f"classes: the run's folder would be read as a class of images; choose an --out "
                             f"outside it")
        device = pick_device(config.device)  # --device cuda without a GPU fails here, before any folder is made
        if device.type == "cpu" and config.encoder != "convnet" and rank0:
            # Not an error (it works, and --n-train makes it small), but hours for a full dataset on a laptop.
            # Measured on 2 cores: ResNet-18 ~16 source images/s, the convnet ~1,200.
            print(f"crl: note: --encoder {config.encoder} on the CPU is about 75x slower than the default convnet "
                  "(2 cores: a CIFAR-10 epoch takes about 50 minutes); the progress bar shows the estimate. "
                  "For a quick CPU run: --encoder convnet, or --n-train 2000", file=sys.stderr)
        if rank0 and config.progress:  # --quiet prints nothing but the summary
            from crl_helpers.device import describe_precision

            _print_out(f"crl: {cli_words(describe_precision(device, config.precision))}")
        _check_fresh(out, args.resume, args.overwrite)
        with _sigterm_interrupts():
            result = train_and_evaluate(config, resume=args.resume, threads=args.threads)
        if rank0:
            _print_out(_summary(result.metrics, out, config.umap), out)
    except KeyboardInterrupt as err:
        if rank0:
            saved = out is not None and (Path(out) / "checkpoint.pt").exists()
            where = (f"the last finished epoch is saved in {out}/checkpoint.pt; continue with: "
                     f"crl train --resume --out {out} (and the same flags)" if saved
                     else "no epoch finished, nothing was saved")
            lead = "\n" if config is not None and config.progress else ""  # end the progress bar's line
            how = "terminated (SIGTERM)" if isinstance(err, _Terminated) else "interrupted"
            print(f"{lead}crl: {how}; {where}", file=sys.stderr)
        return 143 if isinstance(err, _Terminated) else 130
    except Exception as err:
        import torch

        from crl_helpers.checkpoint import CheckpointError
        from crl_helpers.image_data import DatasetUnavailable
        from crl_helpers.train import NonFiniteLossError

        if debug:
            raise
        if isinstance(err, (ValueError, DatasetUnavailable, CheckpointError, NonFiniteLossError)):
            _fail(cli_words(str(err)), rank0)
            return 2
        if isinstance(err, OSError) and err.errno in _DISK_ERRORS:  # a full disk, a quota, a read-only folder
            kept = (f"; the last finished epoch is kept in {out}/checkpoint.pt"
                    if out and (Path(out) / "checkpoint.pt").exists() else "")
            _fail(f"could not write {err.filename or out} ({err.strerror}): free space or choose another --out"
                  f"{kept}", rank0)
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
    return 0


if __name__ == "__main__":  # python -m crl_helpers.cli
    sys.exit(main())
