"""Run by test_distributed_eval.py, alone or under torchrun: evaluate a fixed tiny model on a split and
print rank 0's (correct, total) as JSON. Arguments: CONFIG then KEY VALUE overrides."""
import json
import sys
from contextlib import nullcontext

import torch

from vmb.config import load_config
from vmb.data.loader import build_loaders
from vmb.engine import distributed
from vmb.engine.evaluate import evaluate
from vmb.models.build import build_model

cfg = load_config(sys.argv[1], sys.argv[2:])
ctx = distributed.setup(cfg.NUM_GPUS)
# One intra-op thread in every run, whatever the process count: with 2 threads (one process) and 1 (each of
# two) oneDNN reduces in another order on some CPUs (AMD EPYC), and logits differ in the 8th digit.
torch.set_num_threads(1)
torch.manual_seed(0)  # the same weights in every process and in every run
model = build_model(cfg)
_, val_loader = build_loaders(cfg, ctx.rank, ctx.world_size, ctx.device)
correct, total = evaluate(model, val_loader, ctx.device, cfg.DATA.MEAN, cfg.DATA.STD, nullcontext())
if ctx.is_main:
    print(json.dumps({"correct": correct, "total": total, "world_size": ctx.world_size}))
distributed.teardown()
