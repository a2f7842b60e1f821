"""Format and loader study: python tools/bench_loader.py [--cfg CONFIG ...] [--clips N] [--json FILE]"""
import sys

from vmb.cli.bench_loader import main

if __name__ == "__main__":
    sys.exit(main())
