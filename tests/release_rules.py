"""Test releases: a copy of the scorer's rules (vmb/scoring/rules/) that also publishes test-only benchmarks."""
from __future__ import annotations

import pathlib
import shutil

import yaml

from vmb import rules
from vmb.config import config_digest, load_config
from vmb.record.provenance import code_provenance
from vmb.scoring import release


def write_test_rules(dest: pathlib.Path, benchmarks: dict[str, pathlib.Path], version: str | None = None,
                     benchmark_digest: str | None = None, p_value: float | None = None) -> pathlib.Path:
    """A copy at `dest` of the rules in use, in which `version` (default: the current one) publishes this code's
    benchmark digest (or `benchmark_digest`), convergence level `p_value` if given, and also the benchmarks
    name -> canonical config `benchmarks` (their canonical configs as of `version`); returns `dest`."""
    rules_dir = pathlib.Path(shutil.copytree(release.RULES_DIR, dest))
    current = release.current_version()
    version = version or current
    if version != current:
        shutil.copytree(rules_dir / current, rules_dir / version)
    path = rules_dir / version / release.RELEASE_FILE
    data = yaml.safe_load(path.read_text())
    data["version"] = version
    data["benchmark_digest"] = benchmark_digest or code_provenance()["benchmark_digest"]
    if p_value is not None:
        data["convergence"]["p_value"] = p_value
    for name, config in benchmarks.items():
        cfg = load_config(config, ["BENCHMARK.VERSION", version])
        data["benchmarks"][name] = {"target_top1": cfg.BENCHMARK.TARGET_TOP1,
                                    "fixed_config_digest": config_digest(cfg, exclude=rules.RESOURCE_KEYS)}
    path.write_text(yaml.safe_dump(data))
    return rules_dir
