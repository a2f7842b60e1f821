"""Parameters and GFLOPs per view: python tools/model_info.py --cfg CONFIG [KEY VALUE ...], or --zoo for the zoo."""
import sys

from vmb.cli.model_info import main

if __name__ == "__main__":
    sys.exit(main())
