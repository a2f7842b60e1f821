"""Does device decoding overlap the training step? Side by side on this machine, with a stand-in device decoder.

`python benchmarks/device_overlap.py [--cfg configs/smoke/X3D.yaml] [--step-ms 0] [--rounds 5]`

The on-device backends (torchcodec_cuda, dali) decode in a thread of the training process one batch ahead
(vmb.data.device_loader.DeviceBatches) while the device computes the step. Without a GPU the decoder is PyAV's
batch decoder behind the same thread, and the step is a host sleep standing for the time the host waits on the
device (on a GPU the host only queues kernels, then waits). Two loops over the same batches, in interleaved rounds:

- in the loop: decode a batch (`KineticsDataset.load_batch`), then step, as the first version of the GPU backends did;
- DeviceBatches: the thread decodes batch k + 1 while the loop steps on batch k.

It prints each loop's seconds per batch and data wait fraction (median of the rounds), and their ratio. With the
step as long as decoding, overlap should take the loop to about half the time; the data wait shows what is left.
This measures the mechanism (the thread, the queue, the hand-over), not NVDEC's speed.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vmb.config import load_config
from vmb.data.device_loader import DeviceBatches
from vmb.data.loader import TrainSampler, build_loaders, per_process_batch
from vmb.data.prepare.synthetic import ensure_config_dataset


def loop(batches, step_s: float) -> tuple[float, float, int]:
    """(loop seconds, seconds waiting for batches, batches) of one pass."""
    waited, count, start = 0.0, 0, time.perf_counter()
    iterator = iter(batches)
    while True:
        began = time.perf_counter()
        try:
            next(iterator)
        except StopIteration:
            break
        waited += time.perf_counter() - began
        count += 1
        time.sleep(step_s)
    return time.perf_counter() - start, waited, count


def in_the_loop(dataset, sampler, batch_size: int):
    """Batches decoded synchronously between steps."""
    keys = list(sampler)
    for first in range(0, len(keys) - batch_size + 1, batch_size):
        yield dataset.load_batch(keys[first:first + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="configs/smoke/X3D.yaml", help="config whose data and sampling to use")
    parser.add_argument("--step-ms", type=float, default=0.0,
                        help="the simulated step (default: the measured decode time of a batch)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    cfg = load_config(args.cfg, [*args.opts, "DATA_LOADER.NUM_WORKERS", "0"])
    ensure_config_dataset(cfg)
    torch.set_num_threads(1)
    dataset = build_loaders(cfg, 0, 1, torch.device("cpu"))[0].dataset
    batch_size = per_process_batch(cfg.TRAIN.BATCH_SIZE, 1, "TRAIN.BATCH_SIZE")
    sampler = TrainSampler(len(dataset), cfg.TRAIN.BATCH_SIZE, 0, 1, cfg.RNG_SEED)
    loop(in_the_loop(dataset, sampler, batch_size), 0.0)  # warm: page cache, first decodes
    decode_s, _, batches = loop(in_the_loop(dataset, sampler, batch_size), 0.0)
    step_s = args.step_ms / 1000.0 if args.step_ms else decode_s / batches
    print(f"{cfg.BENCHMARK.NAME or args.cfg}: {batches} batches of {batch_size} clips per pass, decoding "
          f"{1000 * decode_s / batches:.1f} ms a batch (PyAV, one thread), simulated step {1000 * step_s:.1f} ms, "
          f"{args.rounds} interleaved rounds")
    results: dict[str, list[tuple[float, float]]] = {"in the loop": [], "DeviceBatches": []}
    for _ in range(args.rounds):
        for name, batches_of in (("in the loop", lambda: in_the_loop(dataset, sampler, batch_size)),
                                 ("DeviceBatches", lambda: DeviceBatches(dataset, sampler, batch_size, True,
                                                                         torch.device("cpu")))):
            seconds, waited, count = loop(batches_of(), step_s)
            results[name].append((seconds / count, waited / seconds))
    print(f"{'loop':<16}{'s/batch':>10}{'data wait':>11}")
    medians = {}
    for name, rows in results.items():
        medians[name] = statistics.median(s for s, _ in rows)
        print(f"{name:<16}{medians[name]:>10.4f}{statistics.median(w for _, w in rows):>11.1%}")
    print(f"DeviceBatches / in the loop: {medians['DeviceBatches'] / medians['in the loop']:.3f}")


if __name__ == "__main__":
    main()
