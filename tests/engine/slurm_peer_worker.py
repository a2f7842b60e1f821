"""Run by test_slurm.py as one task of a two-task srun step (SLURM's variables only, no torchrun): join the process
group through vmb.engine.distributed.setup, then `reduce` (one all-reduce), `hang` (sleep instead of reducing) or
`exit` (exit 1 instead)."""
import os
import sys
import time

import torch

from vmb.engine import distributed

ctx = distributed.setup(num_gpus=0)
print(f"rank {ctx.rank} of {ctx.world_size} joined", file=sys.stderr, flush=True)
if sys.argv[1] == "hang":
    time.sleep(600)
elif sys.argv[1] == "exit":
    os._exit(1)
distributed.all_reduce_sum(torch.ones(1))
distributed.teardown()
