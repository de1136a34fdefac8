"""NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) reading and writing with SimpleITK.

ITK geometry is LPS+: spacing, origin and a direction matrix whose columns are the LPS unit
vectors of the voxel axes i, j, k. It is converted to a RAS+ affine here. SimpleITK's
``GetArrayFromImage`` returns axes in reverse order ``[k, j, i]``; arrays leave this module in
``[i, j, k]`` order so that they match the affine.
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from femurseg.errors import InputError
from femurseg.io.orient import affine_from_itk, itk_from_affine
from femurseg.io.raw import RawImage

log = logging.getLogger(__name__)


def _itk_reason(err: BaseException) -> str:
    """The useful part of a SimpleITK exception: first and last error lines, no source paths."""
    lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()] or [str(err)]
    lines = [re.sub(r"^(?:ITK |\S*)ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", ln) for ln in lines]
    lines = [re.sub(r"^\[\w+\]\s*", "", ln) for ln in lines]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return " ".join(text.split())[:250]


#: the child's program (self-contained: SimpleITK, numpy and json only, so it starts fast and
#: never depends on how the user's own program was started).
_CHILD = r"""
import json, sys
import numpy as np
import SimpleITK as sitk
path, npy = sys.argv[1], sys.argv[2]
try:
    img = sitk.ReadImage(path)
except RuntimeError as err:
    print(json.dumps({"error": str(err)}))
    sys.exit(0)
arr = sitk.GetArrayViewFromImage(img)
np.save(npy, arr)
# the data stored in the file itself (NRRD/MHA with attached data): how many bytes it inflates
# to, so that a header whose sizes were damaged to smaller ones can be told
stored = None
try:
    import gzip, zlib
    raw = open(path, "rb").read()
    if raw[:4] == b"NRRD":
        head, _, data = raw.partition(b"\n\n")
        fields = dict(
            ln.split(b":", 1) for ln in head.splitlines()[1:] if b":" in ln and b":=" not in ln
        )
        enc = fields.get(b"encoding", b"raw").strip()
        if b"data file" not in fields and b"datafile" not in fields:
            if enc in (b"gzip", b"gz"):
                stored = len(gzip.decompress(data))
            elif enc == b"raw":
                stored = len(data)
    elif b"ElementDataFile = LOCAL" in raw[:4096]:
        cut = raw.index(b"ElementDataFile = LOCAL")
        data = raw[raw.index(b"\n", cut) + 1:]
        stored = len(zlib.decompress(data)) if b"CompressedData = True" in raw[:cut] else len(data)
except Exception:
    stored = None
print(json.dumps({
    "stored_bytes": stored,
    "image_bytes": int(arr.nbytes),
    "components": img.GetNumberOfComponentsPerPixel(),
    "dim": img.GetDimension(),
    "spacing": list(img.GetSpacing()),
    "origin": list(img.GetOrigin()),
    "direction": list(img.GetDirection()),
}))
"""


def _read_in_child(path: Path, npy: Path) -> dict[str, Any]:
    """Read with SimpleITK in a child process; the ``[k, j, i]`` array is left in ``npy``.

    ITK's readers print to file descriptor 2 and can crash on damaged files (a fuzz test
    found one); in a child both stay away from the user's process: what it prints is
    captured, and a crash only ends the child.

    Raises:
        InputError: the child crashed.
    """
    import json
    import subprocess

    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(npy)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.stderr.strip():
        log.debug("ITK printed while reading %s: %s", path, res.stderr.strip())
    try:
        meta: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise InputError(
            f"cannot read {path}: the ITK reader crashed on it (exit code {res.returncode}); "
            "expected an uncorrupted image file; the file is damaged, export it again"
        ) from None
    return meta


def read_itk(path: Path, fmt: str) -> RawImage:
    """Read an NRRD or MetaImage file in its on-disk axis order ``[i, j, k]``.

    The read runs in a child process (see :func:`_read_in_child`).

    Args:
        path: the file (a detached .nhdr/.mhd header finds its data file itself).
        fmt: ``"nrrd"``, ``"mha"`` or ``"mhd"``, recorded in the result.

    Raises:
        InputError: unreadable file (or one that crashed the reader), vector (multi-component)
            pixels, or fewer than 2 or more than 4 dimensions.
    """
    with tempfile.TemporaryDirectory(prefix="femurseg-itk-") as tmp:
        npy = Path(tmp) / "image.npy"
        meta = _read_in_child(path, npy)
        if "error" in meta:
            reason = _itk_reason(RuntimeError(meta["error"]))
            if path.is_file():
                # ITK appends the last errno ("No such file or directory") to a header it cannot
                # parse; the file is there, so that reason would mislead
                reason = re.sub(r"\s*\.*\s*Reason: No such file or directory$", "", reason)
            raise InputError(
                f"cannot read {path} as {fmt.upper()} ({reason}); expected a complete, "
                "uncorrupted image file; check the file (and its data file if detached)"
            )
        arr = np.load(npy)
    stored, image = meta.get("stored_bytes"), int(meta.get("image_bytes") or 0)
    if stored is not None and image > 0 and stored >= 2 * image:
        raise InputError(
            f"{path}: its header describes a {' x '.join(map(str, arr.shape[::-1]))} image "
            f"({image / 2**20:.1f} MB) but the file holds {stored / 2**20:.1f} MB of image "
            "data, at least twice that; expected a header that matches its data; the header "
            "(its sizes) is damaged: export the image again"
        )
    if meta["components"] != 1:
        raise InputError(
            f"{path} has {meta['components']} values per voxel; expected a "
            "scalar CT image; convert it to one grey value per voxel"
        )
    dim = int(meta["dim"])
    if dim == 2:
        arr = arr.T  # [j, i] -> [i, j]; the 2D check downstream reports it
        return RawImage(arr, np.eye(4), fmt, {})
    if dim not in (3, 4):
        raise InputError(f"{path} is a {dim}D image; expected a 3D CT volume")
    arr = np.transpose(arr, tuple(range(dim - 1, -1, -1)))  # [t, k, j, i] -> [i, j, k, t]
    spacing = meta["spacing"][:3]
    origin = meta["origin"][:3]
    direction = np.asarray(meta["direction"], dtype=np.float64).reshape(dim, dim)[:3, :3]
    return RawImage(arr, affine_from_itk(spacing, origin, direction), fmt, {})


def write_itk(array: npt.NDArray[Any], affine: npt.NDArray[np.float64], path: Path) -> None:
    """Write an ``[i, j, k]`` array with a RAS+ affine as NRRD or MHA (compressed).

    Args:
        array: shape (I, J, K) in the file's axis order, already in the dtype to store.
        affine: 4x4 voxel -> RAS+ mm; stored as LPS spacing/origin/direction.
        path: output file; the ending (.nrrd, .mha) chooses the format.
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    spacing, origin, direction = itk_from_affine(affine)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path), useCompression=True)
