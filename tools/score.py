"""Check VMB runs or submission packages and score them: python tools/score.py RUNS... [--reference FILE]"""
import sys

from vmb.cli.score import main

if __name__ == "__main__":
    sys.exit(main())
