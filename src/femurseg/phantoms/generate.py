"""One synthetic case: anatomy -> body -> field of view -> render -> (image, labels, meta).

``generate_case`` draws everything from the one generator it is given, split into independent
child streams per step, so a seed fixes the whole case and changing one step's parameters
does not reshuffle the others.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.config import to_dict
from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.assemble import assemble, sample_pose
from femurseg.phantoms.anatomy.fractures import draw_fractures
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.osteophytes import draw_osteophytes
from femurseg.phantoms.anatomy.shapes import BoneSet, list_subjects, load_subject
from femurseg.phantoms.anatomy.truth import femur_truth
from femurseg.phantoms.params import PhantomConfig
from femurseg.phantoms.scanner.acquisition import draw_scan
from femurseg.phantoms.scanner.fov import (
    capped_spacing,
    choose_fov,
    choose_kind,
    choose_spacing,
)
from femurseg.phantoms.scanner.render import Rendered, render_ct, timings_meta
from femurseg.phantoms.tissues.arms import place_arms
from femurseg.phantoms.tissues.body import build_body
from femurseg.phantoms.tissues.implants import draw_implants
from femurseg.phantoms.tissues.materials import draw_case_tissues
from femurseg.phantoms.tissues.organs import place_organs
from femurseg.phantoms.tissues.spine import place_spine
from femurseg.phantoms.tissues.thorax import place_thorax
from femurseg.phantoms.tissues.vessels import (
    aorta_at_l4,
    build_vessels,
    draw_vessels,
    enhance_tissues,
)
from femurseg.types import Volume

log = logging.getLogger(__name__)

#: most posing rounds when a torsion or length is imposed, and the tolerance (degrees,
#: relative length) at which the rounds stop.
IMPOSE_STEPS = 4
IMPOSE_TOL = (0.5, 0.002)


@dataclass
class Case:
    """A generated case.

    Attributes:
        image: the CT in canonical form (float32 HU, RAS+ axes, affine in mm).
        labels: uint8 (X, Y, Z) on the image's grid: 0 background, 1 femur_left, 2 femur_right.
        meta: JSON-ready description (subjects, pose, fov, spacing, orientation, implants...).
        rendered: the render result (tissue classes, clean image, timings).
        anatomy: the posed bones it was made from.
    """

    image: Volume
    labels: npt.NDArray[np.uint8]
    meta: dict[str, Any]
    rendered: Rendered
    anatomy: Anatomy

    def __iter__(self):  # type: ignore[no-untyped-def]
        """Unpack as ``image, labels, meta``."""
        return iter((self.image, self.labels, self.meta))


def pick_subjects(cfg: PhantomConfig, shapes_dir: Path) -> list[str]:
    """The LLP26 subjects a config allows (``subjects`` minus ``exclude_subjects``).

    Raises:
        ConfigError: a named subject is not in the folder, or none is left.
    """
    have = list_subjects(shapes_dir)
    for name in (*cfg.subjects, *cfg.exclude_subjects):
        if name not in have:
            raise ConfigError(
                f"subject {name!r} is not in {shapes_dir}; expected one of {', '.join(have)}"
            )
    pool = [s for s in (cfg.subjects or tuple(have)) if s not in cfg.exclude_subjects]
    if not pool:
        raise ConfigError(
            "no LLP26 subjects left after subjects/exclude_subjects; keep at least one"
        )
    return pool


def make_anatomy(
    cfg: PhantomConfig, rng: np.random.Generator, shapes_dir: Path | None
) -> tuple[Anatomy, dict[str, str]]:
    """Pose a lower body: LLP26 subjects (each leg and the pelvis drawn independently) or,
    with ``shapes_dir`` None, procedural bones. Returns the anatomy and the sources used."""
    r_src, r_pose = rng.spawn(2)
    if shapes_dir is None:
        from femurseg.phantoms.anatomy.procedural import procedural_boneset

        bones = procedural_boneset(r_src)
        src = {"pelvis": bones.name, "left": bones.name, "right": bones.name}
        sets: tuple[BoneSet, BoneSet, BoneSet] = (bones, bones, bones)
    else:
        pool = pick_subjects(cfg, Path(shapes_dir))
        names = [pool[int(i)] for i in r_src.integers(len(pool), size=3)]
        src = {"pelvis": names[0], "left": names[1], "right": names[2]}
        sets = tuple(load_subject(shapes_dir, n) for n in names)  # type: ignore[assignment]
    pose = sample_pose(r_pose)
    anatomy = assemble(sets[0], sets[1], sets[2], pose)
    if cfg.femur_torsion_deg is not None or cfg.femur_length_mm is not None:
        from femurseg.phantoms.anatomy.truth import apply_changes, shape_changes

        (r_target,) = rng.spawn(1)  # only drawn here: other cases' streams are unchanged
        targets: dict[str, dict[str, float]] = {}
        for side in ("femur_left", "femur_right"):
            want = {}
            if cfg.femur_torsion_deg is not None:
                want["torsion_deg"] = float(r_target.uniform(*cfg.femur_torsion_deg))
            if cfg.femur_length_mm is not None:
                want["length_mm"] = float(r_target.uniform(*cfg.femur_length_mm))
            targets[side] = want
        # a large twist is not exactly additive (the neck's centre moves as it turns): a few
        # corrections, each measured on the newly posed femur, until within IMPOSE_TOL
        steps = []
        for _ in range(IMPOSE_STEPS):
            changes = shape_changes(anatomy.meshes, targets)
            steps.append(changes)
            if all(
                abs(c.get("twist_deg", 0.0)) < IMPOSE_TOL[0]
                and abs(c.get("length_factor", 1.0) - 1.0) < IMPOSE_TOL[1]
                for c in changes.values()
            ):
                break
            pose = apply_changes(pose, changes)
            anatomy = assemble(sets[0], sets[1], sets[2], pose)
        anatomy.meta["imposed"] = {"targets": targets, "corrections": steps}
    return anatomy, src


def generate_case(
    cfg: PhantomConfig,
    rng: np.random.Generator,
    shapes_dir: Path | None = None,
    keep_clean: bool = False,
) -> Case:
    """Generate one synthetic lower-limb CT with its femur labels.

    Args:
        cfg: the phantom configuration.
        rng: random generator; the same state gives the same case, bit for bit.
        shapes_dir: LLP26 folder (``shapes/llp26``), or None for procedural bones.
        keep_clean: keep the clean (noise-free) image in ``rendered.clean``.

    Returns:
        The :class:`Case`; its image is canonical RAS+ and its ``meta["orientation"]`` is the
        on-disk orientation drawn for writing it.
    """
    t_start = time.perf_counter()
    # later children (the tenth, vessels; the eleventh, the chest; the twelfth, osteophytes;
    # the thirteenth, arms; the fourteenth, fractures) keep the earlier ones, and so every
    # earlier seed's case, unchanged
    (r_anat, r_tis, r_body, r_fov, r_imp, r_scan, r_render, r_misc, r_trunk, r_vessel,
     r_thorax, r_osteo, r_arms, r_frac) = rng.spawn(14)  # fmt: skip
    anatomy, sources = make_anatomy(cfg, r_anat, shapes_dir)
    anatomy.fractures = draw_fractures(anatomy, cfg.fractures, r_frac)
    anatomy.osteophytes = draw_osteophytes(anatomy, cfg.osteophytes, r_osteo)
    spine = place_spine(anatomy, cfg.trunk, r_trunk)
    organs = place_organs(spine, float(anatomy.landmarks["pelvis_top"][2]), cfg.trunk, r_trunk)
    t_anat = time.perf_counter() - t_start
    tissues = draw_case_tissues(cfg.tissues, r_tis)
    body = build_body(anatomy, tissues, r_body, cfg.table, spine, organs)
    vessels = draw_vessels(cfg.vessels, r_vessel)
    tissues = enhance_tissues(tissues, vessels, cfg.vessels, r_vessel)
    body.vessels = build_vessels(anatomy, aorta_at_l4(spine, organs), vessels, r_vessel)
    body.thorax = place_thorax(spine, partial(body.at, body.trunk), cfg.thorax, r_thorax)
    legs_at = {side: partial(body.at, prof) for side, prof in body.legs.items()}
    body.arms = place_arms(
        legs_at, partial(body.at, body.trunk), anatomy.landmarks, cfg.arms, r_arms
    )
    kind = choose_kind(cfg, r_fov)
    spacing = choose_spacing(cfg, r_fov)
    scan = draw_scan(cfg.scanner, cfg.implants, r_scan, cfg.recon_circle)
    sc = cfg.scanner
    # the same draws again if the first grid is too large (only the spacing changes)
    r_fov_again = copy.deepcopy(r_fov)

    def field(rng: np.random.Generator, step: tuple[float, float, float]) -> Any:
        return choose_fov(
            kind,
            anatomy,
            body,
            step,
            sc.air_gap_mm,
            scan.padding is not None,
            rng,
            spine,
            cfg.abdomen_probability,
            (sc.tight_fov_probability, *sc.tight_fov_cut_mm),
        )

    fov = field(r_fov, spacing)
    coarser = capped_spacing(fov.grid.shape, spacing, cfg.max_voxels_m * 1e6)
    if coarser != spacing:
        log.info(
            "grid %s at %s mm is over %g M voxels; spacing %s mm instead",
            fov.grid.shape,
            spacing,
            cfg.max_voxels_m,
            coarser,
        )
        spacing = coarser
        fov = field(r_fov_again, spacing)
    implants = draw_implants(cfg.implants, r_imp)
    # a hip stem replaces a broken neck and a fixation holds the pieces together: no displaced
    # fracture on a side with either
    fixed = {i.side for i in implants if i.kind in ("hip", "fixation")}
    anatomy.fractures = [f for f in anatomy.fractures if f.side not in fixed]
    rendered = render_ct(anatomy, body, tissues, implants, fov, scan, cfg, r_render, keep_clean)
    orientation = str(cfg.orientations[int(r_misc.integers(len(cfg.orientations)))])
    image = Volume(rendered.image, fov.grid.affine)
    counts = np.bincount(rendered.labels.ravel(), minlength=3)
    meta: dict[str, Any] = {
        "subjects": sources,
        "anatomy": anatomy.meta,
        "fov": fov.to_meta(),
        "spacing": list(fov.grid.spacing),
        "orientation": orientation,
        "implants": [i.to_meta() for i in implants],
        "tissues": tissues.to_meta(),
        "table": _jsonable(body.table.__dict__),
        "spine": {"s1_top": spine.s1_top, "l1_top_z": spine.top_z},
        "organs": organs.to_meta(),
        "vessels": vessels.to_meta(),
        "scanner": scan.to_meta(),
        "label_voxels": {"femur_left": int(counts[1]), "femur_right": int(counts[2])},
        "femur_truth": femur_truth(anatomy.meshes) if cfg.femur_truth else None,
        "timings_s": {
            "anatomy": round(t_anat, 3),
            **timings_meta(rendered),
            "total": round(time.perf_counter() - t_start, 3),
        },
    }
    if body.thorax is not None:  # absent otherwise, so earlier sets' records stay the same
        meta["thorax"] = _jsonable(body.thorax.to_meta())
    if anatomy.fractures:  # likewise
        meta["fractures"] = [f.to_meta() for f in anatomy.fractures]
    if body.arms:  # likewise
        meta["arms"] = [a.to_meta() for a in body.arms]
    if anatomy.osteophytes:  # likewise
        meta["osteophytes"] = [b.to_meta() for b in anatomy.osteophytes]
    if "joints" in rendered.drawn:  # likewise
        meta["joint_tissue"] = rendered.drawn["joints"]
    log.info("case %s %s in %.1f s", kind.value, fov.grid.shape, meta["timings_s"]["total"])
    return Case(image, rendered.labels, _jsonable(meta), rendered, anatomy)


def _jsonable(v: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays converted)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "__dataclass_fields__"):
        return _jsonable(to_dict(v))
    return v
