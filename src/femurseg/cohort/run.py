"""Run a cohort: every case isolated, resumable, on one process, N processes or Dask.

One case at a time goes through :func:`femurseg.pipeline.predict_case`; a case that raises is
recorded in ``<id>_error.json`` with its one-line error and the run goes on. The outcome of each
case is read back from the output folder (:mod:`femurseg.cohort.state`), so a rerun does only
what is missing whichever backend ran before:

* **in-process** (one worker): the networks are loaded once; the next scan is read on a
  background thread while the current one computes;
* **processes** (``workers > 1``): that many worker processes, each loading the networks once
  and taking the next case from a shared queue; a worker that dies (killed, out of memory)
  fails only its case, and a new worker takes its place;
* **Dask** (``dask="local"`` or a scheduler address): one task per case on a
  ``dask.distributed`` cluster; each worker process loads the networks once and keeps them;
  Dask reschedules the case of a worker that dies. The output folder must be reachable from
  every worker (a shared file system).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from femurseg.cohort.cases import Case, shard_cases
from femurseg.cohort.state import (
    CaseState,
    case_lock,
    case_state,
    error_path,
    load_error,
    load_report,
    remove_leftovers,
    remove_outputs,
    remove_summary_leftovers,
    run_key,
    write_error,
)
from femurseg.cohort.summary import write_run_json, write_summary
from femurseg.config import to_dict
from femurseg.errors import FemursegError, OutputError
from femurseg.io import ReadAhead
from femurseg.resources import available_memory_gb

if TYPE_CHECKING:
    from femurseg.pipeline import PredictConfig, Predictor

log = logging.getLogger(__name__)

#: memory one worker needs for a 512 x 512 x 1000 scan (measured peak 2.3 GB, with headroom).
WORKER_GB = 3.0
#: least seconds between two rewrites of cohort.csv / cohort.html while cases finish.
SUMMARY_EVERY_S = 3.0


@dataclass(frozen=True)
class PredictorSpec:
    """How to build the networks in any process (picklable, unlike the networks).

    Attributes:
        stage1: stage-1 checkpoint, None for the shipped weights.
        stage2: stage-2 checkpoint, None for the shipped weights.
        config: inference settings.
        stage1_overrides: preprocessing values expected of the stage-1 checkpoint.
        stage2_overrides: same for stage 2.
        threads: torch threads per worker (None: torch's default).
    """

    stage1: Path | None
    stage2: Path | None
    config: PredictConfig
    stage1_overrides: dict[str, Any] = field(default_factory=dict)
    stage2_overrides: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None

    def build(self) -> Predictor:
        """Load both networks."""
        from femurseg.pipeline import Predictor

        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        return Predictor(
            self.stage1,
            self.stage2,
            self.config,
            stage1_overrides=self.stage1_overrides,
            stage2_overrides=self.stage2_overrides,
        )

    def settings(self) -> dict[str, Any]:
        """What shapes the outputs (the run key is its checksum): weights and settings.

        Also checks, before any case is read, that each checkpoint loads as its stage and
        that the expected values (overrides) match it.

        Raises:
            ConfigError: an override contradicts a checkpoint.
            InputError: a checkpoint that cannot be loaded as its stage.
        """
        from femurseg.weights import (
            Stage,
            check_override,
            default_weights,
            load_checkpoint,
            sha256_file,
        )

        weights = {}
        for stage, given, overrides in (
            (Stage.STAGE1, self.stage1, self.stage1_overrides),
            (Stage.STAGE2, self.stage2, self.stage2_overrides),
        ):
            path = Path(given) if given is not None else default_weights(stage)
            stored = load_checkpoint(path, stage).get("model_config") or {}
            for name, value in overrides.items():
                check_override(f"{stage.value}.{name}", stored.get(name), value)
            weights[stage.value] = sha256_file(path)
        predict = to_dict(self.config)
        predict.pop("device", None)  # the same networks and precision give the same outputs
        # the overrides are only expectations checked against the checkpoints: not in the key
        return {"weights_sha256": weights, "predict": predict}


@dataclass
class CohortOptions:
    """How to run a cohort.

    Attributes:
        workers: worker processes (None: from cores and free memory, see
            :func:`default_workers`); with Dask, the local cluster's worker count.
        retry_failed: try cases that failed in an earlier run with the same settings again.
        overwrite: redo every case, also those done or made with other settings.
        shard: (index, count): run only this shard's cases (see
            :func:`~femurseg.cohort.cases.shard_cases`).
        dask: None, ``"local"`` (a local cluster of ``workers`` processes) or a scheduler
            address (``tcp://host:8786``).
    """

    workers: int | None = None
    retry_failed: bool = False
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    dask: str | None = None


@dataclass
class CaseResult:
    """What became of one case in this run."""

    case: str
    status: str  # done | failed
    seconds: float
    error: str = ""
    kind: str = ""
    report: dict[str, Any] | None = None


@dataclass
class CohortResult:
    """Counts and per-case results of a run.

    ``failed_before`` holds the cases skipped because an earlier run with the same settings
    failed on them (id -> (error kind, one-line error)); they still count as failed.
    """

    results: list[CaseResult]
    skipped: list[str]
    seconds: float
    summary: dict[str, Path]
    failed_before: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "failed"]


def default_workers(cores: int | None = None, available_gb: float | None = None) -> int:
    """Worker processes for this machine: at most one per two cores and per ``WORKER_GB``."""
    cores = cores or os.cpu_count() or 1
    if available_gb is None:
        available_gb = _available_gb()
    return max(1, min(cores // 2, int(available_gb // WORKER_GB)))


def _available_gb() -> float:
    free = available_memory_gb()
    return WORKER_GB if free is None else free  # unknown: one worker


@dataclass(frozen=True)
class _Job:
    """What every case of one run shares: the output folder, the run key and its settings,
    and whether earlier outputs are redone (``--overwrite``)."""

    out: Path
    key: str
    settings: dict[str, Any]
    redo: bool = False

    def fail(self, case: Case, msg: str, kind: str, seconds: float) -> CaseResult:
        """Record a failed case in ``<id>_error.json`` and return its result."""
        write_error(self.out, case.id, case.path, self.key, msg, kind, seconds)
        return CaseResult(case.id, "failed", seconds, msg, kind)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether an exception is an allocation failure (numpy, torch CPU or CUDA allocators)."""
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "not enough memory" in text or "out of memory" in text or "can't allocate" in text
    )


def out_of_memory_message() -> str:
    """One line for an out-of-memory case, with the memory free now."""
    return (
        f"out of memory while predicting this case ({_available_gb():.1f} GB free now); "
        "expected a scan that fits in memory; run it on a machine with more memory, alone "
        "(--workers 1) if several workers shared this one"
    )


def run_case(predictor: Predictor, case: Case, job: _Job, ahead: Any = None) -> CaseResult:
    """Predict one case; any error becomes a failed result recorded in ``<id>_error.json``.

    The case is locked while it runs (another run into the same folder skips it as busy);
    the outputs listed in an earlier report made with other settings, or any with
    ``job.redo`` (``--overwrite``), are removed first, so no stale file of an earlier run stays
    beside the new ones.
    """
    t0 = time.perf_counter()
    out = job.out
    with case_lock(out, case.id) as mine:
        if not mine:
            return CaseResult(case.id, "busy", 0.0, "being predicted by another run right now")
        state = case_state(out, case.id, job.key)
        if state is CaseState.DONE and not job.redo:
            # finished between this run's listing and now with the same settings: by another
            # run, or by this run's own worker that died after writing the report but before
            # its result came back (Dask then runs the task again). Either way it is done.
            return CaseResult(
                case.id, "done", time.perf_counter() - t0, report=load_report(out, case.id)
            )
        remove_leftovers(out, case.id)
        if state is CaseState.STALE or job.redo:
            remove_outputs(out, case.id)
        return _predict_one(predictor, case, job, ahead, t0)


def _predict_one(predictor: Predictor, case: Case, job: _Job, ahead: Any, t0: float) -> CaseResult:
    from femurseg.pipeline import predict_case

    try:
        report = predict_case(
            case.path,
            job.out,
            predictor,
            protect=(case.path,),
            ahead=ahead,
            name=case.id,
            extra={"run": {"key": job.key, "settings": job.settings}},
        )
    except FemursegError as err:
        kind = type(err).__name__
        msg = str(err)
    except Exception as err:  # noqa: BLE001 - one bad case must not stop the cohort
        kind = type(err).__name__
        if is_out_of_memory(err):  # MemoryError or an allocator's RuntimeError
            kind, msg = "MemoryError", out_of_memory_message()
        else:
            msg = f"internal error ({kind}: {err}); rerun with --debug and report it"
        log.debug("%s failed", case.id, exc_info=True)
    else:
        error_path(job.out, case.id).unlink(missing_ok=True)
        return CaseResult(case.id, "done", time.perf_counter() - t0, report=report)
    return job.fail(case, msg, kind, time.perf_counter() - t0)


# ---------------------------------------------------------------- backends


def _in_process(
    spec: PredictorSpec,
    todo: Sequence[Case],
    job: _Job,
    done: Callable[[CaseResult], None],
    started: ReadAhead | None = None,
) -> None:
    def read(case: Case) -> ReadAhead:
        return ReadAhead(case.path, spec.config.read_checks, spec.config.series_uid)

    # the first read overlaps loading the networks (and, when the caller started it, importing
    # torch); a read started for another case than the first to do is left to end unused
    first = None
    if started is not None and (started.path, started.checks, started.series_uid) == (
        Path(todo[0].path),
        spec.config.read_checks,
        spec.config.series_uid,
    ):
        first = started
    ahead: ReadAhead | None = first or read(todo[0])
    predictor = spec.build()
    for i, case in enumerate(todo):
        current = ahead
        ahead = read(todo[i + 1]) if i + 1 < len(todo) else None
        done(run_case(predictor, case, job, current))


def _worker_main(spec: PredictorSpec, job: _Job, conn: Any) -> None:
    """A worker process: load the networks, then predict the cases the parent sends.

    Each worker talks to the parent over its own pipe (no queue shared between workers, whose
    lock a killed worker could take with it and so block the others).
    """
    parent = os.getppid()
    try:
        predictor = spec.build()
    except BaseException as err:  # noqa: BLE001 - told to the parent, which stops the run
        conn.send(("broken", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None or os.getppid() != parent:  # no more work, or the run was killed
            return
        conn.send(("end", run_case(predictor, item, job)))


def _processes(
    spec: PredictorSpec,
    todo: Sequence[Case],
    job: _Job,
    done: Callable[[CaseResult], None],
    workers: int,
) -> None:
    ctx = mp.get_context("spawn")  # torch and fork do not mix
    pending = deque(todo)
    by_id = {c.id: c for c in todo}
    # per worker: its process, the parent's end of its pipe, and the case it is on
    live: dict[int, tuple[Any, Any]] = {}
    current: dict[int, str | None] = {}
    next_wid = 0
    remaining = len(todo)

    def start() -> None:
        nonlocal next_wid
        wid = next_wid
        next_wid += 1
        mine, theirs = ctx.Pipe(duplex=True)
        p = ctx.Process(
            target=_worker_main,
            args=(spec, job, theirs),
            name=f"femurseg-worker-{wid}",
            daemon=True,
        )
        p.start()
        theirs.close()
        live[wid] = (p, mine)
        current[wid] = None

    def give(wid: int) -> None:
        _, conn = live[wid]
        case = pending.popleft() if pending else None
        try:
            conn.send(case)
        except (BrokenPipeError, OSError):
            if case is not None:
                pending.appendleft(case)  # never started: another worker takes it
            return
        current[wid] = case.id if case is not None else None

    def lost(wid: int) -> None:
        nonlocal remaining
        p, conn = live.pop(wid)
        conn.close()
        p.join(timeout=1.0)
        cid = current.pop(wid, None)
        if cid is not None:
            msg = (
                f"worker process died (exit code {p.exitcode}) while on this case; out of "
                "memory or killed; retry with --retry-failed or fewer workers"
            )
            done(job.fail(by_id[cid], msg, "WorkerDied", 0.0))
            remaining -= 1

    for _ in range(min(workers, len(todo))):
        start()
    try:
        while remaining > 0:
            if not live:
                start()
            conns = {conn: wid for wid, (_, conn) in live.items()}
            sentinels = {p.sentinel: wid for wid, (p, _) in live.items()}
            ready: list[Any] = mp_connection.wait([*conns, *sentinels], timeout=1.0)
            for obj in ready:
                if obj in conns:
                    wid = conns[obj]
                    if wid not in live:
                        continue
                    try:
                        message: tuple[str, Any] = obj.recv()
                    except (EOFError, OSError):
                        lost(wid)
                        continue
                    kind, payload = message
                    if kind == "broken":
                        raise FemursegError(f"a worker could not load the networks: {payload}")
                    if kind == "end":
                        current[wid] = None
                        remaining -= 1
                        done(payload)
                    give(wid)
                else:
                    wid = sentinels[obj]
                    if wid in live and not live[wid][0].is_alive():
                        lost(wid)
                        if pending and len(live) < workers:
                            start()  # takes the dead worker's place
    finally:
        for p, conn in live.values():
            with contextlib.suppress(OSError):
                conn.send(None)
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
            conn.close()


_DASK_PREDICTORS: dict[str, Any] = {}
_DASK_LOCK = threading.Lock()


def _dask_case(spec: PredictorSpec, case: Case, job: _Job) -> CaseResult:
    """One case on a Dask worker; the networks are loaded once per worker process."""
    with _DASK_LOCK:
        predictor = _DASK_PREDICTORS.get(job.key)
        if predictor is None:
            predictor = _DASK_PREDICTORS[job.key] = spec.build()
    return run_case(predictor, case, job)


def _dask(
    spec: PredictorSpec,
    todo: Sequence[Case],
    job: _Job,
    done: Callable[[CaseResult], None],
    address: str,
    workers: int,
) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise FemursegError(
            "--dask needs dask.distributed, which is not installed; expected the cohort extra; "
            "run `pip install 'femurseg[cohort]'`"
        ) from err
    cluster = None
    own = True
    if address == "local":
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    else:
        # a client this process already holds on that scheduler (e.g. a notebook's) is used,
        # not a second one: two clients in one process run separate event loops, and a
        # future of one can then fail with "bound to a different event loop"
        found = _client_of(address)
        own = found is None
        client = found if found is not None else Client(address)
    try:
        futures = {
            client.submit(
                _dask_case,
                spec,
                c,
                job,
                key=f"femurseg-{job.key}-{c.id}",
                pure=False,
            ): c
            for c in todo
        }
        for fut in as_completed(futures):
            case = futures[fut]
            try:
                done(fut.result())
            except Exception as err:  # noqa: BLE001 - e.g. KilledWorker after repeated deaths
                msg = f"Dask could not run this case ({type(err).__name__}: {err})"
                done(job.fail(case, msg, type(err).__name__, 0.0))
    finally:
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


def _client_of(address: str) -> Any:
    """This process's current Dask client if it is connected to ``address``, else None."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:  # no client in this process
        return None
    return client if client.scheduler.address == address else None


# ---------------------------------------------------------------- the run


def run_cohort(
    cases: Sequence[Case],
    out: str | Path,
    spec: PredictorSpec,
    options: CohortOptions | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
    read_ahead: ReadAhead | None = None,
) -> CohortResult:
    """Predict every case that is not done yet; write cohort.csv, cohort.html and run.json.

    Args:
        cases: the whole cohort (a shard's run still summarises every case).
        out: output folder.
        spec: the networks and settings.
        options: workers, resume and sharding choices.
        on_case: called as each case finishes (e.g. to print it).
        read_ahead: a read of one of ``cases`` that the caller has already started (with
            ``spec``'s read checks and series), e.g. before importing torch; used when that
            case is the first this process predicts, otherwise left to end unused.

    Raises:
        OutputError: cases in ``out`` were made with other weights or settings (without
            ``overwrite``), or an output would overwrite an input.
    """
    options = options or CohortOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    settings = spec.settings()
    key = run_key(settings)
    mine = shard_cases(cases, options.shard)
    _check_not_inputs(mine, out)
    remove_summary_leftovers(out)
    states = {c.id: case_state(out, c.id, key) for c in mine}
    stale = [cid for cid, s in states.items() if s is CaseState.STALE]
    if stale and not options.overwrite:
        raise OutputError(
            f"{len(stale)} case(s) in {out} were made with other weights or settings (e.g. "
            f"{stale[0]}); expected the same settings to resume; pass --overwrite to redo them "
            "or choose another -o"
        )
    redo = {CaseState.TODO, CaseState.STALE}
    if options.retry_failed:
        redo.add(CaseState.FAILED)
    todo = [c for c in mine if options.overwrite or states[c.id] in redo]
    skipped = [c.id for c in mine if c not in todo]
    workers = options.workers or default_workers()
    workers = max(1, min(workers, len(todo))) if todo else 1
    if spec.threads is None and options.dask is None:
        spec = PredictorSpec(
            spec.stage1,
            spec.stage2,
            spec.config,
            spec.stage1_overrides,
            spec.stage2_overrides,
            threads=max(1, (os.cpu_count() or 1) // workers),
        )
    backend = "dask" if options.dask else ("processes" if workers > 1 else "in-process")
    results: list[CaseResult] = []
    last_summary = 0.0
    summary: dict[str, Path] = {}

    def run_info(finished: bool) -> dict[str, Any]:
        return {
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if finished else None,
            "backend": backend,
            "dask": options.dask,
            "workers": workers,
            "shard": list(options.shard) if options.shard else None,
            "key": key,
            "settings": settings,
            "cases": len(mine),
            "done": sum(r.status == "done" for r in results),
            "failed": sum(r.status == "failed" for r in results),
            "skipped": len(skipped),
            "pending": len(todo) - len(results),
            "seconds": round(time.perf_counter() - t0, 3),
            "case_seconds": {r.case: round(r.seconds, 3) for r in results},
            "failures": {r.case: r.error for r in results if r.status == "failed"},
        }

    def refresh(force: bool) -> None:
        nonlocal last_summary, summary
        now = time.perf_counter()
        if not force and now - last_summary < SUMMARY_EVERY_S:
            return
        last_summary = now
        summary = write_summary(cases, out, key)
        summary["run"] = write_run_json(out, run_info(force), options.shard)

    def done(result: CaseResult) -> None:
        results.append(result)
        if on_case is not None:
            on_case(result)
        refresh(False)

    refresh(True)
    if todo:
        log.info(
            "%d case(s) to do, %d already done or failed (%s)", len(todo), len(skipped), backend
        )
        job = _Job(out, key, settings, options.overwrite)
        if options.dask:
            _dask(spec, todo, job, done, options.dask, workers)
        elif workers > 1:
            _processes(spec, todo, job, done, workers)
        else:
            _in_process(spec, todo, job, done, read_ahead)
    refresh(True)
    before = {}
    for cid in skipped:
        if states[cid] is CaseState.FAILED:
            err = load_error(out, cid) or {}
            before[cid] = (str(err.get("kind", "")), str(err.get("error", "")))
    return CohortResult(results, skipped, time.perf_counter() - t0, summary, before)


def _check_not_inputs(cases: Sequence[Case], out: Path) -> None:
    """No output of any case may be an input of the run."""
    inputs = {c.path.resolve() for c in cases}
    for c in cases:
        for ending in ("_femur.nii.gz", "_report.json", "_preview.png"):
            target = (out / f"{c.id}{ending}").resolve()
            if target in inputs:
                raise OutputError(
                    f"output {target} would overwrite an input; expected a separate output "
                    "folder; choose another -o"
                )
