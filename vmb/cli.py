"""Command-line entry points (tools/*.py are thin wrappers around these)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from vmb.errors import VMBError


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error; for an error re-raised from a DataLoader worker, the original
    message rather than the worker's traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text.splitlines()[0] if text else type(exc).__name__


def exit_on_error(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Run `fn`; a VMBError becomes `error: <one line>` on stderr and exit status 2."""

    def wrapper(*args, **kwargs) -> int:
        try:
            return fn(*args, **kwargs) or 0
        except VMBError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
            return 130

    return wrapper


def _config_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default="configs/smoke/X3D.yaml",
                        help="YAML config (default: the smoke benchmark, configs/smoke/X3D.yaml)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. NUM_GPUS 4")
    return parser


def _train_process(cfg) -> None:
    """Entry of each training process: a user error ends that process with one line, not a traceback."""
    from vmb.engine.train import run

    result: dict = {}
    status = exit_on_error(lambda: result.update(run(cfg) or {}))()
    if status:
        sys.exit(status)
    if result:
        print(f"{result['benchmark'] or result['arch']}: {result['status']} in {result['time_to_target_s']:.1f} s "
              f"(best top-1 {result['best_top1']:.2f}%, target {result['target_top1']:.2f}%, "
              f"{result['epochs']:.2f} epochs); results in {cfg.OUTPUT_DIR}/result.json")


@exit_on_error
def run_net(argv: Sequence[str] | None = None) -> int:
    """`tools/run_net.py`: train a config to its target, timed."""
    from vmb.config import load_config
    from vmb.engine import distributed

    args = _config_parser("Train a video model to its target top-1 (timed).").parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)
    distributed.launch(distributed.processes_to_spawn(cfg.NUM_GPUS), _train_process, cfg)
    return run_status(Path(cfg.OUTPUT_DIR))


def run_status(out_dir: Path) -> int:
    """run_net's exit status for a finished run: 0 if it reached its target, 1 if it stopped without (status
    "aborted", e.g. at SOLVER.MAX_EPOCH). Read from result.json, which rank 0 writes; a process that cannot
    see it (another machine) reports 0 and leaves the verdict to rank 0."""
    from vmb.record.runlog import RESULT

    result = out_dir / RESULT
    if result.is_file() and json.loads(result.read_text()).get("status") != "success":
        print(f"target not reached: see {result}", file=sys.stderr)
        return 1
    return 0


@exit_on_error
def model_info(argv: Sequence[str] | None = None) -> int:
    """`tools/model_info.py`: parameters and GFLOPs per view of a config's model, or of the whole zoo."""
    from vmb.config import load_config
    from vmb.models.build import build_model
    from vmb.models.info import count_parameters, gflops_per_view

    parser = _config_parser("Print a config's model parameters and GFLOPs per view (--zoo: every zoo model).")
    parser.add_argument("--zoo", action="store_true", help="list the model zoo (vmb/models/zoo.py) instead")
    args = parser.parse_args(argv)
    if args.zoo:
        return _zoo_info()
    cfg = load_config(args.cfg_file, args.opts)
    model = build_model(cfg)
    frames = cfg.DATA.NUM_FRAMES
    print(f"config          {args.cfg_file}")
    print(f"arch            {cfg.MODEL.ARCH} ({cfg.MODEL.NUM_CLASSES} classes)")
    print(f"parameters      {count_parameters(model) / 1e6:.3f} M")
    for name, crop in (("train", cfg.DATA.TRAIN_CROP_SIZE), ("test", cfg.DATA.TEST_CROP_SIZE)):
        print(f"GFLOPs/view     {gflops_per_view(model, frames, crop):.2f} ({name} view {frames}x{crop}x{crop})")
    return 0


def _zoo_info() -> int:
    """One line per zoo model: its view, parameters (and PyTorchVideo's published count), fvcore GFLOPs."""
    from vmb.models.info import count_parameters, gflops
    from vmb.models.zoo import ZOO

    print(f"{'model':14s} {'arch':9s} {'view (T x H x W)':17s} {'params (M)':>10s} {'published':>9s} "
          f"{'GFLOPs/view':>11s}")
    for zoo_model in ZOO.values():
        model = zoo_model.build()
        view = f"{zoo_model.num_frames} x {zoo_model.crop_size} x {zoo_model.crop_size}"
        print(f"{zoo_model.name:14s} {zoo_model.arch:9s} {view:17s} {count_parameters(model) / 1e6:10.2f} "
              f"{zoo_model.published_params_m:9.2f} {gflops(model, zoo_model.example_input(1)):11.2f}", flush=True)
    return 0


@exit_on_error
def score(argv: Sequence[str] | None = None) -> int:
    """`tools/score.py`: check runs (or submission packages) and score them against a reference.

    Exit status 0 for a valid set, 1 for an invalid one, 2 for a usage error.
    """

    parser = argparse.ArgumentParser(description="Check VMB runs or submission packages, and score them.")
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, or submission folders (with MANIFEST.sha256)")
    parser.add_argument("--reference", type=Path, help="reference JSON (see references/); without it, times only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--report", type=Path, metavar="DIR", help="also write report.md, report.html and plots")
    parser.add_argument("--make-reference", action="store_true", help="write a reference from these runs to -o")
    parser.add_argument("-o", "--output", type=Path, help="the reference file written by --make-reference")
    parser.add_argument("--cost-per-hour", type=float, metavar="PRICE",
                        help="price of one hour of the submission's accelerator system: adds cost to target")
    args = parser.parse_args(argv)
    if args.cost_per_hour is not None and not args.cost_per_hour > 0:
        parser.error("--cost-per-hour must be a positive price")
    if args.make_reference and (args.output is None or args.reference is not None):
        parser.error("--make-reference needs -o FILE and no --reference")
    # Imported after parsing, so that a usage error answers at once.
    import shlex

    from vmb.scoring import assess, package, reference, report

    ref = reference.load_reference(args.reference) if args.reference else None
    run_dirs, set_reasons = package.collect_runs(args.paths)
    assessment = assess.assess(run_dirs, ref, set_reasons, args.cost_per_hour)
    print(json.dumps(report.to_json(assessment), indent=2) if args.json else report.format_text(assessment))
    if args.report:
        written = report.write_report(assessment, args.report)
        print(f"report: {', '.join(str(p) for p in written)}", file=sys.stderr if args.json else sys.stdout)
    if args.make_reference:
        command = "python tools/score.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        reference.write_reference(reference.make_reference(assessment, command), args.output)
        print(f"reference written to {args.output}", file=sys.stderr if args.json else sys.stdout)
    return 0 if assessment.valid else 1


@exit_on_error
def package(argv: Sequence[str] | None = None) -> int:
    """`tools/package.py`: gather runs into a submission folder and tarball that tools/score.py verifies."""

    from vmb.scoring.package import make_package

    parser = argparse.ArgumentParser(description="Package VMB runs into a verifiable submission folder.")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (OUTPUT_DIR of each run)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="submission folder to create")
    args = parser.parse_args(argv)
    tarball = make_package(args.runs, args.output)
    print(f"packaged {len(args.runs)} run(s) into {args.output}/ and {tarball}")
    print(f"verify with: python tools/score.py {args.output}")
    return 0


@exit_on_error
def make_synthetic(argv: Sequence[str] | None = None) -> int:
    """`tools/make_synthetic.py`: write a synthetic dataset (the smoke data, or a Kinetics20-shaped dry-run set)."""
    import os
    import time

    from vmb.data.synthetic import PROFILE_DIRS, PROFILES, ensure_synthetic_dataset, profile_spec

    parser = argparse.ArgumentParser(description="Write a synthetic 20-class motion video dataset (Kinetics layout).")
    parser.add_argument("--profile", choices=list(PROFILES), default="smoke",
                        help="smoke: 96x72 at 15 fps, the smoke benchmark's data (default); kinetics: Kinetics20's "
                             "shape (456x256, 10 s at 30 fps, the prepared all-intra format) for configs/dryrun/")
    defaults = ", ".join(f"{folder} for {profile}" for profile, folder in PROFILE_DIRS.items())
    parser.add_argument("--out", help=f"dataset folder (default: {defaults})")
    parser.add_argument("--train-per-class", type=int, help="training videos per class (default: the profile's, 24)")
    parser.add_argument("--val-per-class", type=int, help="validation videos per class (default: the profile's, 8)")
    parser.add_argument("--seconds", type=float, help="clip length (default: the profile's)")
    parser.add_argument("--seed", type=int, help="dataset seed (default: 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes that render and encode videos (default: the CPU count, %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset with another spec")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    spec = profile_spec(args.profile, args.train_per_class, args.val_per_class, args.seconds, args.seed)
    try:
        out = ensure_synthetic_dataset(args.out or PROFILE_DIRS[args.profile], spec, force=args.force,
                                       workers=args.workers, progress=True)
    except KeyboardInterrupt:
        print("interrupted: the dataset folder is as it was before this command", file=sys.stderr)
        return 130
    print(f"synthetic dataset ready in {out}: {spec.num_classes} classes, "
          f"{spec.train_per_class * spec.num_classes} train / {spec.val_per_class * spec.num_classes} val videos, "
          f"{spec.width}x{spec.height}, {spec.num_frames} frames @ {spec.fps} fps ({time.perf_counter() - start:.1f}s)")
    return 0


@exit_on_error
def prepare_kinetics20(argv: Sequence[str] | None = None) -> int:
    """`tools/prepare_kinetics20.py`: build Kinetics20 from a Kinetics-400 copy (resumable; Ctrl-C is safe)."""

    from vmb.data.prepare import build_kinetics20, default_workers

    parser = argparse.ArgumentParser(description="Build Kinetics20 (20 Kinetics-400 classes, re-encoded to the "
                                                 "benchmark's format) from the CVDF Kinetics-400 copy.")
    parser.add_argument("--k400", type=Path, required=True,
                        help="the Kinetics-400 copy: annotations/{train,val}.csv and the clips, at any depth")
    parser.add_argument("--out", type=Path, default=Path("data/kinetics20"), help="output folder (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="clips prepared in parallel, one process each (default: the CPU cores, %(default)s)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    print(build_kinetics20(args.k400, args.out, args.workers).format())
    return 0


@exit_on_error
def bench_loader(argv: Sequence[str] | None = None) -> int:
    """`tools/bench_loader.py`: the format and loader study (training clips/s per core, side by side)."""
    from vmb.speed.cells import build_parser, check_args
    from vmb.speed.loader_bench import run_study

    args = build_parser().parse_args(argv)
    check_args(args)
    run_study(args)
    return 0
