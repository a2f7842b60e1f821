"""Format and loader study: python tools/bench_loader.py [--cfg CONFIG ...] [--clips N] [--json FILE]"""
import sys

from vmb.cli import bench_loader

if __name__ == "__main__":
    sys.exit(bench_loader())
