"""Parameters and GFLOPs per view of a config's model: python tools/model_info.py --cfg CONFIG [KEY VALUE ...]"""
import sys

from vmb.cli import model_info

if __name__ == "__main__":
    sys.exit(model_info())
