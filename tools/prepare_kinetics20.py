"""Build Kinetics20 from the CVDF Kinetics-400 copy: python tools/prepare_kinetics20.py --k400 DIR [--out DIR]"""
import sys

from vmb.cli import prepare_kinetics20

if __name__ == "__main__":
    sys.exit(prepare_kinetics20())
