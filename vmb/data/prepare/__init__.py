"""Offline, untimed data preparation: everything that writes a dataset before a run.

- `k400`: the Kinetics-400 annotations and the 20 classes of Kinetics20;
- `transcode`: re-encoding one source clip to the prepared format, robust to damaged sources;
- `kinetics20`: the Kinetics20 builder (tools/prepare_kinetics20.py: resumable process pool, skipped report);
- `formats`: the prepared format and the loader study's candidate encodings;
- `manifest`: manifest.json and the dataset fingerprint;
- `synthetic`: the smoke benchmark's data and the Kinetics-shaped dry-run set (tools/make_synthetic.py).
"""
