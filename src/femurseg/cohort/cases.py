"""Which scans a cohort run holds: paths, folders of scans, DICOM series folders, manifests.

Every input becomes one or more :class:`Case` (a case id, which names the outputs, and the path
read). The rules, in order:

* a ``.csv`` file is a manifest: columns ``case`` (or ``case_id``) and ``path``; relative paths
  are relative to the manifest's folder;
* any other file is one scan (NIfTI, NRRD, MHA/MHD or a DICOM file, whose series is read);
* a folder that directly holds DICOM files (``.dcm`` or the DICOM preamble) is one series;
* any other folder is a folder of scans: its image files and DICOM series folders, found
  recursively (hidden names skipped; ``.raw``/``.zraw`` companions of MHD/NHDR headers are not
  scans). The case id is the path below the folder, its parts joined by ``__``, so that two
  series folders called ``CT`` under different patients stay apart.

Case ids must be unique (they name the outputs). All of this is checked before any network is
loaded.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from femurseg.errors import InputError
from femurseg.io.validate import READ_SUFFIXES, input_format, suffix_of

#: a case id must be a plain file-name stem.
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*$")
#: how many files of a folder are opened to tell whether it is a DICOM series.
_PROBE_FILES = 16


@dataclass(frozen=True)
class Case:
    """One scan of a cohort.

    Attributes:
        id: the case id; outputs are named ``<id>_femur.nii.gz`` and so on.
        path: the file or DICOM folder to read.
        explicit: the user named this path (a file given directly is checked before any work;
            a scan found inside a folder is checked when its turn comes).
    """

    id: str
    path: Path
    explicit: bool = False


def _stem(name: str) -> str:
    suffix = suffix_of(Path(name))
    if suffix in READ_SUFFIXES:
        return name[: -len(suffix)]
    return name


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _visible(entries: Sequence[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _classify(folder: Path) -> tuple[bool, list[Path], list[Path]]:
    """(is a DICOM series, image files, subfolders) of one folder."""
    with os.scandir(folder) as it:
        entries = _visible(list(it))
    files = [Path(e.path) for e in entries if e.is_file()]
    dirs = [Path(e.path) for e in entries if e.is_dir()]
    images = [f for f in files if READ_SUFFIXES.get(suffix_of(f)) not in (None, "dicom")]
    others = [f for f in files if f not in images]
    if any(_is_dicom_file(f) for f in others[:_PROBE_FILES]):
        return True, [], []
    if not images and not dirs and others:
        # files of no known kind and nothing else: a DICOM export without the preamble or
        # file endings, as the series reader accepts; it says what is wrong if it is not
        return True, [], []
    return False, images, dirs


def _expand(root: Path) -> list[Case]:
    cases: list[Case] = []

    def case_id(path: Path) -> str:
        parts = path.relative_to(root).parts
        return "__".join((*parts[:-1], _stem(parts[-1])))

    def walk(folder: Path) -> None:
        series, images, dirs = _classify(folder)
        if series:
            cases.append(Case(case_id(folder), folder))
            return
        cases.extend(Case(case_id(f), f) for f in images)
        for d in dirs:
            walk(d)

    series, images, dirs = _classify(root)
    if series:
        return [Case(root.name, root, explicit=True)]
    cases.extend(Case(case_id(f), f) for f in images)
    for d in dirs:
        walk(d)
    if not cases:
        raise InputError(
            f"folder {root} holds no CT scan (no NIfTI/NRRD/MHA/MHD file and no DICOM series "
            "folder); expected a DICOM series or a folder of scans; check the path"
        )
    return cases


def read_manifest(path: Path) -> list[Case]:
    """Cases of a manifest CSV (columns ``case``/``case_id`` and ``path``).

    Raises:
        InputError: unreadable file, missing columns, an empty id or path, or a missing scan.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            fields = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(
            f"cannot read manifest {path} ({err}); expected a CSV with columns case,path"
        ) from err
    if not rows:
        raise InputError(f"manifest {path} has no rows; expected a CSV with columns case,path")
    id_col = next((c for c in ("case", "case_id") if c in fields), None)
    if id_col is None or "path" not in fields:
        raise InputError(
            f"manifest {path} has columns {fields}; expected 'case' (or 'case_id') and 'path'; "
            "rename the header row"
        )
    cases = []
    for n, row in enumerate(rows, start=2):
        norm = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        cid, where = norm.get(id_col, ""), norm.get("path", "")
        if not cid or not where:
            raise InputError(
                f"manifest {path} line {n} has an empty case or path; expected both on every "
                "row; fill it in or delete the row"
            )
        scan = Path(where).expanduser()
        if not scan.is_absolute():
            scan = path.parent / scan
        if not scan.exists():
            raise InputError(
                f"manifest {path} line {n}: scan {scan} does not exist; expected a CT file or "
                "DICOM folder; fix the path (relative paths are read from the manifest's folder)"
            )
        cases.append(Case(cid, scan, explicit=True))
    return cases


def collect_cases(inputs: Sequence[str | Path]) -> list[Case]:
    """All cases of the given inputs, checked (see the module docstring).

    Raises:
        InputError: no input, a missing path, an unreadable explicit file, a folder without
            scans, a bad case id or two cases with the same id.
    """
    if not inputs:
        raise InputError("no input given; expected CT files, DICOM folders or a manifest CSV")
    cases: list[Case] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"input {p} does not exist; expected a CT file or DICOM folder")
        if p.is_file() and p.suffix.lower() == ".csv":
            cases.extend(read_manifest(p))
        elif p.is_dir():
            cases.extend(_expand(p))
        else:
            input_format(p)  # empty file, unknown type: exit 2 before any work
            cases.append(Case(_stem(p.name), p, explicit=True))
    for c in cases:
        if not _ID_OK.match(c.id):
            raise InputError(
                f"case id {c.id!r} (from {c.path}) is not a plain file name; expected letters, "
                "digits and ._+=@- only; rename it (in the manifest or on disk)"
            )
    seen: dict[str, Path] = {}
    for c in cases:
        if c.id in seen:
            raise InputError(
                f"inputs {seen[c.id]} and {c.path} share the case name {c.id!r}; expected unique "
                "names per output folder; rename one, list them in a manifest with distinct "
                "ids, or predict them into separate folders"
            )
        seen[c.id] = c.path
    return cases


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``--shard`` as (index, count), 0-based; None when not sharded.

    Accepted: ``I/N`` (0 <= I < N); ``auto`` (from ``SLURM_ARRAY_TASK_ID`` minus
    ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_COUNT``, or from Kubernetes'
    ``JOB_COMPLETION_INDEX`` with the count in ``FEMURSEG_SHARD_COUNT``); ``auto/N`` (the index
    from either variable, the count given).

    Raises:
        InputError: a malformed value or missing environment variables.
    """
    if text is None:
        return None
    env = os.environ if env is None else env
    what = text.strip().lower()
    head, _, tail = what.partition("/")
    try:
        count = int(tail) if tail else None
        if head == "auto":
            if "SLURM_ARRAY_TASK_ID" in env:
                index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
                count = count or int(env["SLURM_ARRAY_TASK_COUNT"])
            elif "JOB_COMPLETION_INDEX" in env:
                index = int(env["JOB_COMPLETION_INDEX"])
                count = count or int(env["FEMURSEG_SHARD_COUNT"])
            else:
                raise InputError(
                    "--shard auto found neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX; "
                    "expected a Slurm array or Kubernetes indexed job; give --shard I/N instead"
                )
        else:
            index = int(head)
    except (KeyError, ValueError) as err:
        raise InputError(
            f"--shard {text!r} cannot be read ({type(err).__name__}: {err}); expected I/N with "
            "0 <= I < N, auto or auto/N (Kubernetes needs FEMURSEG_SHARD_COUNT or auto/N)"
        ) from err
    if count is None or count < 1 or not 0 <= index < count:
        raise InputError(
            f"--shard {text!r} gives index {index} of {count}; expected 0 <= index < count"
        )
    return index, count


def shard_cases(cases: Sequence[Case], shard: tuple[int, int] | None) -> list[Case]:
    """This shard's cases: every count-th case of the list sorted by id, from the index on."""
    if shard is None:
        return list(cases)
    index, count = shard
    ordered = sorted(cases, key=lambda c: c.id)
    return ordered[index::count]


def check_output_dir(out: Path) -> Path:
    """Make sure ``out`` is (or can be made) a writable folder, before any work.

    Raises:
        InputError: ``out`` is a file, lies under a file, or cannot be created or written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"output {out} is a file; expected a folder for the outputs; choose another -o"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise InputError(
            f"output folder {out} cannot be made: a part of its path is a file ({err}); choose "
            "another -o"
        ) from err
    except OSError as err:
        raise InputError(
            f"output folder {out} cannot be made ({err.strerror}); expected a writable place; "
            "choose another -o or fix the permissions"
        ) from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(
            f"output folder {out} is not writable; expected a folder you can write to; choose "
            "another -o or fix the permissions"
        )
    return out
