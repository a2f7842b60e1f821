"""Train a video model to its target top-1, timed: python tools/run_net.py --cfg CONFIG [KEY VALUE ...]"""
import sys

from vmb.cli.run_net import main

if __name__ == "__main__":
    sys.exit(main())
