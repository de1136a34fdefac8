"""Where each case of a cohort stands, read from the output folder alone.

A case is **done** when its ``<id>_report.json`` exists, was made with the same run key (the
weights' checksums and the settings that shape the outputs) and every output it lists exists:
:func:`femurseg.pipeline.predict_case` writes each output atomically and the report last, so a
run killed at any moment leaves either a complete case or no report. A case is **failed** when
``<id>_error.json`` holds the one-line error of a run with the same key; **stale** when its
report was made with other weights or settings; else **todo**.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from femurseg.atomic import atomic_write

#: output-name endings of one case (the report last); what a killed run may leave as temp files.
OUTPUT_ENDINGS = (
    "_femur.nii.gz",
    "_preview.png",
    "_femur_left.stl",
    "_femur_right.stl",
    "_femur_seg.dcm",
    "_landmarks.mrk.json",
    "_landmarks.png",
    "_error.json",
    "_report.json",
)


class CaseState(str, enum.Enum):
    """Where a case stands in an output folder."""

    DONE = "done"
    FAILED = "failed"
    STALE = "stale"
    TODO = "todo"


def run_key(settings: dict[str, Any]) -> str:
    """A short, stable checksum of the settings that shape a case's outputs."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def report_path(out: Path, case_id: str) -> Path:
    return out / f"{case_id}_report.json"


def error_path(out: Path, case_id: str) -> Path:
    return out / f"{case_id}_error.json"


#: parsed JSON records by path, with the (inode, mtime, size) they were read at: the summary is
#: refreshed many times over a long run, and each refresh would otherwise parse every report.
_PARSED: dict[Path, tuple[tuple[int, int, int], dict[str, Any] | None]] = {}
_PARSED_MAX = 200_000


def _load(path: Path) -> dict[str, Any] | None:
    """A JSON object record, parsed again only when its file changed (records are replaced by
    rename, so a new version has a new inode, time or size)."""
    try:
        st = path.stat()
    except OSError:
        _PARSED.pop(path, None)
        return None
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _PARSED.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    record = data if isinstance(data, dict) else None
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[path] = (stamp, record)
    return record


def case_state(out: Path, case_id: str, key: str) -> CaseState:
    """The state of one case in ``out`` for a run with settings key ``key``."""
    report = _load(report_path(out, case_id))
    if report is not None:
        if (report.get("run") or {}).get("key") != key:
            return CaseState.STALE
        outputs = report.get("outputs") or {}
        if all(Path(p).exists() for p in outputs.values()):
            return CaseState.DONE
        return CaseState.TODO
    err = _load(error_path(out, case_id))
    if err is not None and err.get("key") == key:
        return CaseState.FAILED
    return CaseState.TODO


def load_report(out: Path, case_id: str) -> dict[str, Any] | None:
    """The case's report, None when absent or unreadable."""
    return _load(report_path(out, case_id))


def load_error(out: Path, case_id: str) -> dict[str, Any] | None:
    """The case's error record, None when absent or unreadable."""
    return _load(error_path(out, case_id))


def write_error(
    out: Path, case_id: str, path: Path, key: str, error: str, kind: str, seconds: float
) -> Path:
    """Record a failed case (atomically) in ``<id>_error.json``."""
    record = {
        "case": case_id,
        "input": str(path),
        "key": key,
        "error": error,
        "kind": kind,
        "seconds": round(seconds, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    def _write(tmp: Path) -> None:
        tmp.write_text(json.dumps(record, indent=2))

    return atomic_write(error_path(out, case_id), _write)


def remove_leftovers(out: Path, case_id: str) -> int:
    """Delete the hidden temporary files a killed run left for this case; how many."""
    n = 0
    for ending in OUTPUT_ENDINGS:
        for tmp in out.glob(f".{case_id}{ending}.*"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def remove_summary_leftovers(out: Path, older_than_s: float = 60.0) -> int:
    """Delete temporary files of the cohort summaries that a killed run left; how many.

    A summary is written in milliseconds, so a temporary file older than ``older_than_s`` is
    an orphan, not another shard's write in progress.
    """
    n = 0
    now = time.time()
    for pattern in (".cohort.csv.*", ".cohort.html.*", ".run.json.*", ".run.shard-*"):
        for tmp in out.glob(pattern):
            try:
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    n += 1
            except FileNotFoundError:
                pass
    return n


def remove_outputs(out: Path, case_id: str) -> int:
    """Delete the outputs an earlier run made for this case (those its report or error
    record lists, and the report itself); how many files."""
    n = 0
    report = load_report(out, case_id)
    listed = [Path(p) for p in ((report or {}).get("outputs") or {}).values()]
    for p in [*listed, error_path(out, case_id), report_path(out, case_id)]:
        if p.parent.resolve() == out.resolve() and p.name.startswith(f"{case_id}_"):
            if p.exists():
                p.unlink()
                n += 1
    return n


@contextlib.contextmanager
def case_lock(out: Path, case_id: str, wait_s: float = 2.0) -> Iterator[bool]:
    """Hold an exclusive lock on one case of an output folder; yields False when another
    process still holds it after ``wait_s`` seconds (the case is then left alone).

    The short wait covers a worker killed while it held the lock: its scheduler may hand the
    case to another worker before the dying process's files are all closed.
    """
    path = out / f".{case_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
