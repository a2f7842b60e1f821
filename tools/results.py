"""Build the results site from submission folders: python tools/results.py SUBMISSION_DIR... --reference FILE -o SITE"""
import sys

from vmb.cli.results import main

if __name__ == "__main__":
    sys.exit(main())
