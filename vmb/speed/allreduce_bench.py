"""All-reduce bandwidth of the visible GPUs, as nccl-tests reports it; one process per GPU under torch.distributed.run:

    python -m torch.distributed.run --standalone --nproc_per_node K -m vmb.speed.allreduce_bench --json FILE

Each size (float32 tensors) is all-reduced (sum) `--warmup` times untimed, then `--iters` times between two
synchronisations; the time of one all-reduce is the slowest rank's mean. nccl-tests' definitions: algorithm
bandwidth algbw = bytes / time, bus bandwidth busbw = algbw * 2 (K - 1) / K (what each link carries in a ring
all-reduce over K ranks, comparable with the hardware's link bandwidth). Rank 0 writes the JSON. On the CPU
(gloo) the same code runs, for tests.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist

GB = 1e9  # nccl-tests' GB/s are 10^9 bytes per second


def bandwidth_gbps(size_bytes: int, seconds: float, world_size: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s of one all-reduce of `size_bytes` taking `seconds` over `world_size` ranks."""
    algbw = size_bytes / seconds / GB
    return algbw, algbw * 2 * (world_size - 1) / world_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_all_reduce(tensor: torch.Tensor, warmup: int, iters: int) -> float:
    """Seconds of one all-reduce of `tensor`: the mean over `iters` after `warmup`, the slowest rank's."""
    for _ in range(warmup):
        dist.all_reduce(tensor)
    _sync(tensor.device)
    dist.barrier()
    began = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(tensor)
    _sync(tensor.device)
    seconds = torch.tensor([(time.perf_counter() - began) / iters], dtype=torch.float64, device=tensor.device)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    return float(seconds.item())


def build_parser() -> argparse.ArgumentParser:
    """The script's command line."""
    parser = argparse.ArgumentParser(description="All-reduce algorithm and bus bandwidth (nccl-tests' definitions).")
    parser.add_argument("--sizes-mib", default="64,256",
                        help="tensor sizes in MiB, comma-separated (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed all-reduces per size (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=20, help="timed all-reduces per size (default: %(default)s)")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when visible (NCCL), else cpu (gloo)")
    parser.add_argument("--json", type=Path, required=True, help="where rank 0 writes the results")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """One rank of the measurement (RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous from the launcher)."""
    args = build_parser().parse_args(argv)
    device_type = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        world_size, rows = dist.get_world_size(), []
        for size_mib in (float(s) for s in args.sizes_mib.split(",") if s.strip()):
            tensor = torch.zeros(int(size_mib * 2**20) // 4, dtype=torch.float32, device=device)
            size_bytes = tensor.numel() * tensor.element_size()
            seconds = time_all_reduce(tensor, args.warmup, args.iters)
            algbw, busbw = bandwidth_gbps(size_bytes, seconds, world_size)
            rows.append({"size_mib": size_mib, "size_bytes": size_bytes, "time_ms": seconds * 1e3,
                         "algbw_gbps": algbw, "busbw_gbps": busbw})
            del tensor
        if dist.get_rank() == 0:
            document = {"world_size": world_size, "backend": backend, "device": device.type, "dtype": "float32",
                        "op": "sum", "warmup": args.warmup, "iters": args.iters, "rows": rows,
                        "nccl_version": ".".join(map(str, torch.cuda.nccl.version())) if backend == "nccl" else None}
            args.json.write_text(json.dumps(document, indent=1) + "\n")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
