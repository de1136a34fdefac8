"""Reading a CT series from a DICOM folder with pydicom.

Files are grouped by SeriesInstanceUID; objects without pixel rows (SR, RTSTRUCT, DICOMDIR) are
ignored. Unless a series UID is given, the CT series is chosen: Modality CT and no LOCALIZER in
ImageType; among several, the one with most slices (a warning names the others). Slices are
sorted by their position along the slice normal (row x column direction cosines), rescaled to HU
slice by slice, and checked: one orientation and size, no duplicate positions, no missing slice,
even steps, no in-plane shift (gantry tilt).

Enhanced (multi-frame) CT, one file holding every slice, is read the same way: each frame
becomes one slice, placed by its per-frame functional groups (PlanePositionSequence; the
orientation, pixel spacing and rescale from the per-frame or the shared groups), and goes
through the same checks. Compressed pixel data (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) is
decoded by the pylibjpeg / pyjpegls plugins pydicom finds; deflated files by pydicom itself.

Geometry: pixel ``(r, c)`` of a slice at ImagePositionPatient ``p`` lies at LPS
``p + c * dc * row_cosine + r * dr * col_cosine`` with PixelSpacing ``[dr, dc]``. The volume is
built as ``array[i, j, k] = slice_k[j, i]`` (i along the row cosine, j along the column cosine,
k along the sorted slice normal) and the affine is converted to RAS+ before leaving.
"""

from __future__ import annotations

import filecmp
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from femurseg.errors import InputError
from femurseg.io.orient import lps_to_ras
from femurseg.io.raw import RawImage
from femurseg.io.validate import ReadChecks

log = logging.getLogger(__name__)

_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "Modality", "ImageType", "SeriesDescription", "Rows", "Columns",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "NumberOfFrames",
]  # fmt: skip
#: Media Storage Directory (DICOMDIR): the one object with file meta but no series.
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a DICOM folder.

    Attributes:
        uid: SeriesInstanceUID.
        modality: Modality tag (``"CT"``, ``"MR"`` ...).
        description: SeriesDescription, may be empty.
        n_images: number of image objects (slices) in the series.
        localizer: True when ImageType names LOCALIZER (scout/topogram).
    """

    uid: str
    modality: str
    description: str
    n_images: int
    localizer: bool

    @property
    def is_ct(self) -> bool:
        """A CT volume series: Modality CT and not a localizer."""
        return self.modality == "CT" and not self.localizer

    def __str__(self) -> str:
        kind = f"{self.modality} localizer" if self.localizer else self.modality
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.uid} ({kind}{desc}, {self.n_images} images)"


def _is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 marker ('DICM' after the preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return True  # cannot even look: the caller reports it
    return len(head) == 132 and head[128:132] == b"DICM"


def _unreadable(path: Path, err: BaseException) -> InputError:
    return InputError(
        f"DICOM file {path} cannot be read ({type(err).__name__}: {' '.join(str(err).split())}); "
        "expected every file of the series complete and readable; copy the series again or "
        "fix the file's permissions"
    )


def _is_localizer(ds: Any) -> bool:
    return "LOCALIZER" in {str(v).upper() for v in _multi(ds, "ImageType")}


def _drop_localizers_and_duplicates(
    groups: dict[str, list[tuple[Path, Any]]],
) -> dict[str, list[tuple[Path, Any]]]:
    """Remove localizer images from series that also hold other images, and byte-identical
    copies of one image (same SOPInstanceUID, same bytes); different files sharing a
    SOPInstanceUID stay, for the series checks to refuse."""
    out: dict[str, list[tuple[Path, Any]]] = {}
    for uid, items in groups.items():
        loc = [it for it in items if _is_localizer(it[1])]
        if loc and len(loc) < len(items):
            log.info("series %s: %d localizer image(s) left out of the volume", uid, len(loc))
            items = [it for it in items if not _is_localizer(it[1])]
        seen: dict[str, Path] = {}
        kept = []
        for f, ds in items:
            sop = str(ds.get("SOPInstanceUID", ""))
            first = seen.setdefault(sop, f) if sop else f
            # files are compared only when their SOPInstanceUIDs collide (rare)
            if first != f and filecmp.cmp(first, f, shallow=False):
                log.info("%s is a byte-identical copy of %s; read once", f, first)
                continue
            kept.append((f, ds))
        out[uid] = kept
    return out


def scan_folder(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    """Read the headers of every DICOM image file under ``folder``, grouped by series UID.

    Files that are not DICOM (no Part 10 marker, not parsed as DICOM) are skipped. A DICOM file
    that cannot be read (no permission, truncated, corrupt) is an error naming it: skipping it
    would silently shorten the scan or show up as a missing slice. So is a file that does not
    parse as DICOM but looks like one of the slices beside it (``.dcm``, empty, named like them
    or at least half their size): a slice whose preamble was overwritten or cut off. Localizer
    images mixed into a CT series are left out of it, and byte-identical copies of a file are
    read once.

    Returns:
        ``{series_uid: [(file, header dataset), ...]}`` for image objects only.

    Raises:
        InputError: an unreadable DICOM file, no DICOM file at all, or DICOM files but no
            image object.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    groups: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    non_image: set[str] = set()
    skipped: list[Path] = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_TAGS)
        except PermissionError as err:
            raise _unreadable(f, err) from err
        except InvalidDicomError:
            skipped.append(f)  # not a DICOM file (a README, a thumbnail), or a damaged slice
            continue
        except Exception as err:  # noqa: BLE001 - pydicom raises many types for broken files
            if _is_dicom_file(f):
                raise _unreadable(f, err) from err
            skipped.append(f)
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        meta_class = str(getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", "") or "")
        if meta_class and meta_class != DICOMDIR_CLASS and not (uid and "SOPClassUID" in ds):
            # the file meta names a stored object, but its body ends before the basic tags
            raise _unreadable(f, EOFError("the file ends before its SeriesInstanceUID"))
        if not uid or "Rows" not in ds:
            non_image.add(str(ds.get("Modality", "") or ds.get("SOPClassUID", "unknown")))
            continue
        groups[uid].append((f, ds))
    if not groups:
        if non_image:
            raise InputError(
                f"folder {folder} holds DICOM objects ({', '.join(sorted(non_image))}) but no "
                "image series; expected a CT image series; point to the folder with the CT slices"
            )
        raise InputError(
            f"no DICOM files found in folder {folder} ({len(files)} files checked); expected a "
            "DICOM CT series or a NIfTI/NRRD/MHA file; check the path"
        )
    _check_skipped(skipped, groups)
    return _drop_localizers_and_duplicates(dict(groups))


#: endings of files that are expected beside DICOM slices and are not DICOM.
_NOT_DICOM_ENDINGS = {
    ".txt", ".md", ".json", ".xml", ".html", ".htm", ".csv", ".pdf", ".png", ".jpg", ".jpeg",
    ".gif", ".bmp", ".zip", ".gz", ".nii", ".nrrd", ".mha", ".mhd", ".raw", ".log", ".ini",
    ".exe", ".dll", ".inf", ".bat", ".sh",
}  # fmt: skip


def _check_skipped(skipped: list[Path], groups: dict[str, list[tuple[Path, Any]]]) -> None:
    """A file that is not readable as DICOM but sits among slices of its size is a damaged
    slice (its preamble or header overwritten), not a README: an error naming it, since
    leaving it out would silently shorten the scan."""
    sizes: dict[Path, list[int]] = defaultdict(list)
    names: dict[Path, set[tuple[str, int]]] = defaultdict(set)
    for items in groups.values():
        for f, _ in items:
            sizes[f.parent].append(f.stat().st_size)
            names[f.parent].add((f.suffix.lower(), len(f.name)))
    for f in skipped:
        if f.suffix.lower() in _NOT_DICOM_ENDINGS or f.parent not in sizes:
            continue
        size = f.stat().st_size
        like_slice = (
            f.suffix.lower() == ".dcm"
            or size == 0
            or size >= 0.5 * float(np.median(sizes[f.parent]))
            or (f.suffix.lower(), len(f.name)) in names[f.parent]
        )
        if like_slice:
            raise _unreadable(
                f,
                InvalidDicomError(
                    f"not readable as DICOM ({size} bytes), though named or sized like the "
                    "slices beside it"
                ),
            )


def series_infos(groups: dict[str, list[tuple[Path, Any]]]) -> list[SeriesInfo]:
    """Summaries of the series found by :func:`scan_folder`, most images first."""
    out = []
    for uid, items in groups.items():
        ds = items[0][1]
        out.append(
            SeriesInfo(
                uid=uid,
                modality=str(ds.get("Modality", "") or "unknown"),
                description=str(ds.get("SeriesDescription", "") or ""),
                n_images=sum(int(d.get("NumberOfFrames", 1) or 1) for _, d in items),
                localizer=any(_is_localizer(d) for _, d in items),
            )
        )
    return sorted(out, key=lambda s: -s.n_images)


def _multi(ds: Any, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None:
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


def choose_series(infos: list[SeriesInfo], folder: Path, series_uid: str | None) -> SeriesInfo:
    """Pick the series to read: ``series_uid`` if given, else the largest CT series.

    Raises:
        InputError: unknown ``series_uid`` or no CT series.
    """
    listing = "; ".join(str(s) for s in infos)
    if series_uid is not None:
        for s in infos:
            if s.uid == series_uid:
                if not s.is_ct:
                    log.warning("series %s is not a CT volume series; reading it as asked", s)
                return s
        raise InputError(
            f"series {series_uid} is not in {folder}; available: {listing}; "
            "pass one of these with --series"
        )
    cts = [s for s in infos if s.is_ct]
    if not cts:
        raise InputError(
            f"folder {folder} has no CT series (found: {listing}); expected a CT image series "
            "(Modality CT, not a localizer); femurseg segments CT only"
        )
    if len(cts) > 1:
        log.warning(
            "%d CT series in %s; using %s with the most slices, ignoring %s; choose another "
            "with --series UID",
            len(cts), folder, cts[0], "; ".join(str(s) for s in cts[1:]),
        )  # fmt: skip
    return cts[0]


def _check_same(values: list[npt.NDArray[np.float64]], what: str, uid: str, atol: float) -> None:
    distinct = [values[0]]
    for v in values[1:]:
        if not any(v.shape == d.shape and np.allclose(v, d, atol=atol) for d in distinct):
            distinct.append(v)
    if len(distinct) > 1:
        shown = ", ".join(np.array2string(d, precision=4, separator=" ") for d in distinct[:3])
        raise InputError(
            f"DICOM series {uid} mixes {len(distinct)} different {what} ({shown}); expected one "
            "for all slices; export each stack as its own series or choose one with --series"
        )


def _numbers(f: Path, ds: Any, keyword: str, n: int) -> npt.NDArray[np.float64]:
    """``n`` finite numbers of a header tag, or an error naming the file (a damaged header)."""
    try:
        value = ds.get(keyword)
        seq = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
        out = np.asarray([float(v) for v in seq], dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise InputError(
            f"DICOM file {f} has an unreadable {keyword} ({err}); expected {n} numbers; the file "
            "is damaged: copy or export it again"
        ) from err
    if out.shape != (n,) or not np.isfinite(out).all():
        raise InputError(
            f"DICOM file {f} has {keyword} {out.tolist()}; expected {n} finite numbers; the file "
            "is damaged: copy or export it again"
        )
    return out


def _slice_geometry(
    items: list[tuple[Path, Any]], uid: str, checks: ReadChecks
) -> tuple[list[int], npt.NDArray[np.float64]]:
    """Check slice geometry; return the slice order along the normal and the LPS affine."""
    if len(items) < 2:
        raise InputError(
            f"DICOM series {uid} has only {len(items)} image, a 2D image; expected a 3D CT "
            "series with at least two slices; export the whole series"
        )
    for _, ds in items:
        missing = [k for k in _GEOMETRY_TAGS if k not in ds]
        if missing:
            raise InputError(
                f"DICOM series {uid} lacks {', '.join(missing)}; expected slice geometry tags; "
                "it cannot be placed in patient space"
            )
    iop = [_numbers(f, ds, "ImageOrientationPatient", 6) for f, ds in items]
    size = [np.asarray([_numbers(f, ds, k, 1)[0] for k in ("Rows", "Columns")]) for f, ds in items]
    pix = [_numbers(f, ds, "PixelSpacing", 2) for f, ds in items]
    _check_same(iop, "orientations (ImageOrientationPatient)", uid, 1e-4)
    _check_same(size, "slice sizes (Rows, Columns)", uid, 0.0)
    _check_same(pix, "pixel spacings", uid, 1e-4)
    row, col = iop[0][:3] / np.linalg.norm(iop[0][:3]), iop[0][3:] / np.linalg.norm(iop[0][3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    pos = np.asarray([_numbers(f, ds, "ImagePositionPatient", 3) for f, ds in items])
    order = [int(i) for i in np.argsort(pos @ normal, kind="stable")]
    pos = pos[order]
    d = pos @ normal
    steps = np.diff(d)
    dup = np.flatnonzero(steps <= checks.position_atol_mm)
    if dup.size:
        raise InputError(
            f"DICOM series {uid} has {dup.size + 1} or more slices at the same position "
            f"({d[dup[0]]:.2f} mm along the normal); expected one slice per position; the series "
            "may hold several phases or echoes: export one of them"
        )
    med = float(np.median(steps))
    tol = max(checks.position_atol_mm, checks.slice_step_rtol * med)
    bad = np.flatnonzero(np.abs(steps - med) > tol)
    if bad.size:
        i = int(bad[0])
        k = round(steps[i] / med)
        where = f"between positions {d[i]:.2f} and {d[i + 1]:.2f} mm along the slice normal"
        if k >= 2 and abs(steps[i] - k * med) <= tol:
            raise InputError(
                f"DICOM series {uid} has a gap: {k - 1} missing slice(s) {where} (slice step "
                f"{med:.3g} mm, {bad.size} gap(s) in all); expected a complete series; "
                "re-export or re-copy all slices"
            )
        raise InputError(
            f"DICOM series {uid} has uneven slice spacing: step {steps[i]:.3g} mm {where}, "
            f"median step {med:.3g} mm ({bad.size} uneven step(s)); expected equal steps; "
            "resample to even spacing (e.g. dcm2niix) or export a consistent series"
        )
    offsets = pos - pos[0]
    inplane = offsets - np.outer(offsets @ normal, normal)
    shift = float(np.linalg.norm(inplane, axis=1).max())
    if shift > max(checks.position_atol_mm, checks.slice_step_rtol * float(pix[0].min())):
        raise InputError(
            f"DICOM series {uid} slices are shifted in-plane by up to {shift:.2f} mm (gantry tilt "
            "or sheared stack); expected slices stacked along their normal; correct the tilt "
            "first (e.g. dcm2niix)"
        )
    lps = np.eye(4)
    lps[:3, 0] = row * pix[0][1]
    lps[:3, 1] = col * pix[0][0]
    lps[:3, 2] = (pos[-1] - pos[0]) / (len(pos) - 1)
    lps[:3, 3] = pos[0]
    return order, lps


def _decode(f: Path) -> tuple[Any, npt.NDArray[Any]]:
    """The dataset and pixel array of one file, or an error naming it and its syntax."""
    ds = None
    try:
        ds = pydicom.dcmread(f)
        return ds, ds.pixel_array
    except Exception as err:  # noqa: BLE001 - decoders raise many types
        meta = getattr(ds, "file_meta", None)
        ts = getattr(meta, "TransferSyntaxUID", "unknown")
        name = getattr(ts, "name", "") or ""
        raise InputError(
            f"cannot decode pixel data of {f} (transfer syntax {ts} {name}: {err}); expected "
            "DICOM pixels femurseg can decode (uncompressed, deflate, RLE, JPEG Lossless, "
            "JPEG-LS, JPEG 2000); reinstall femurseg with its decoders or convert with dcm2niix"
        ) from err


def _group_item(ds: Any, i: int, group: str) -> Any:
    """Item 0 of functional group ``group`` for frame ``i``: per-frame first, then shared."""
    for seq_name, index in (("PerFrameFunctionalGroupsSequence", i),
                            ("SharedFunctionalGroupsSequence", 0)):  # fmt: skip
        seq = ds.get(seq_name)
        if seq is None or len(seq) <= index:
            continue
        inner = seq[index].get(group)
        if inner is not None and len(inner):
            return inner[0]
    return None


def _expand_frames(
    items: list[tuple[Path, Any]], uid: str
) -> tuple[list[tuple[Path, Any]], list[int | None]]:
    """One (file, header) per slice: a multi-frame file becomes one header per frame.

    A frame's header holds what the classic checks read (position, orientation, pixel spacing,
    size, rescale), taken from its functional groups.
    """
    out: list[tuple[Path, Any]] = []
    frames: list[int | None] = []
    for f, ds in items:
        n = int(ds.get("NumberOfFrames", 1) or 1)
        if n <= 1:
            out.append((f, ds))
            frames.append(None)
            continue
        full = pydicom.dcmread(f, stop_before_pixels=True)
        for i in range(n):
            header = pydicom.Dataset()
            header.Rows, header.Columns = full.Rows, full.Columns
            header.SOPInstanceUID = full.SOPInstanceUID
            pos = _group_item(full, i, "PlanePositionSequence")
            ori = _group_item(full, i, "PlaneOrientationSequence")
            pix = _group_item(full, i, "PixelMeasuresSequence")
            val = _group_item(full, i, "PixelValueTransformationSequence")
            if pos is None or ori is None or pix is None:
                raise InputError(
                    f"multi-frame DICOM {f} (series {uid}) frame {i + 1} has no plane position, "
                    "orientation or pixel measures; expected an enhanced CT with functional "
                    "groups; convert it with dcm2niix"
                )
            header.ImagePositionPatient = pos.ImagePositionPatient
            header.ImageOrientationPatient = ori.ImageOrientationPatient
            header.PixelSpacing = pix.PixelSpacing
            if val is not None:
                header.RescaleSlope = val.get("RescaleSlope", 1.0)
                header.RescaleIntercept = val.get("RescaleIntercept", 0.0)
            else:
                header.RescaleSlope = full.get("RescaleSlope", 1.0)
                header.RescaleIntercept = full.get("RescaleIntercept", 0.0)
            out.append((f, header))
            frames.append(i)
    return out, frames


def read_dicom_series(
    folder: Path, series_uid: str | None = None, checks: ReadChecks | None = None
) -> RawImage:
    """Read one CT series from a DICOM folder (searched recursively).

    Args:
        folder: the folder holding the slice files.
        series_uid: SeriesInstanceUID to read; None picks the CT series (see module docstring).
        checks: tolerances for slice positions.

    Returns:
        RawImage with float32 HU of shape (Columns, Rows, slices) ordered as in the module
        docstring, its RAS+ affine, and ``extra["dicom"]`` holding the series, study and frame
        of reference UIDs, the SOPInstanceUIDs and files in slice order.

    Raises:
        InputError: no DICOM, no CT series, unknown UID, or an inconsistent series.
    """
    checks = checks or ReadChecks()
    groups = scan_folder(folder)
    chosen = choose_series(series_infos(groups), folder, series_uid)
    items, frames = _expand_frames(groups[chosen.uid], chosen.uid)
    order, lps = _slice_geometry(items, chosen.uid, checks)
    first = items[0][1]
    vol = np.empty((int(first.Columns), int(first.Rows), len(order)), dtype=np.float32)
    decoded: dict[Path, tuple[Any, npt.NDArray[Any]]] = {}
    no_rescale = False
    for k, idx in enumerate(order):
        f, header = items[idx]
        if f not in decoded:
            decoded.clear()  # one file's pixels at a time (a multi-frame file is one file)
            decoded[f] = _decode(f)
        ds, px = decoded[f]
        frame = frames[idx]
        if frame is not None:
            px = px[frame] if px.ndim == 3 else px
        if px.shape != (int(first.Rows), int(first.Columns)):
            raise InputError(f"{f} has pixel array {px.shape}; expected one 2D slice")
        source = header if frame is not None else ds
        if k == 0:
            no_rescale = "RescaleIntercept" not in source and "RescaleSlope" not in source
        slope = float(source.get("RescaleSlope", 1.0) or 1.0)
        inter = float(source.get("RescaleIntercept", 0.0) or 0.0)
        vol[:, :, k] = (px.astype(np.float64) * slope + inter).T
    if no_rescale and float(vol.min()) > -200.0:
        raise InputError(
            f"DICOM series {chosen.uid} in {folder} has no RescaleIntercept or RescaleSlope and "
            f"its stored values run {float(vol.min()):g}..{float(vol.max()):g}: raw scanner "
            "numbers, not Hounsfield units (air would be near -1000); expected a CT export with "
            "its rescale tags; export the series again with them"
        )
    extra = {
        "dicom": {
            "series_uid": chosen.uid,
            "study_uid": str(first.get("StudyInstanceUID", "")),
            "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
            "sop_instance_uids": [str(items[i][1].get("SOPInstanceUID", "")) for i in order],
            "frames": [frames[i] for i in order] if any(f is not None for f in frames) else None,
            "files": [str(items[i][0]) for i in order],
            "modality": chosen.modality,
            "description": chosen.description,
        }
    }
    log.info("read DICOM series %s: %d slices", chosen, len(order))
    return RawImage(vol, lps_to_ras(lps), "dicom", extra)
