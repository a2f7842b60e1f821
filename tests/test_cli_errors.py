"""User mistakes end `tools/run_net.py` with one `error: ...` line naming the file or key, never a traceback.

Every case runs the real command line in a child process. The cases are independent, so they are started
together (a few at a time) by a module fixture and each test checks its own result.
"""
from __future__ import annotations

import concurrent.futures
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from vmb.record.runlog import RunLog

from vmb.record.schema import RUN_START, RUN_STOP

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN_NET = REPO_ROOT / "tools" / "run_net.py"


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(src, dst))


def _build_cases(root: pathlib.Path, data: pathlib.Path, args, smoke_config, corrupt_video) -> dict:
    """name -> (argv after run_net.py, [strings the error line must contain])."""
    cases = {}

    def tiny(name, data_dir, *extra, out=None):
        return ["--cfg", str(smoke_config), *args(data_dir, out or root / f"out_{name}", *extra)]

    # Config mistakes: found before anything is imported or written.
    missing_cfg = root / "missing.yaml"
    cases["missing_config"] = (["--cfg", str(missing_cfg), "OUTPUT_DIR", str(root / "out_missing_config")],
                               [str(missing_cfg)])
    cases["unknown_key"] = (tiny("unknown_key", data, "SOLVER.BASE_RL", "0.1"), ["SOLVER.BASE_RL", "SOLVER.BASE_LR"])
    cases["wrong_type"] = (tiny("wrong_type", data, "TRAIN.BATCH_SIZE", "abc"), ["TRAIN.BATCH_SIZE"])
    bad_yaml = root / "bad.yaml"
    bad_yaml.write_text("TRAIN:\n  BATCH_SIZE: 4\n  EVAL_PERIOD: [1\n")
    cases["invalid_yaml"] = (["--cfg", str(bad_yaml), "OUTPUT_DIR", str(root / "out_invalid_yaml")], [f"{bad_yaml}:"])
    cases["odd_overrides"] = (tiny("odd_overrides", data, "SOLVER.MAX_EPOCH"), ["SOLVER.MAX_EPOCH"])

    # Data mistakes: found when the run reads its data.
    cases["missing_data_dir"] = (tiny("missing_data_dir", pathlib.Path("/nonexistent")), ["/nonexistent"])

    no_csv = _copy(data, root / "data_no_csv")
    (no_csv / "val.csv").unlink()
    cases["missing_csv"] = (tiny("missing_csv", no_csv), [str(no_csv / "val.csv")])

    no_video = _copy(data, root / "data_no_video")
    victim = no_video / "train" / "class1" / "002.mp4"
    victim.unlink()
    cases["missing_video"] = (tiny("missing_video", no_video), [str(victim)])

    empty = _copy(data, root / "data_empty_split")
    (empty / "val.csv").write_text("")
    cases["empty_split"] = (tiny("empty_split", empty), [str(empty / "val.csv"), "empty"])

    bad_label = _copy(data, root / "data_bad_label")
    lines = (bad_label / "train.csv").read_text().splitlines()
    lines[5] = lines[5].rsplit(" ", 1)[0] + " 7"
    (bad_label / "train.csv").write_text("\n".join(lines) + "\n")
    cases["label_out_of_range"] = (tiny("label_out_of_range", bad_label), [f"{bad_label / 'train.csv'}:6:", "7"])

    # A corrupt validation video is found at the first evaluation, in the main process or in a worker.
    for workers in (0, 1):
        corrupt = _copy(data, root / f"data_corrupt_val_{workers}")
        bad = corrupt / "val" / "class2" / "001.mp4"
        corrupt_video(bad)
        cases[f"corrupt_val_video_workers{workers}"] = (
            tiny(f"corrupt_val_{workers}", corrupt, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0.25",
                 "DATA_LOADER.NUM_WORKERS", str(workers)), [str(bad)])

    # Impossible decoding setups: refused before anything is written (no run_start, nothing to resume).
    cases["gpu_decoding_with_workers"] = (
        tiny("gpu_decoding_with_workers", data, "DATA.DECODING_BACKEND", "torchcodec_cuda", "DATA_LOADER.NUM_WORKERS",
             "2"), ["DATA.DECODING_BACKEND torchcodec_cuda", "DATA_LOADER.NUM_WORKERS 0"])
    cases["gpu_decoding_on_the_cpu"] = (
        tiny("gpu_decoding_on_the_cpu", data, "DATA.DECODING_BACKEND", "torchcodec_cuda", "DATA_LOADER.NUM_WORKERS",
             "0"), ["DATA.DECODING_BACKEND torchcodec_cuda", "CUDA", "pyav"])

    # Output folder mistakes.
    a_file = root / "a_file"
    a_file.write_text("not a folder")
    cases["output_dir_not_writable"] = (tiny("unused", data, out=a_file / "x"), ["OUTPUT_DIR", str(a_file / "x")])

    finished = root / "finished_run"
    finished.mkdir()
    log = RunLog(finished / "run_log.txt", True)
    log.start(RUN_START)
    log.event("eval_accuracy", 50.0, epoch_num=1.0)
    log.end(RUN_STOP, status="success", epoch_num=1.0)
    log.close()
    (finished / "result.json").write_text(json.dumps({"status": "success"}))
    cases["output_dir_finished_run"] = (tiny("unused", data, out=finished), [str(finished), "finished run"])
    return cases


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_NET), *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


CASE_NAMES = ["missing_config", "unknown_key", "wrong_type", "invalid_yaml", "odd_overrides", "missing_data_dir",
              "missing_csv", "missing_video", "empty_split", "label_out_of_range", "corrupt_val_video_workers0",
              "corrupt_val_video_workers1", "gpu_decoding_with_workers", "gpu_decoding_on_the_cpu",
              "output_dir_not_writable", "output_dir_finished_run"]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, tiny_videos_dir, tiny_train_args, smoke_config, corrupt_video, child_env):
    root = tmp_path_factory.mktemp("cli_errors")
    cases = _build_cases(root, tiny_videos_dir, tiny_train_args, smoke_config, corrupt_video)
    assert sorted(cases) == sorted(CASE_NAMES)
    finished_log = (root / "finished_run" / "run_log.txt").read_text()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, argv, child_env) for name, (argv, _) in cases.items()}
        results = {name: (future.result(), cases[name][1]) for name, future in futures.items()}
    results["_root"] = root
    results["_finished_log"] = finished_log
    return results


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_NAMES)
def test_error_is_one_line(cli_results, case):
    proc, needles = cli_results[case]
    report = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode != 0, report
    assert "Traceback" not in proc.stderr, report
    lines = proc.stderr.splitlines()
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1, report
    for needle in needles:
        assert needle in error_lines[0], f"{needle!r} not in {error_lines[0]!r}"
    # Nothing else on stderr: no warnings, no progress bars, no second message.
    assert lines == error_lines, report


@pytest.mark.slow
def test_exit_status_is_2(cli_results):
    for case in CASE_NAMES:
        assert cli_results[case][0].returncode == 2, case


@pytest.mark.slow
def test_finished_run_is_left_untouched(cli_results):
    finished = cli_results["_root"] / "finished_run"
    assert (finished / "run_log.txt").read_text() == cli_results["_finished_log"]
    assert json.loads((finished / "result.json").read_text()) == {"status": "success"}
    assert sorted(p.name for p in finished.iterdir()) == ["result.json", "run_log.txt"]


@pytest.mark.slow
def test_config_errors_write_nothing(cli_results):
    root = cli_results["_root"]
    for case in ("missing_config", "unknown_key", "wrong_type", "invalid_yaml", "odd_overrides"):
        assert not (root / f"out_{case}").exists(), case


@pytest.mark.slow
def test_impossible_decoding_setups_leave_nothing_to_resume(cli_results):
    """A GPU decoding backend with workers, or without CUDA, stops before OUTPUT_DIR gets a run log: no run_start is
    logged and a corrected rerun starts afresh."""
    root = cli_results["_root"]
    for case in ("gpu_decoding_with_workers", "gpu_decoding_on_the_cpu"):
        assert not (root / f"out_{case}" / "run_log.txt").exists(), case


@pytest.mark.slow
def test_corrupt_val_video_stops_the_run_before_run_start(cli_results):
    # The untimed pre-flight opens every listed video: an unreadable one stops the run before the clock starts.
    out = cli_results["_root"] / "out_corrupt_val_0"
    log = (out / "run_log.txt").read_text()
    assert '"key": "init_start"' in log
    assert '"key": "run_start"' not in log
    assert not (out / "result.json").exists()


def test_one_line_unwraps_data_loader_worker_errors():
    from vmb.errors import one_line
    from vmb.errors import DataError

    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                        '  File "x.py", line 1, in f\n    raise DataError(...)\n'
                        "vmb.errors.DataError: /data/val/a.mp4: cannot decode video (InvalidDataError: bad)\n")
    assert one_line(wrapped) == "/data/val/a.mp4: cannot decode video (InvalidDataError: bad)"
    assert one_line(DataError("first line\nsecond line")) == "first line"
    assert one_line(DataError("")) == "DataError"


def test_run_net_in_process_reports_config_error(capsys):
    from vmb.cli.run_net import main as run_net

    assert run_net(["--cfg", "does/not/exist.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and err.startswith("error: ") and "does/not/exist.yaml" in err


def test_run_net_exit_status_says_whether_the_target_was_reached(tmp_path, capsys):
    from vmb.cli.run_net import run_status

    assert run_status(tmp_path) == 0  # no result.json here (another machine's rank): rank 0 decides
    (tmp_path / "result.json").write_text(json.dumps({"status": "success"}))
    assert run_status(tmp_path) == 0
    (tmp_path / "result.json").write_text(json.dumps({"status": "aborted"}))
    assert run_status(tmp_path) == 1
    assert "target not reached" in capsys.readouterr().err
