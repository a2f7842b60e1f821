"""BatchNorm statistics are averaged over the processes before evaluation, so that every process evaluates
the same model and the counts do not depend on the process count."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import torch

from vmb.engine import distributed
from vmb.engine.distributed import free_port

WORKER = pathlib.Path(__file__).with_name("dist_bn_worker.py")
REPO_ROOT = WORKER.parents[2]



def run_worker(nproc: int, weights: pathlib.Path, args: list[str], env: dict) -> dict:
    """dist_bn_worker.py in `nproc` processes (torchrun for 2 or more); rank 0's JSON report."""
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                                      "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    proc = subprocess.run([sys.executable, *launcher, str(WORKER), str(weights), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_synced_buffers_make_counts_independent_of_process_count(tiny_videos_dir, tmp_path, smoke_config,
                                                                  tiny_train_args, child_env):
    # TEST.BATCH_SIZE 1: one clip per forward pass in every process, and one thread in every process
    # (dist_bn_worker.py), so both runs compute each video's logits with the same kernels in the same order,
    # and the same model gives the same logits to the bit, on any host CPU.
    args = [str(smoke_config), *tiny_train_args(tiny_videos_dir, tmp_path / "out", "TEST.BATCH_SIZE", "1")]
    weights = tmp_path / "synced.pt"
    two = run_worker(2, weights, args, child_env)
    assert two["world_size"] == 2 and two["total"] == 7
    assert two["spread_before"] > 1e-4  # trained on different sub-batches: different statistics
    assert two["spread_after"] == 0.0  # identical on both processes
    assert two["error_from_mean"] < 1e-6  # and their average
    one = run_worker(1, weights, args, child_env)  # rank 0's synced weights, one process, the whole set
    assert one["world_size"] == 1
    assert (one["correct"], one["total"]) == (two["correct"], two["total"])
    # Finer than the counts: each video's logits, from whichever process evaluated it, are those of the one
    # model (without the sync, the videos of process 1 got other logits).
    assert one["logits"] == two["logits"]


def test_one_process_leaves_buffers_alone():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    model(torch.randn(2, 3, 2, 4, 4))
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    distributed.sync_bn_buffers(model)
    assert all(torch.equal(buffer, before[name]) for name, buffer in model.named_buffers())
