"""Cohort runs: inputs, per-case isolation, resume, shards, summaries, worker processes, Dask."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from debian_tools import debian_tool
from model_synth import synth_case, write_tiny_weights
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.cohort import (
    CaseState,
    CohortOptions,
    PredictorSpec,
    case_state,
    collect_cases,
    default_workers,
    parse_shard,
    run_cohort,
    shard_cases,
)
from femurseg.errors import InputError, OutputError
from femurseg.io import write_image
from femurseg.io.dicom_write import write_dicom_series
from femurseg.pipeline import PredictConfig
from femurseg.types import Volume


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


def tiny_scan(path: Path, seed: int) -> Path:
    image, _, affine = synth_case(seed=seed)
    return write_image(image, affine, path, axcodes="LPS", dtype=np.int16)


@pytest.fixture
def cohort(tmp_path) -> Path:
    """A folder of four tiny scans and one broken file."""
    root = tmp_path / "scans"
    root.mkdir()
    for i in range(4):
        tiny_scan(root / f"case{i}.nii.gz", seed=i)
    (root / "broken.nii.gz").write_bytes(b"this is not a NIfTI file" * 10)
    return root


def spec_of(weights, **config) -> PredictorSpec:
    return PredictorSpec(weights[0], weights[1], PredictConfig(device="cpu", **config), threads=1)


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    with (out / "cohort.csv").open() as f:
        return {r["case"]: r for r in csv.DictReader(f)}


# ------------------------------------------------------------------ inputs


def test_collect_cases_from_folders_series_and_manifests(tmp_path) -> None:
    root = tmp_path / "archive"
    tiny_scan(root / "a.nii.gz", 0)
    tiny_scan(root / "sub" / "b.nrrd", 1)
    (root / "sub" / "notes.txt").write_text("not a scan")
    (root / ".hidden.nii.gz").write_bytes(b"x")
    image, _, affine = synth_case(shape=(16, 16, 6), seed=2)
    for patient in ("p1", "p2"):  # two series folders with the same name
        write_dicom_series(Volume(image, affine), root / patient / "CT")
    cases = collect_cases([root])
    assert sorted(c.id for c in cases) == ["a", "p1__CT", "p2__CT", "sub__b"]
    series = {c.id: c.path for c in cases}
    assert series["p1__CT"] == root / "p1" / "CT"
    # a DICOM series folder given directly is one case named after it
    assert [c.id for c in collect_cases([root / "p1" / "CT"])] == ["CT"]
    # a manifest: ids from the file, relative paths from its folder
    manifest = tmp_path / "list.csv"
    manifest.write_text("case,path\nleft_hip,archive/a.nii.gz\nknee,archive/p2/CT\n")
    got = collect_cases([manifest])
    assert [(c.id, c.path) for c in got] == [
        ("left_hip", tmp_path / "archive" / "a.nii.gz"),
        ("knee", tmp_path / "archive" / "p2" / "CT"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\nx,y\n")
    with pytest.raises(InputError, match="expected 'case'"):
        collect_cases([bad])
    bad.write_text("case,path\nx,missing.nii.gz\n")
    with pytest.raises(InputError, match="line 2.*does not exist"):
        collect_cases([bad])
    with pytest.raises(InputError, match="share the case name"):
        collect_cases([root / "a.nii.gz", root / "a.nii.gz"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no CT scan"):
        collect_cases([empty])


def test_shards_partition_the_cohort() -> None:
    assert parse_shard(None) is None
    assert parse_shard("1/3") == (1, 3)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert parse_shard("auto", slurm) == (4, 8)
    assert parse_shard("auto", {"JOB_COMPLETION_INDEX": "2", "FEMURSEG_SHARD_COUNT": "4"}) == (2, 4)
    assert parse_shard("auto/5", {"JOB_COMPLETION_INDEX": "2"}) == (2, 5)
    for bad in ("3/3", "x/2", "auto", "-1/2"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(bad, {})
    from femurseg.cohort import Case

    cases = [Case(f"c{i:02d}", Path(f"c{i}")) for i in range(10)]
    parts = [shard_cases(cases[::-1], (i, 3)) for i in range(3)]
    ids = [c.id for p in parts for c in p]
    assert sorted(ids) == [c.id for c in cases] and len(set(ids)) == 10


def test_default_workers_from_cores_and_memory() -> None:
    assert default_workers(2, 24.0) == 1
    assert default_workers(16, 128.0) == 8
    assert default_workers(16, 7.0) == 2
    assert default_workers(1, 1.0) == 1


# ------------------------------------------------------------------ one machine


def test_bad_scan_is_isolated_and_a_rerun_does_only_what_is_missing(weights, cohort, tmp_path):
    out = tmp_path / "out"
    cases = collect_cases([cohort])
    seen = []
    res = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1), seen.append)
    assert res.done == 4 and [r.case for r in res.failed] == ["broken"]
    assert len(seen) == 5 and res.failed[0].kind == "InputError"
    err = json.loads((out / "broken_error.json").read_text())
    assert "broken.nii.gz" in err["error"] and err["key"]
    rows = rows_of(out)
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"]
    assert all(rows[f"case{i}"]["status"] == "done" for i in range(4))
    run = json.loads((out / "run.json").read_text())
    assert (run["done"], run["failed"], run["skipped"], run["pending"]) == (4, 1, 0, 0)
    assert set(run["case_seconds"]) == {*rows} and run["settings"]["weights_sha256"]["stage1"]
    report = json.loads((out / "case0_report.json").read_text())
    assert report["run"]["key"] == run["key"]
    html = (out / "cohort.html").read_text()
    assert all(f'"case": "{c}"' in html for c in rows)

    # a rerun touches nothing: every case is done or failed with the same settings
    stamp = (out / "case0_femur.nii.gz").stat().st_mtime_ns
    again = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1))
    assert again.results == [] and len(again.skipped) == 5
    assert (out / "case0_femur.nii.gz").stat().st_mtime_ns == stamp
    # a case whose report is gone (killed before the report was written) is redone alone
    (out / "case2_report.json").unlink()
    (out / ".case2_femur.nii.gz.abc.nii.gz").write_bytes(b"half")  # a killed write's temp
    part = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1))
    assert [r.case for r in part.results] == ["case2"]
    assert not list(out.glob(".case2_*"))
    retry = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1, retry_failed=True))
    assert [r.case for r in retry.results] == ["broken"]
    # other settings: refused, never overwritten silently; --overwrite redoes everything
    other = spec_of(weights, preview=False)
    with pytest.raises(OutputError, match="other weights or settings"):
        run_cohort(cases, out, other, CohortOptions(workers=1))
    assert (out / "case0_femur.nii.gz").stat().st_mtime_ns == stamp
    redo = run_cohort(cases, out, other, CohortOptions(workers=1, overwrite=True))
    assert len(redo.results) == 5 and redo.done == 4


def test_shards_write_disjoint_cases_into_one_folder(weights, cohort, tmp_path) -> None:
    out = tmp_path / "out"
    cases = collect_cases([cohort])
    ran = []
    for i in range(2):
        res = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1, shard=(i, 2)))
        ran += [r.case for r in res.results]
        assert (out / f"run.shard-{i}-of-2.json").is_file()
    assert sorted(ran) == sorted(c.id for c in cases)
    statuses = {r["status"] for r in rows_of(out).values()}
    assert statuses == {"done", "failed"}


def test_cli_predict_folder_goes_on_after_a_bad_scan(weights, cohort, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["predict", str(cohort), "-o", str(out), "--device", "cpu", "--workers", "1"]
    args += ["--stage1-weights", str(weights[0]), "--stage2-weights", str(weights[1])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "error: broken:" in res.output and "4 done, 1 failed, 0 skipped" in res.output
    assert all((out / f"case{i}_report.json").is_file() for i in range(4))
    # a rerun skips everything but still says the cohort holds a failed case (exit 2)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "5 case(s) already done or failed" in again.output
    assert "broken (failed in an earlier run)" in again.output
    (cohort / "broken.nii.gz").unlink()
    clean = CliRunner().invoke(app, [*args[:1], *map(str, sorted(cohort.iterdir())), *args[2:]])
    assert clean.exit_code == 0, clean.output


@pytest.mark.parametrize("victim", [0, -1])
def test_worker_processes_survive_a_killed_worker(weights, cohort, tmp_path, victim) -> None:
    psutil = pytest.importorskip("psutil")
    for i in range(4, 8):
        tiny_scan(cohort / f"case{i}.nii.gz", seed=i)
    out = tmp_path / "out"
    cases = collect_cases([cohort])
    killed = []

    def kill_one(result) -> None:
        if killed:
            return
        workers = [
            p
            for p in psutil.Process().children()
            if p.is_running() and "spawn_main" in " ".join(p.cmdline())
        ]
        if workers:
            os.kill(workers[victim].pid, signal.SIGKILL)
            killed.append(workers[victim].pid)

    res = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=2), kill_one)
    assert killed and len(res.results) == 9
    lost = [r for r in res.failed if r.kind == "WorkerDied"]
    assert {r.case for r in res.failed} <= {"broken", *(r.case for r in lost)}
    # every case is done or failed, none half-written; a retry finishes the lost ones
    retry = run_cohort(cases, out, spec_of(weights), CohortOptions(workers=2, retry_failed=True))
    key = json.loads((out / "run.json").read_text())["key"]
    states = {c.id: case_state(out, c.id, key) for c in cases}
    assert states.pop("broken") is CaseState.FAILED
    assert set(states.values()) == {CaseState.DONE}
    assert {r.case for r in retry.results} == {r.case for r in res.failed}


# ------------------------------------------------------------------ Dask


def test_dask_cluster_runs_the_cohort_despite_a_broken_scan_and_a_killed_worker(
    weights, cohort, tmp_path
) -> None:
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    cases = collect_cases([cohort])
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        killed = []

        def kill_one(result) -> None:
            if not killed:
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        opts = CohortOptions(dask=cluster.scheduler_address)
        res = run_cohort(cases, out, spec_of(weights), opts, kill_one)
        # the run used this process's client on that scheduler (a second client runs its own
        # event loop, and futures then fail with "bound to a different event loop") and left
        # it open
        assert client.status == "running" and client.run(os.getpid)
    assert killed
    assert sorted(r.case for r in res.results if r.status == "done") == [
        f"case{i}" for i in range(4)
    ]
    assert [r.case for r in res.failed] == ["broken"]
    assert json.loads((out / "run.json").read_text())["backend"] == "dask"


# ------------------------------------------------------------------ the QC page in a browser


@pytest.mark.slow
def test_cohort_html_shows_every_case_in_headless_chromium(weights, cohort, tmp_path) -> None:
    browser = debian_tool("chromium", "chromium", "chromium-browser", "google-chrome")
    if browser is None:
        pytest.skip("no chromium and it cannot be installed here (needs root and apt-get)")
    out = tmp_path / "out"
    cases = collect_cases([cohort])
    run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1))
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--dump-dom",
            (out / "cohort.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # rows exist only if the page's script ran: one per case, the failure marked
    for c in cases:
        assert f'data-case="{c.id}"' in dom
    assert 'class="failed" data-case="broken"' in dom
    assert dom.count("<img") == 4


def test_overwrite_removes_stale_outputs_and_a_locked_case_is_left_alone(weights, tmp_path):
    from femurseg.cohort.state import case_lock

    scans = tmp_path / "scans"
    tiny_scan(scans / "a.nii.gz", 1)
    tiny_scan(scans / "b.nii.gz", 2)
    out = tmp_path / "out"
    cases = collect_cases([scans])
    run_cohort(cases, out, spec_of(weights), CohortOptions(workers=1))
    report = json.loads((out / "a_report.json").read_text())
    assert set(report["output_sha256"]) >= {"labels", "preview"}
    assert (out / "a_preview.png").is_file()
    # the same cases again without previews, --overwrite: no old preview stays beside them
    run_cohort(
        cases, out, spec_of(weights, preview=False), CohortOptions(workers=1, overwrite=True)
    )
    assert not (out / "a_preview.png").exists() and (out / "a_femur.nii.gz").is_file()
    # a case another run holds is skipped as busy, not redone or failed
    with case_lock(out, "b") as mine:
        assert mine
        res = run_cohort(cases, out, spec_of(weights, preview=False), CohortOptions(
            workers=1, overwrite=True))  # fmt: skip
    status = {r.case: r.status for r in res.results}
    assert status == {"a": "done", "b": "busy"}
    assert not list(out.glob(".*.lock"))


def test_a_case_done_meanwhile_counts_as_done_and_a_lock_freed_soon_is_taken(
    weights, tmp_path
) -> None:
    """What a Dask task rerun after its worker died finds: the dead worker may have written
    the report already (the case is done, not busy), or may still hold the lock a moment."""
    import threading

    from femurseg.cohort.run import _Job, run_case
    from femurseg.cohort.state import case_lock

    scans = tmp_path / "scans"
    tiny_scan(scans / "a.nii.gz", 1)
    out = tmp_path / "out"
    cases = collect_cases([scans])
    run_cohort(cases, out, spec_of(weights, preview=False), CohortOptions(workers=1))
    run = json.loads((out / "run.json").read_text())
    job = _Job(out, run["key"], run["settings"])
    before = (out / "a_report.json").stat().st_mtime_ns
    again = run_case(spec_of(weights, preview=False).build(), cases[0], job)
    assert again.status == "done" and again.report is not None
    assert again.report["run"]["key"] == run["key"]
    assert (out / "a_report.json").stat().st_mtime_ns == before  # not predicted twice

    held = threading.Event()

    def hold_briefly() -> None:
        with case_lock(out, "a") as mine:
            assert mine
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    held.wait()
    with case_lock(out, "a", wait_s=5.0) as mine:
        assert mine  # taken once the holder let go, well within the wait
    holder.join()
    with case_lock(out, "a") as mine, case_lock(out, "a", wait_s=0.2) as second:
        assert mine and not second


def test_unusable_output_paths_are_refused_before_any_work(tmp_path) -> None:
    scan = tiny_scan(tmp_path / "a.nii.gz", 1)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        res = CliRunner().invoke(app, ["predict", str(scan), "-o", str(out)])
        assert res.exit_code == 2 and "choose another -o" in res.output, res.output
        assert "unexpected" not in res.output


def test_predict_config_file_reaches_settings_and_refuses_unknown_keys(weights, tmp_path):
    scan = tiny_scan(tmp_path / "a.nii.gz", 1)
    good = tmp_path / "s.json"
    good.write_text(
        json.dumps(
            {
                "femur_checks": {"min_volume_ml": 22.5},
                "measure_settings": {"landmarks": {"max_spacing_mm": 2.0}},
            }
        )
    )
    args = ["predict", str(scan), "-o", str(tmp_path / "out"), "--device", "cpu"]
    args += ["--stage1-weights", str(weights[0]), "--stage2-weights", str(weights[1])]
    res = CliRunner().invoke(app, [*args, "--config", str(good)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "a_report.json").read_text())
    cfg = report["config"]["predict"]
    assert cfg["femur_checks"]["min_volume_ml"] == 22.5
    assert cfg["measure_settings"]["landmarks"]["max_spacing_mm"] == 2.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"femur_checks": {"min_volum_ml": 1}}))
    res = CliRunner().invoke(app, [*args, "--config", str(bad)])
    assert res.exit_code == 2 and "unknown keys ['min_volum_ml']" in res.output


def test_phantom_config_file(tmp_path) -> None:
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"scanner": {"noise_sd_hu": [40.0, 40.0]}}))
    out = tmp_path / "ds"
    res = CliRunner().invoke(
        app,
        [
            "phantom",
            "--n",
            "1",
            "--fov",
            "thighs",
            "--spacing",
            "4",
            "--no-truth",
            "--config",
            str(good),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    src = json.loads((out / "dataset.json").read_text())["source"]["config"]
    assert src["scanner"]["noise_sd_hu"] == [40.0, 40.0]
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"scaner": {}}))
    res = CliRunner().invoke(app, ["phantom", "--config", str(bad), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown keys ['scaner']" in res.output


def test_out_of_memory_is_one_clear_line(weights, tmp_path, monkeypatch) -> None:
    import femurseg.pipeline as pipeline
    from femurseg.cohort.run import is_out_of_memory

    def oom(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 123456789 bytes."
        )

    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    monkeypatch.setattr(pipeline.Predictor, "predict", oom)
    scans = tmp_path / "s"
    tiny_scan(scans / "a.nii.gz", 1)
    res = run_cohort(
        collect_cases([scans]), tmp_path / "o", spec_of(weights), CohortOptions(workers=1)
    )
    (fail,) = res.failed
    assert fail.kind == "MemoryError" and "out of memory while predicting" in fail.error
    assert "DefaultCPUAllocator" not in fail.error and "GB free" in fail.error


def test_records_are_parsed_again_only_when_they_change(tmp_path, monkeypatch) -> None:
    """A summary refresh re-reads every case's report; unchanged files are not re-parsed."""
    import json as json_mod

    import femurseg.cohort.state as state

    parses = []
    real_loads = json_mod.loads
    monkeypatch.setattr(state.json, "loads", lambda text: parses.append(1) or real_loads(text))
    path = state.report_path(tmp_path, "c1")
    path.write_text(json_mod.dumps({"case": "c1", "v": 1}))
    assert state.load_report(tmp_path, "c1") == {"case": "c1", "v": 1}
    assert state.load_report(tmp_path, "c1") == {"case": "c1", "v": 1}
    assert len(parses) == 1
    tmp = tmp_path / "new.json"
    tmp.write_text(json_mod.dumps({"case": "c1", "v": 22}))
    tmp.replace(path)  # reports are replaced by rename
    assert state.load_report(tmp_path, "c1") == {"case": "c1", "v": 22}
    path.unlink()
    assert state.load_report(tmp_path, "c1") is None


def test_a_read_started_by_the_caller_is_used_only_for_its_own_case(weights, tmp_path) -> None:
    """predict starts reading a lone scan before torch loads; run_cohort takes that read for
    the case it belongs to, read with the same checks, and reads afresh otherwise."""
    from femurseg.io import ReadAhead
    from femurseg.io.validate import ReadChecks

    a = tiny_scan(tmp_path / "a.nii.gz", seed=0)
    b = tiny_scan(tmp_path / "b.nii.gz", seed=1)
    spec = spec_of(weights)
    used = []

    class Spy(ReadAhead):
        def result(self):  # type: ignore[no-untyped-def]
            used.append(self.path.name)
            return super().result()

    # its own case, same checks: handed over
    run_cohort(collect_cases([a]), tmp_path / "o1", spec, CohortOptions(workers=1), None,
               Spy(a, spec.config.read_checks))  # fmt: skip
    assert used == ["a.nii.gz"]
    # another case's read, or the same case read with other checks: not used, a fresh read
    for ahead in (Spy(b, spec.config.read_checks), Spy(a, ReadChecks(assume_orientation="LPS"))):
        used.clear()
        out = tmp_path / f"o{id(ahead)}"
        res = run_cohort(collect_cases([a]), out, spec, CohortOptions(workers=1), None, ahead)
        assert used == [] and res.done == 1
        assert np.array_equal(
            np.asarray(nib_load(out / "a_femur.nii.gz").dataobj),
            np.asarray(nib_load(tmp_path / "o1" / "a_femur.nii.gz").dataobj),
        )


def nib_load(path: Path):  # type: ignore[no-untyped-def]
    import nibabel as nib

    return nib.load(path)
