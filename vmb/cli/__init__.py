"""Command-line entry points, one module per command.

Each module's `main(argv=None) -> int` parses its options, calls the library and returns the exit status (0 done, 1
the command's own "no" such as an invalid submission or a missed target, 2 a usage or input error shown as one line,
130 interrupted). setup.py installs them as console scripts (`vmb-train`, `vmb-score`, ...; the list is in
setup.py's entry_points), and tools/*.py are aliases of the same functions. Library code never imports this package.
"""
