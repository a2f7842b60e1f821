"""The format and loader study (`tools/bench_loader.py`, `vmb-bench-loader`): training clips per second per core
of VMB's pipelines against the bare decode bounds and PyTorchVideo, on each candidate prepared format.

Modules, each importing only those listed before it: `options` (the command line and its checks), `clips` (the
formats under study and the clips encoded in each), `pipelines` (what turns a clip into a training clip), `cells`
(a cell is config x pipeline x format; building and timing them), `report` (the text output), `study` (the whole
study: run, ratios, goal checks, JSON document).
"""
