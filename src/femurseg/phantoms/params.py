"""Frozen, validated parameters of the phantom renderer and generator.

Every number the render side draws from lives here, as a ``(low, high)`` range sampled once per
case (uniform unless stated). Hounsfield units (HU) are as a scanner stores them; lengths are in
millimetres. The defaults are taken from published CT ranges and tuned against the real example
CT in ``../shared/data/totalseg_example`` (see ``scripts/realism_figure.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

from femurseg.config import check_range
from femurseg.errors import ConfigError

Range = tuple[float, float]


class FovKind(str, enum.Enum):
    """Which part of the lower body a phantom's image covers."""

    FULL = "full"  # iliac crests to ankles
    HIP = "hip"  # iliac crests to below the lesser trochanters
    THIGHS = "thighs"  # both whole femurs, hip joint to knee joint
    KNEE = "knee"  # distal femur, knee, proximal tibia; no femoral head
    ONE_LEG = "one_leg"  # field of view centred on one leg, the other partly or wholly out
    CUT = "cut"  # a field of view whose edge cuts through a femur
    LEGS = "legs"  # lower legs: knee to ankle, at most the condyle tips at the top edge
    ABDOMEN = "abdomen"  # lumbar spine, sacrum and iliac wings, above the femoral heads
    HEAD_TOPS = "head_tops"  # pelvis with only the top few mm of the femoral heads
    DISTAL = "distal"  # knee with only the last few cm of the femur
    MIXED = "mixed"  # draw one of the above per case


#: Orientation codes a case may be written in (nibabel axis codes of the file's i, j, k axes).
ORIENTATIONS: tuple[str, ...] = ("RAS", "LPS", "LAS", "PIR", "LPI", "ASR", "RPS")


def _check_range_pair(name: str, r: Range, lo: float, hi: float) -> None:
    if len(r) != 2:
        raise ConfigError(f"{name}={r!r} must be a (low, high) pair")
    check_range(f"{name}[0]", float(r[0]), lo, hi)
    check_range(f"{name}[1]", float(r[1]), lo, hi)
    if r[0] > r[1]:
        raise ConfigError(f"{name}={r!r} has low > high; give it as (low, high)")


def _check_ranges(obj: object, lo: float, hi: float) -> None:
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            _check_range_pair(f.name, v, lo, hi)


@dataclass(frozen=True)
class TissueParams:
    """Per-case HU ranges of each tissue and the geometry of the soft tissue (mm).

    Attributes:
        fat_hu, muscle_hu, skin_hu, fluid_hu, bowel_hu, gas_hu: soft tissue HU ranges.
        liver_hu, spleen_hu, kidney_hu, blood_hu, disc_hu, stool_hu: abdominal organs, the great
            vessels, intervertebral discs and colonic contents (unenhanced CT).
        air_hu: air outside the body (a scanner's air reads slightly above -1024).
        table_shell_hu, table_foam_hu, mattress_hu: the patient table (carbon-fibre skins, foam
            core) and the pad on it (foam, reading well above air, under a vinyl cover whose HU
            is ``pad_cover_hu``).
        cortical_dense_hu, cortical_porotic_hu: cortical bone HU for young dense bone and for
            osteoporotic bone; a per-case bone quality in [0, 1] interpolates between them.
        cancellous_dense_hu, cancellous_porotic_hu: cancellous bone HU, as above.
        marrow_hu: fatty medullary canal.
        trabecular_contrast: relative amplitude of the trabecular texture in cancellous bone.
        trabecular_grain_mm: grain size of that texture (fine in young bone, coarse in old).
        cancellous_variation: slow variation of cancellous density within one bone, as a
            fraction of (cancellous - fat) HU: fatty regions (e.g. in condyles and epiphyses of
            older bone) beside denser ones.
        cortex_shaft_mm: cortical thickness in the femoral/tibial diaphysis (dense bone end).
        cortex_end_mm: thickness of the subchondral plate at the joint surfaces (femoral head,
            condyles, tibial ends; down to a third of a render voxel: the plate is often
            thinner than the step it is drawn at, and a 3 mm CT shows no rim there at all).
        cortex_metaphysis_mm: cortical thickness of the rest of each long bone's end
            (metaphyses, femoral neck, calcar, trochanters), never thinner than the joint
            plate: thin (about 1 mm) but far thicker than a subchondral plate.
        end_plate_density: HU of the long bones' shell at their joint surfaces (subchondral
            plates: the femoral head, the condyles, the tibia's ends) as a fraction of the
            shaft's cortical HU: the plates are porous and far less dense than diaphyseal
            cortex.
        metaphysis_density: HU of that metaphyseal cortex as a fraction of the shaft's
            cortical HU: denser than the joint plates, but in older bone not as dense as the
            diaphysis (on the real 3 mm hip CT the proximal femur's edge peaks at a median of
            421 HU, where 3 mm phantoms with shaft-dense metaphyses read 429-574, median 508:
            ``scripts/edge_peak.py``).
        head_cancellous_hu: HU added to the cancellous bone inside the femoral head (fading
            out over 8 mm into the neck): a head's compressive trabeculae make it the densest
            cancellous bone of the femur (the real 3 mm hip CT's right head core reads 205 HU,
            its intertrochanteric marrow about 30; without this, 3 mm hip phantoms' head
            cores read 34-200 HU, median 98: ``scripts/edge_peak.py``).
        sourcil_mm: extra thickness of the subchondral plate in the roof of each acetabulum
            (the sourcil, the dense line over the femoral head on every hip CT and radiograph).
        cortex_pelvis_mm: cortical thickness of the pelvis and patella.
        porotic_cortex_factor: cortical thickness multiplier for osteoporotic bone.
        subcut_fat_mm: subcutaneous fat thickness over the thigh (thin to obese).
        marbling: fraction of intramuscular fat (lean to fatty muscle).
        fascia_mm: width of the fat planes between muscle groups.
        skin_mm: skin thickness.
        muscle_margin_mm: least muscle around any bone, so bones never touch fat or air.
        thigh_ml_mm, thigh_ap_mm, calf_mm, knee_mm, ankle_mm: muscle compartment semi-axes.
        gluteal_mm: muscle thickness behind and beside the pelvis.
        bladder_mm: bladder semi-axes range.
        gas_fraction: fraction of bowel volume holding gas.
        bone_quality_a, bone_quality_b: shape parameters of the Beta distribution of the
            per-case bone quality (0 osteoporotic, 1 young dense); b > a skews it low because
            CT patients are mostly older.
    """

    fat_hu: Range = (-112.0, -88.0)
    muscle_hu: Range = (28.0, 52.0)
    skin_hu: Range = (10.0, 60.0)
    fluid_hu: Range = (0.0, 20.0)
    bowel_hu: Range = (15.0, 45.0)
    gas_hu: Range = (-1000.0, -900.0)
    liver_hu: Range = (45.0, 70.0)
    spleen_hu: Range = (38.0, 55.0)
    kidney_hu: Range = (25.0, 40.0)
    blood_hu: Range = (30.0, 50.0)
    disc_hu: Range = (70.0, 110.0)
    stool_hu: Range = (-80.0, 20.0)
    air_hu: Range = (-1005.0, -990.0)
    table_shell_hu: Range = (300.0, 800.0)
    table_foam_hu: Range = (-990.0, -940.0)
    mattress_hu: Range = (-850.0, -550.0)
    pad_cover_hu: Range = (-150.0, 150.0)
    cortical_dense_hu: Range = (1100.0, 1500.0)
    cortical_porotic_hu: Range = (550.0, 850.0)
    cancellous_dense_hu: Range = (150.0, 380.0)
    cancellous_porotic_hu: Range = (-40.0, 110.0)
    marrow_hu: Range = (-50.0, 60.0)
    trabecular_contrast: Range = (0.25, 0.8)
    trabecular_grain_mm: Range = (0.4, 1.1)
    cancellous_variation: Range = (0.0, 0.6)
    cortex_shaft_mm: Range = (4.5, 7.0)
    cortex_end_mm: Range = (0.3, 1.5)
    cortex_pelvis_mm: Range = (1.0, 2.0)
    porotic_cortex_factor: Range = (0.6, 0.8)
    subcut_fat_mm: Range = (4.0, 40.0)
    marbling: Range = (0.02, 0.25)
    fascia_mm: Range = (1.0, 2.5)
    skin_mm: Range = (1.5, 2.5)
    muscle_margin_mm: Range = (4.0, 8.0)
    thigh_ml_mm: Range = (55.0, 75.0)
    thigh_ap_mm: Range = (55.0, 72.0)
    knee_mm: Range = (38.0, 46.0)
    calf_mm: Range = (40.0, 55.0)
    ankle_mm: Range = (24.0, 30.0)
    gluteal_mm: Range = (30.0, 60.0)
    bladder_mm: Range = (25.0, 50.0)
    gas_fraction: Range = (0.02, 0.15)
    end_plate_density: Range = (0.4, 1.0)
    sourcil_mm: Range = (0.0, 3.0)
    cortex_metaphysis_mm: Range = (0.6, 1.5)
    metaphysis_density: Range = (0.6, 1.0)
    head_cancellous_hu: Range = (80.0, 220.0)
    bone_quality_a: float = 1.4
    bone_quality_b: float = 2.2

    def __post_init__(self) -> None:
        _check_ranges(self, -3024.0, 30000.0)
        _check_range_pair("end_plate_density", self.end_plate_density, 0.1, 1.0)
        _check_range_pair("metaphysis_density", self.metaphysis_density, 0.1, 1.0)
        check_range("bone_quality_a", self.bone_quality_a, 0.1, 100.0)
        check_range("bone_quality_b", self.bone_quality_b, 0.1, 100.0)


@dataclass(frozen=True)
class TableParams:
    """The patient table and the pad on it (mm; HU are in :class:`TissueParams`).

    The table is a curved carbon-fibre sandwich, ``y_top(x) = y0 + curve * (x - xc)**2``: thin
    skins over a foam core that reads like air. The patient lies on it directly or on a thin
    pad.

    Attributes:
        curve: curvature of the table top, 1/mm (real tables rise 30-70 mm at their edges).
        width_mm: width of the table.
        thickness_mm: depth of the sandwich (top skin to bottom skin).
        top_skin_mm, bottom_skin_mm: carbon skin thicknesses.
        pad_probability: chance that a pad lies between table and patient.
        pad_mm: pad thickness when present.
        pad_cover_mm: the pad's denser cover (vinyl) on its top face.
        sink_fraction: how far the body sinks into the support, as a fraction of its
            subcutaneous fat depth (soft tissue flattens on the table).
    """

    curve: Range = (6e-4, 1.8e-3)
    width_mm: Range = (420.0, 520.0)
    thickness_mm: Range = (25.0, 55.0)
    top_skin_mm: Range = (1.0, 2.5)
    bottom_skin_mm: Range = (1.5, 3.0)
    pad_probability: float = 0.6
    pad_mm: Range = (3.0, 30.0)
    pad_cover_mm: Range = (0.5, 1.5)
    sink_fraction: Range = (0.2, 0.5)

    def __post_init__(self) -> None:
        check_range("pad_probability", self.pad_probability, 0.0, 1.0)
        _check_ranges(self, 0.0, 1000.0)


@dataclass(frozen=True)
class TrunkParams:
    """The lumbar spine and abdomen above the pelvis (mm, degrees), drawn per case.

    Attributes:
        body_height_mm: vertebral body height (L3; L1 is a little lower, L5 a little higher).
        disc_height_mm: intervertebral disc height.
        body_width_mm: medio-lateral width of the vertebral body (L3).
        body_depth_mm: antero-posterior depth of the vertebral body (L3).
        sacral_slope_deg: tilt of the S1 endplate from horizontal (faces anteriorly).
        lordosis_deg: L1-S1 lordosis (how far the spine's axis turns back between them).
        transverse_mm: length of the transverse processes beyond the pedicles.
        spinous_mm: length of the spinous processes behind the laminae.
        psoas_mm: psoas radius at L5 (it tapers to a third of that at L1).
        kidney_mm: kidney half-length (its width and depth follow from it).
        liver_below_crest_mm: height of the liver's lower tip above the iliac crest.
        colon_mm: radius of the ascending and descending colon.
        aorta_mm: radius of the abdominal aorta.
    """

    body_height_mm: Range = (24.0, 30.0)
    disc_height_mm: Range = (7.0, 12.0)
    body_width_mm: Range = (42.0, 52.0)
    body_depth_mm: Range = (30.0, 37.0)
    sacral_slope_deg: Range = (25.0, 45.0)
    lordosis_deg: Range = (30.0, 60.0)
    transverse_mm: Range = (16.0, 28.0)
    spinous_mm: Range = (22.0, 32.0)
    psoas_mm: Range = (16.0, 26.0)
    kidney_mm: Range = (50.0, 60.0)
    liver_below_crest_mm: Range = (40.0, 110.0)
    colon_mm: Range = (15.0, 25.0)
    aorta_mm: Range = (8.0, 12.0)

    def __post_init__(self) -> None:
        _check_ranges(self, 0.0, 1000.0)


@dataclass(frozen=True)
class ImplantParams:
    """Metal implants and their artefacts.

    Attributes:
        hip_probability: chance per femur of a hip stem (metal head, stem, acetabular cup).
        knee_probability: chance per leg of a total knee (femoral component, tibial tray).
        fixation_probability: chance per femur (without a hip stem) of a proximal fracture
            fixation: lag screw with side plate or nail, or cannulated screws; the head is
            kept and stays femur.
        metal_hu: true HU of the metal before the scanner's range clips it.
        head_radius_mm: prosthetic head radius.
        stem_length_mm: length of the stem below the neck.
        streak_strength: scale of beam-hardening / photon-starvation streaks.
        streak_pixel_mm: pixel size of the reduced-resolution projector used for streaks.
        streak_angles: number of projection angles of that projector.
        streak_z_step_mm: slices with metal get streaks computed every this many mm and
            interpolated between.
    """

    hip_probability: float = 0.1
    knee_probability: float = 0.05
    fixation_probability: float = 0.06
    metal_hu: Range = (4000.0, 9000.0)
    head_radius_mm: Range = (14.0, 18.0)
    stem_length_mm: Range = (110.0, 160.0)
    streak_strength: Range = (0.6, 1.4)
    streak_pixel_mm: float = 3.0
    streak_angles: int = 180
    streak_z_step_mm: float = 4.0

    def __post_init__(self) -> None:
        check_range("hip_probability", self.hip_probability, 0.0, 1.0)
        check_range("knee_probability", self.knee_probability, 0.0, 1.0)
        check_range("fixation_probability", self.fixation_probability, 0.0, 1.0)
        check_range("streak_pixel_mm", self.streak_pixel_mm, 0.25, 10.0)
        check_range("streak_angles", self.streak_angles, 8, 2000)
        check_range("streak_z_step_mm", self.streak_z_step_mm, 0.1, 20.0)
        _check_ranges(self, 0.0, 30000.0)


@dataclass(frozen=True)
class ScannerParams:
    """The scanner model: resolution, noise, stored value range.

    Attributes:
        psf_fwhm_mm: in-plane point-spread function FWHM (reconstruction kernel sharpness).
        slice_profile_fwhm_mm: extra z blur beyond the slice thickness itself.
        noise_sd_hu: noise SD in HU for a 1 mm slice of a reference-size (300 mm) body; thicker
            slices get less (1/sqrt(thickness)), larger bodies more.
        noise_size_power: noise grows as (water-equivalent diameter / 300 mm) ** this.
        noise_grain_mm: correlation length of the noise grain (peak of the noise power spectrum).
        max_render_mm: the largest step the renderer samples at; coarser output is rendered
            finer and averaged (partial volume, slice integration).
        extended_range_probability: chance a case stores HU above 3071 (extended CT scale).
        circle_probability: chance the image shows the circular reconstruction field with a
            padding value outside it.
        padding_values: values scanners write outside the reconstruction circle.
        air_gap_mm: least air kept around the body inside the field of view (x, y).
        tight_fov_probability: chance that the field of view is narrower than the body, as
            in many pelvic scans (no air gap at the sides; the hips may be cut).
        tight_fov_cut_mm: how far each side edge of such a field of view cuts into the body.
        sharp_kernel_probability: chance of a sharp (bone) reconstruction kernel, whose edge
            overshoot (a bright rim outside the cortex and a dark one inside) is modelled as an
            in-plane unsharp mask of strength ``edge_overshoot`` and width
            ``overshoot_mm``.
        edge_overshoot: range of that strength (0 none; 1 a strong bone kernel).
        overshoot_mm: range of the unsharp mask's Gaussian sigma, mm.
    """

    psf_fwhm_mm: Range = (0.8, 2.0)
    slice_profile_fwhm_mm: Range = (0.3, 1.0)
    noise_sd_hu: Range = (12.0, 32.0)
    noise_size_power: Range = (0.5, 1.5)
    noise_grain_mm: Range = (0.7, 1.2)
    max_render_mm: float = 1.25
    extended_range_probability: float = 0.2
    circle_probability: float = 0.5
    padding_values: tuple[float, ...] = (-1024.0, -2048.0, -3024.0)
    air_gap_mm: Range = (5.0, 40.0)
    tight_fov_probability: float = 0.3
    tight_fov_cut_mm: Range = (0.0, 35.0)
    sharp_kernel_probability: float = 0.35
    edge_overshoot: Range = (0.2, 1.0)
    overshoot_mm: Range = (0.6, 1.5)

    def __post_init__(self) -> None:
        check_range("max_render_mm", self.max_render_mm, 0.2, 5.0)
        check_range("sharp_kernel_probability", self.sharp_kernel_probability, 0.0, 1.0)
        check_range("tight_fov_probability", self.tight_fov_probability, 0.0, 1.0)
        check_range("extended_range_probability", self.extended_range_probability, 0.0, 1.0)
        check_range("circle_probability", self.circle_probability, 0.0, 1.0)
        if not self.padding_values:
            raise ConfigError("padding_values is empty; give at least one value such as -1024")
        for v in self.padding_values:
            check_range("padding_values", v, -32768.0, -1024.0)
        _check_ranges(self, 0.0, 1000.0)


@dataclass(frozen=True)
class VesselParams:
    """Intravenous contrast and the arteries of the pelvis and legs (HU, mm), drawn per case.

    Many lower-limb CTs are contrast-enhanced: a run-off angiogram (arterial phase) puts
    arteries of 250-550 HU beside the femur from the groin to the popliteal fossa, a portal
    venous abdomen-pelvis scan enhances kidneys, liver, spleen and veins, and a delayed scan
    fills the bladder with excreted contrast. Older patients' arteries also carry calcified
    plaques (bright specks on the wall) with or without contrast. All default to off, so the
    documented phantom sets stay reproducible; ``configs/phantom_vessels.json`` turns them on.

    Attributes:
        contrast_probability: chance per case of intravenous contrast.
        arterial_share: of the contrast cases, the share in arterial phase (the rest portal
            venous).
        artery_arterial_hu, artery_venous_hu: arterial lumen HU in each phase (the aorta too).
        vein_venous_hu: venous lumen HU in the portal venous phase (unenhanced in arterial).
        kidney_enhanced_hu, liver_venous_hu, spleen_enhanced_hu: enhanced organ HU.
        excretion_probability: chance, given contrast, of excreted contrast in the bladder.
        bladder_excreted_hu: HU of such a bladder.
        calcification_probability: chance per case of calcified arterial plaques.
        plaque_fraction: share of the arteries' length carrying plaque, in such a case.
        calcification_hu: plaque HU.
        artery_scale: per-case factor on the arteries' radii (common femoral about 4 mm).
    """

    contrast_probability: float = 0.0
    arterial_share: float = 0.5
    artery_arterial_hu: Range = (250.0, 550.0)
    artery_venous_hu: Range = (130.0, 220.0)
    vein_venous_hu: Range = (120.0, 200.0)
    kidney_enhanced_hu: Range = (140.0, 260.0)
    liver_venous_hu: Range = (95.0, 135.0)
    spleen_enhanced_hu: Range = (95.0, 150.0)
    excretion_probability: float = 0.15
    bladder_excreted_hu: Range = (150.0, 700.0)
    calcification_probability: float = 0.0
    plaque_fraction: Range = (0.03, 0.2)
    calcification_hu: Range = (400.0, 1100.0)
    artery_scale: Range = (0.8, 1.2)

    def __post_init__(self) -> None:
        for name in (
            "contrast_probability",
            "arterial_share",
            "excretion_probability",
            "calcification_probability",
        ):
            check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range_pair("plaque_fraction", self.plaque_fraction, 0.0, 1.0)
        _check_range_pair("artery_scale", self.artery_scale, 0.3, 3.0)
        _check_ranges(self, 0.0, 3000.0)


@dataclass(frozen=True)
class ThoraxParams:
    """The lower chest above the lumbar spine (mm, HU), drawn per case.

    Many lower-limb CTs start high: a run-off angiogram from the diaphragm, a trauma or
    chest-abdomen-pelvis scan. Above L1 come the lower thoracic vertebrae with their ribs, the
    lung bases behind and beside the diaphragm's domes, and the heart on top of them. Off by
    default, so the documented phantom sets stay reproducible; ``configs/phantom_thorax.json``
    turns it on.

    Attributes:
        probability: chance per case that the trunk continues into the lower chest; such a
            case's views that reach above the pelvis may end up to ``reach_mm`` above L1.
        reach_mm: how far above L1's top such a view may end.
        rib_radius_mm: rib cross-section radius (the rib is half again as tall as thick).
        rib_drop: how far a rib falls from its head to the front of the chest, in vertebral
            levels (about 27 mm each).
        dome_above_l1_mm: height of the right diaphragm dome above L1's top.
        left_dome_lower_mm: how much lower the left dome sits.
        lung_hu: lung base HU (denser by up to 100 HU towards the back, the dependent side).
        heart_mm: heart length (base to apex); its width and depth follow from it.
    """

    probability: float = 0.0
    reach_mm: Range = (40.0, 200.0)
    rib_radius_mm: Range = (4.0, 5.5)
    rib_drop: Range = (2.2, 3.6)
    dome_above_l1_mm: Range = (25.0, 90.0)
    left_dome_lower_mm: Range = (5.0, 20.0)
    lung_hu: Range = (-900.0, -780.0)
    heart_mm: Range = (110.0, 140.0)

    def __post_init__(self) -> None:
        check_range("probability", self.probability, 0.0, 1.0)
        _check_range_pair("lung_hu", self.lung_hu, -1000.0, -300.0)
        _check_range_pair("rib_drop", self.rib_drop, 0.0, 6.0)
        for name in ("reach_mm", "rib_radius_mm", "dome_above_l1_mm", "left_dome_lower_mm"):
            _check_range_pair(name, getattr(self, name), 0.0, 400.0)
        _check_range_pair("heart_mm", self.heart_mm, 50.0, 200.0)


@dataclass(frozen=True)
class ArmsParams:
    """Arms lying down along the body (mm), drawn per case; never labelled.

    In trauma, whole-body and many hip scans the arms are not raised: a forearm (radius and
    ulna, long bones with a thick cortex) lies beside the hip and the hand beside or on the
    thigh, inside or next to a femur's box. Off by default, so the documented phantom sets
    stay reproducible.

    Attributes:
        probability: chance per case that the arms lie along the body.
        one_arm_probability: of those, chance that only one of them does.
        lap_probability: chance per arm of the ``lap`` pose (elbow bent, forearm over the
            front of the hip, hand palm down on the thigh) rather than ``side`` (arm straight,
            hand down the outside of the thigh).
        elbow_above_crest_mm: elbow height above the iliac crest's top.
        forearm_mm: elbow to wrist.
        hand_mm: wrist to fingertip; the hand's widths and the arm's radii scale with it.
        fat_mm: fat under the skin of the upper arm (less on the forearm, little on the hand).
        gap_mm: air between the arm's skin and the body's (0: touching).
        humerus_radius_mm: humeral shaft radius above the elbow.
        epicondyle_mm: width of the humerus's lower end (epicondyle to epicondyle).
        forearm_bone_radius_mm: radius and ulna shaft radii.
        forearm_bone_gap_mm: centre distance of radius and ulna at the wrist.
        finger_curl_deg: how far the fingers bend towards the palm.
    """

    probability: float = 0.0
    one_arm_probability: float = 0.25
    lap_probability: float = 0.4
    elbow_above_crest_mm: Range = (-20.0, 90.0)
    forearm_mm: Range = (225.0, 285.0)
    hand_mm: Range = (165.0, 200.0)
    fat_mm: Range = (3.0, 20.0)
    gap_mm: Range = (0.0, 20.0)
    humerus_radius_mm: Range = (9.0, 12.0)
    epicondyle_mm: Range = (52.0, 66.0)
    forearm_bone_radius_mm: Range = (5.5, 7.5)
    forearm_bone_gap_mm: Range = (18.0, 26.0)
    finger_curl_deg: Range = (0.0, 35.0)

    def __post_init__(self) -> None:
        for name in ("probability", "one_arm_probability", "lap_probability"):
            check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range_pair("elbow_above_crest_mm", self.elbow_above_crest_mm, -200.0, 300.0)
        _check_range_pair("forearm_mm", self.forearm_mm, 150.0, 350.0)
        _check_range_pair("hand_mm", self.hand_mm, 120.0, 250.0)
        for name in ("fat_mm", "gap_mm"):
            _check_range_pair(name, getattr(self, name), 0.0, 60.0)
        for name in ("humerus_radius_mm", "forearm_bone_radius_mm"):
            _check_range_pair(name, getattr(self, name), 2.0, 20.0)
        _check_range_pair("epicondyle_mm", self.epicondyle_mm, 30.0, 90.0)
        _check_range_pair("forearm_bone_gap_mm", self.forearm_bone_gap_mm, 8.0, 40.0)
        _check_range_pair("finger_curl_deg", self.finger_curl_deg, 0.0, 90.0)


@dataclass(frozen=True)
class JointTissueParams:
    """Articular cartilage and menisci in the joint spaces (see
    :mod:`femurseg.phantoms.tissues.joints`), drawn per case. Off by default, so the documented
    phantom sets stay reproducible; ``configs/phantom_osteophytes.json`` turns it on with the
    osteophytes.

    Attributes:
        probability: chance per case that the joint spaces show cartilage.
        hu: the cartilage HU range (one value drawn per case).
        depth_mm: a non-bone voxel within this distance of both bones of a joint is cartilage.
    """

    probability: float = 0.0
    hu: Range = (60.0, 120.0)
    depth_mm: float = 3.0

    def __post_init__(self) -> None:
        check_range("probability", self.probability, 0.0, 1.0)
        _check_range_pair("hu", self.hu, -100.0, 400.0)
        check_range("depth_mm", self.depth_mm, 0.5, 10.0)


@dataclass(frozen=True)
class FractureParams:
    """Displaced femoral fractures (see :mod:`femurseg.phantoms.anatomy.fractures`), drawn
    per femur; both pieces are labelled femur. Off by default, so the documented phantom sets
    stay reproducible.

    Attributes:
        probability: chance per femur of a fracture.
        kind_weights: relative chance of a ``neck``, ``trochanteric`` and ``shaft`` fracture.
        neck_depth_radii: where a neck fracture crosses the neck, in head radii from the head's
            centre (1: subcapital, 1.5: transcervical).
        neck_turn_deg: the head fragment's turn in the acetabulum.
        trochanteric_turn_deg: the proximal fragment's turn (mostly varus).
        shaft_offset_mm: how far a shaft fracture's ends are shifted against each other.
        gap_mm: gap between the pieces (0: impacted).
    """

    probability: float = 0.0
    kind_weights: tuple[float, float, float] = (0.45, 0.35, 0.2)
    neck_depth_radii: Range = (0.9, 1.5)
    neck_turn_deg: Range = (8.0, 35.0)
    trochanteric_turn_deg: Range = (5.0, 25.0)
    shaft_offset_mm: Range = (3.0, 20.0)
    gap_mm: Range = (0.0, 3.0)

    def __post_init__(self) -> None:
        check_range("probability", self.probability, 0.0, 1.0)
        if len(self.kind_weights) != 3 or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ConfigError(
                f"kind_weights={self.kind_weights!r}; expected three weights >= 0 (neck, "
                "trochanteric, shaft), not all zero"
            )
        _check_range_pair("neck_depth_radii", self.neck_depth_radii, 0.5, 3.0)
        _check_range_pair("neck_turn_deg", self.neck_turn_deg, 0.0, 90.0)
        _check_range_pair("trochanteric_turn_deg", self.trochanteric_turn_deg, 0.0, 60.0)
        _check_range_pair("shaft_offset_mm", self.shaft_offset_mm, 0.0, 60.0)
        _check_range_pair("gap_mm", self.gap_mm, 0.0, 20.0)


@dataclass(frozen=True)
class OsteophyteParams:
    """Osteoarthritic spurs at the joint margins (see
    :mod:`femurseg.phantoms.anatomy.osteophytes`), drawn per case. Off by default, so the
    documented phantom sets stay reproducible; ``configs/phantom_osteophytes.json`` turns them
    on.

    Attributes:
        probability: chance per case of osteoarthritis (osteophytes at some joints).
        joint_probability: in such a case, the chance that each joint of each leg (hip, knee,
            patellofemoral) is affected.
        count: least and most osteophytes per bone of an affected joint.
        radius_mm: an osteophyte's radius along the bone surface (its thickness out of the
            surface is 0.6 of it), shrunk where the neighbouring bone is near.
    """

    probability: float = 0.0
    joint_probability: float = 0.6
    count: tuple[int, int] = (3, 12)
    radius_mm: Range = (1.5, 5.0)

    def __post_init__(self) -> None:
        check_range("probability", self.probability, 0.0, 1.0)
        check_range("joint_probability", self.joint_probability, 0.0, 1.0)
        if len(self.count) != 2 or not 0 <= self.count[0] <= self.count[1] <= 100:
            raise ConfigError(
                f"count={self.count!r}; expected [least, most] with 0 <= least <= most <= 100"
            )
        _check_range_pair("radius_mm", self.radius_mm, 0.5, 20.0)


@dataclass(frozen=True)
class PhantomConfig:
    """Everything :func:`femurseg.phantoms.generate.generate_case` needs, frozen and validated.

    Attributes:
        fov: the field of view kind; ``MIXED`` draws one of the others per case.
        fov_weights: relative chance of each kind under ``MIXED`` (FovKind value -> weight).
        spacing: fixed output spacing (x, y, z) in mm, or None to draw in-plane spacing from
            ``inplane_spacing_mm`` and slice spacing from ``slice_spacing_choices``.
        inplane_spacing_mm: in-plane spacing range in mm.
        slice_spacing_choices: slice spacings (mm) drawn with equal chance.
        orientations: on-disk orientation codes drawn per case (see :data:`ORIENTATIONS`).
        subjects: LLP26 subjects to draw legs from (empty: all).
        exclude_subjects: LLP26 subjects never used (held out for testing).
        recon_circle: allow the circular reconstruction field with padding outside.
        abdomen_probability: chance that a ``hip`` or ``full`` field of view reaches up into
            the lumbar spine (L1-L3) instead of stopping near the iliac crests.
        femur_torsion_deg: impose a femoral torsion (high-neck method) drawn per femur from
            this range, degrees (None: the source bone's own, varied by the deformation).
        femur_length_mm: impose a femoral length drawn per femur from this range, mm.
        femur_truth: measure each posed femur mesh and record the truth in ``dataset.json``.
        max_voxels_m: largest output grid, million voxels. A drawn spacing that would make
            more (a full-leg view at 0.6 mm pixels and 0.625 mm slices is about 1700 M, over
            20 GB to render) is coarsened as a scanner's matrix would limit it: in-plane to a
            768 matrix first, then thicker slices. Cases under it are unchanged; a case at
            the default 600 M peaks at about 10 GB.
        tissues, table, trunk, implants, scanner, vessels, thorax, osteophytes, joints, arms,
            fractures: the render-side parameter groups.
    """

    fov: FovKind = FovKind.MIXED
    fov_weights: dict[str, float] = field(
        default_factory=lambda: {
            "full": 3.0,
            "hip": 2.0,
            "thighs": 2.0,
            "knee": 1.5,
            "one_leg": 1.0,
            "cut": 1.0,
            "legs": 1.0,
            "abdomen": 0.8,
            "head_tops": 0.6,
            "distal": 0.6,
        }
    )
    spacing: tuple[float, float, float] | None = None
    inplane_spacing_mm: Range = (0.6, 1.0)
    slice_spacing_choices: tuple[float, ...] = (0.625, 1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
    orientations: tuple[str, ...] = ORIENTATIONS
    subjects: tuple[str, ...] = ()
    exclude_subjects: tuple[str, ...] = ()
    recon_circle: bool = True
    abdomen_probability: float = 0.4
    max_voxels_m: float = 600.0
    femur_torsion_deg: Range | None = None
    femur_length_mm: Range | None = None
    femur_truth: bool = True
    tissues: TissueParams = field(default_factory=TissueParams)
    table: TableParams = field(default_factory=TableParams)
    trunk: TrunkParams = field(default_factory=TrunkParams)
    implants: ImplantParams = field(default_factory=ImplantParams)
    scanner: ScannerParams = field(default_factory=ScannerParams)
    vessels: VesselParams = field(default_factory=VesselParams)
    thorax: ThoraxParams = field(default_factory=ThoraxParams)
    osteophytes: OsteophyteParams = field(default_factory=OsteophyteParams)
    joints: JointTissueParams = field(default_factory=JointTissueParams)
    arms: ArmsParams = field(default_factory=ArmsParams)
    fractures: FractureParams = field(default_factory=FractureParams)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "fov", FovKind(self.fov))
        except ValueError as e:
            kinds = ", ".join(k.value for k in FovKind)
            raise ConfigError(f"fov={self.fov!r} is unknown; expected one of {kinds}") from e
        for k, w in self.fov_weights.items():
            if k not in {f.value for f in FovKind} or k == FovKind.MIXED.value:
                raise ConfigError(f"fov_weights has unknown kind {k!r}; use kinds other than mixed")
            check_range(f"fov_weights[{k}]", w, 0.0, 1e6)
        if not any(w > 0 for w in self.fov_weights.values()):
            raise ConfigError("fov_weights are all zero; give at least one kind a positive weight")
        if self.spacing is not None:
            if len(self.spacing) != 3:
                raise ConfigError(f"spacing={self.spacing!r} must have 3 values (x, y, z) in mm")
            for i, s in enumerate(self.spacing):
                check_range(f"spacing[{i}]", float(s), 0.2, 10.0)
        check_range("abdomen_probability", self.abdomen_probability, 0.0, 1.0)
        check_range("max_voxels_m", self.max_voxels_m, 0.001, 20000.0)
        _check_range_pair("inplane_spacing_mm", self.inplane_spacing_mm, 0.2, 10.0)
        if self.femur_torsion_deg is not None:
            _check_range_pair("femur_torsion_deg", self.femur_torsion_deg, -40.0, 70.0)
        if self.femur_length_mm is not None:
            _check_range_pair("femur_length_mm", self.femur_length_mm, 300.0, 600.0)
        if not self.slice_spacing_choices:
            raise ConfigError("slice_spacing_choices is empty; give at least one spacing in mm")
        for s in self.slice_spacing_choices:
            check_range("slice_spacing_choices", s, 0.2, 10.0)
        if not self.orientations:
            raise ConfigError("orientations is empty; give at least one code such as 'RAS'")
        for code in self.orientations:
            _check_axcodes(code)
        both = set(self.subjects) & set(self.exclude_subjects)
        if both:
            raise ConfigError(
                f"subjects {sorted(both)} are both used and excluded; drop them from one list"
            )


def _check_axcodes(code: str) -> None:
    pairs = ({"R", "L"}, {"A", "P"}, {"S", "I"})
    ok = len(code) == 3 and all(sum(c in p for c in code) == 1 for p in pairs)
    if not ok:
        raise ConfigError(
            f"orientation {code!r} is not a valid axis code; expected three letters, one each of "
            "R/L, A/P, S/I (e.g. 'LPS')"
        )
