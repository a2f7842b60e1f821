"""Inference latency and throughput of zoo models: python tools/bench_infer.py --models x3d_m --batch-sizes 1,8"""
import sys

from vmb.cli.bench_infer import main

if __name__ == "__main__":
    sys.exit(main())
