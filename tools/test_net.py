"""Test a checkpoint on the val split, multi-view: python tools/test_net.py --cfg CONFIG --checkpoint FILE --views 10x3
[--precision fp32,bf16] [--json FILE] [KEY VALUE ...]"""
import sys

from vmb.cli.test_net import main

if __name__ == "__main__":
    sys.exit(main())
