"""Training speed: python tools/bench_train.py --cfg CONFIG | --model NAME --synthetic [--iters N] [--json FILE]"""
import sys

from vmb.cli.bench_train import main

if __name__ == "__main__":
    sys.exit(main())
