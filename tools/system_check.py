"""System check before a submission: python tools/system_check.py --out DIR [--budget-min 8]"""
import sys

from vmb.cli.system_check import main

if __name__ == "__main__":
    sys.exit(main())
