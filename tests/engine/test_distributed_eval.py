"""Validation counts are exact across processes: 1 and 2 (and 3) processes count the same correct videos."""
import json
import pathlib
import subprocess
import sys

from vmb.engine.distributed import free_port

WORKER = pathlib.Path(__file__).with_name("dist_eval_worker.py")
REPO_ROOT = WORKER.parents[2]


def _evaluate(nproc: int, args: list[str], env: dict) -> dict:
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                                      "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    proc = subprocess.run([sys.executable, *launcher, str(WORKER), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_val_counts_agree_across_process_counts(tiny_videos_dir, tmp_path, smoke_config, tiny_train_args,
                                                child_env):
    args = [str(smoke_config), *tiny_train_args(tiny_videos_dir, tmp_path / "out", "TRAIN.BATCH_SIZE", "6")]
    val_size = sum(1 for line in (tiny_videos_dir / "val.csv").read_text().splitlines() if line.strip())
    assert val_size % 2 == 1  # an odd split: padding to equal shards would double-count a video
    results = {n: _evaluate(n, args, child_env) for n in (1, 2, 3)}
    for n, result in results.items():
        assert result["world_size"] == n
        assert result["total"] == val_size
    assert results[1]["correct"] == results[2]["correct"] == results[3]["correct"]
