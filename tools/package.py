"""Package VMB runs into a verifiable submission: python tools/package.py RUNS... -o DIR"""
import sys

from vmb.cli.package import main

if __name__ == "__main__":
    sys.exit(main())
