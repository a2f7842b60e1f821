"""Write a synthetic 20-class motion video dataset (Kinetics layout): the smoke benchmark's data (default,
data/smoke), or with --profile kinetics a Kinetics20-shaped set for the dry-run configs (data/dryrun).

Examples: python tools/make_synthetic.py
          python tools/make_synthetic.py --profile kinetics --workers 16
"""
import sys

from vmb.cli.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())
