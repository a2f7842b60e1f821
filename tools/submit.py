"""Train a config on SLURM through submitit, one task per GPU, requeued into the same run folder:
python tools/submit.py --cfg CONFIG --nodes N --gpus-per-node G --partition P [--time MIN] [KEY VALUE ...]"""
import sys

from vmb.cli.submit import main

if __name__ == "__main__":
    sys.exit(main())
