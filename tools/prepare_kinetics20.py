"""Build Kinetics20 from the CVDF Kinetics-400 copy: python tools/prepare_kinetics20.py --k400 DIR [--out DIR]"""
import sys

from vmb.cli.prepare_kinetics20 import main

if __name__ == "__main__":
    sys.exit(main())
