"""The run log's header, logged once before run_start: what is run, where, in which division, with which
hyperparameters (vmb.rules.LOGGED_HYPERPARAMETERS), and digests of the code and of the config. The
scorer checks each against config.yaml and result.json (vmb.scoring.validate)."""
from __future__ import annotations

from fvcore.common.config import CfgNode
from mlperf_logging.mllog import constants as C

from vmb.config import config_digest
from vmb import rules
from vmb.record.runlog import RunLog
from vmb.record.schema import BENCHMARK_DIGEST, BENCHMARK_VERSION, CONFIG_DIGEST, SOURCE_DIGEST


def log_header(log: RunLog, cfg: CfgNode, platform: str, provenance: dict) -> None:
    """Log the header of a run of `cfg` on `platform` (`<processes>x<cpu|cuda>`, e.g. "4xcuda") with the code
    whose `provenance` is vmb.record.provenance.code_provenance()'s (as in result.json)."""
    log.event(C.SUBMISSION_BENCHMARK, cfg.BENCHMARK.NAME)
    log.event(C.SUBMISSION_STATUS, "onprem")
    log.event(C.SUBMISSION_ORG, "vmb")
    log.event(C.SUBMISSION_PLATFORM, platform)
    for key, value in rules.logged_hyperparameters(cfg).items():
        log.event(key, value)
    log.event(BENCHMARK_VERSION, cfg.BENCHMARK.VERSION)
    log.event(BENCHMARK_DIGEST, provenance["benchmark_digest"])
    log.event(SOURCE_DIGEST, provenance["source_digest"])
    log.event(CONFIG_DIGEST, config_digest(cfg))
