"""Cohort runs: many scans into one output folder, each case isolated, resumable, sharded.

* :mod:`.cases`: which scans a run holds (paths, folders of scans, DICOM series folders,
  manifest CSVs) and which of them a shard takes;
* :mod:`.state`: where each case stands, read from the output folder (done, failed, stale,
  todo) and the run key (weights and settings) that decides it;
* :mod:`.run`: the run itself, in-process, on worker processes or on a Dask cluster;
* :mod:`.summary`: ``cohort.csv``, ``cohort.html`` and ``run.json``.

``femurseg predict`` is a cohort run of whatever it is given.
"""

from femurseg.cohort.cases import Case, collect_cases, parse_shard, read_manifest, shard_cases
from femurseg.cohort.run import (
    CaseResult,
    CohortOptions,
    CohortResult,
    PredictorSpec,
    default_workers,
    run_cohort,
)
from femurseg.cohort.state import CaseState, case_state, run_key

__all__ = [
    "Case",
    "CaseResult",
    "CaseState",
    "CohortOptions",
    "CohortResult",
    "PredictorSpec",
    "case_state",
    "collect_cases",
    "default_workers",
    "parse_shard",
    "read_manifest",
    "run_cohort",
    "run_key",
    "shard_cases",
]
