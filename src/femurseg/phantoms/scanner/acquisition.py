"""The scanner model: slice integration, blur, metal streaks, correlated noise, stored values.

Applied to a clean phantom in this order (as the physics happens): average the finely rendered
voxels into the output voxels (partial volume, slice sensitivity profile), blur with the
point-spread function in-plane and along z, add metal streaks (sinogram-domain model at
reduced resolution), add correlated noise whose level grows with the body's size, clip to the
scanner's stored range, round to integers, and write the padding value outside the circular
reconstruction field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.params import ImplantParams, ScannerParams
from femurseg.phantoms.tissues.materials import draw

F32 = npt.NDArray[np.float32]

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: reference water-equivalent diameter (mm) at which the noise SD is the drawn value.
REFERENCE_DIAMETER_MM = 300.0
#: Gaussian blurs narrower than this (voxels) are skipped: they change nothing visible.
MIN_BLUR_SIGMA = 0.25
#: slices of correlated noise filtered at once and reused with random shifts (see add_noise).
NOISE_BANK_SLICES = 48
#: stored HU range: conventional 12-bit scale and the extended scale.
HU_MIN = -1024.0
HU_MAX = 3071.0
HU_MAX_EXTENDED = 30000.0
#: metal streak model: beam hardening (HU mm per mm^2 of metal path) and photon starvation
#: (noise HU mm, growing as exp(path / STARVATION_MM)).
BEAM_HARDENING = 2.0
STARVATION_NOISE = 25.0
STARVATION_MM = 12.0


@dataclass(frozen=True)
class ScanDraw:
    """One case's scanner settings drawn from :class:`ScannerParams`."""

    psf_fwhm_mm: float
    slice_profile_fwhm_mm: float
    noise_sd_hu: float
    noise_size_power: float
    noise_grain_mm: float
    extended_range: bool
    padding: float | None
    streak_strength: float
    overshoot: float = 0.0
    overshoot_mm: float = 1.0

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def draw_scan(
    p: ScannerParams, ip: ImplantParams, rng: np.random.Generator, circle: bool
) -> ScanDraw:
    """Draw one case's scanner settings; ``circle`` says whether a recon circle may show."""
    pad = float(rng.choice(p.padding_values))
    show = circle and rng.uniform() < p.circle_probability
    return ScanDraw(
        psf_fwhm_mm=draw(rng, p.psf_fwhm_mm),
        slice_profile_fwhm_mm=draw(rng, p.slice_profile_fwhm_mm),
        noise_sd_hu=draw(rng, p.noise_sd_hu),
        noise_size_power=draw(rng, p.noise_size_power),
        noise_grain_mm=draw(rng, p.noise_grain_mm),
        extended_range=bool(rng.uniform() < p.extended_range_probability),
        padding=pad if show else None,
        streak_strength=draw(rng, ip.streak_strength),
        # drawn last, so that the draws above keep their values for a seed
        overshoot=draw(rng, p.edge_overshoot)
        if rng.uniform() < p.sharp_kernel_probability
        else 0.0,
        overshoot_mm=draw(rng, p.overshoot_mm),
    )


def block_mean(a: F32, f: tuple[int, int, int]) -> F32:
    """Average (fx, fy, fz) blocks of a (X*fx, Y*fy, Z*fz) array into (X, Y, Z), float32."""
    if f == (1, 1, 1):
        return a
    x, y, z = (a.shape[i] // f[i] for i in range(3))
    out = a.reshape(x, f[0], y, f[1], z, f[2]).mean(axis=(1, 3, 5), dtype=np.float32)
    return out.astype(np.float32, copy=False)


def blur(img: F32, grid: RenderGrid, s: ScanDraw) -> None:
    """Point-spread-function blur in place (Gaussian in-plane and along z)."""
    sig = [
        s.psf_fwhm_mm * FWHM_TO_SIGMA / grid.spacing[0],
        s.psf_fwhm_mm * FWHM_TO_SIGMA / grid.spacing[1],
        s.slice_profile_fwhm_mm * FWHM_TO_SIGMA / grid.spacing[2],
    ]
    for ax in range(3):
        if sig[ax] > MIN_BLUR_SIGMA:
            ndi.gaussian_filter1d(img, sig[ax], axis=ax, output=img, truncate=3.0)
    if s.overshoot > 0.0:
        # A sharp bone kernel: edge overshoot in-plane (unsharp mask), bright outside the
        # cortex and dark just inside it, as bone kernels show.
        wide = ndi.gaussian_filter(
            img,
            (s.overshoot_mm / grid.spacing[0], s.overshoot_mm / grid.spacing[1], 0.0),
            truncate=3.0,
        )
        img += np.float32(s.overshoot) * (img - wide)


def water_diameter(img: F32, grid: RenderGrid) -> npt.NDArray[np.float64]:
    """Water-equivalent diameter (mm) of each axial slice of a clean HU image, shape (Z,)."""
    att = np.clip((img + 1000.0) / 1000.0, 0.0, 2.0)
    att[img < -500] = 0.0
    area = att.sum(axis=(0, 1), dtype=np.float64) * grid.spacing[0] * grid.spacing[1]
    return 2.0 * np.sqrt(area / np.pi)


def add_noise(img: F32, grid: RenderGrid, s: ScanDraw, rng: np.random.Generator) -> float:
    """Add correlated noise in place; returns the noise SD (HU) at the reference size.

    The noise power spectrum is band-pass like filtered back-projection noise: white noise
    filtered by a difference of Gaussians in-plane (grain set by ``noise_grain_mm``) and a
    short Gaussian along z, scaled per slice by (water-equivalent diameter / 300 mm) ** power
    and by 1 / sqrt(slice thickness / 1 mm).
    """
    sp = grid.spacing
    diam = water_diameter(img, grid)
    sd_ref = s.noise_sd_hu / np.sqrt(max(sp[2], 0.1))
    scale = sd_ref * np.clip(diam / REFERENCE_DIAMETER_MM, 0.3, 3.0) ** s.noise_size_power
    fine = [0.5 * s.noise_grain_mm / sp[0], 0.5 * s.noise_grain_mm / sp[1]]
    coarse = [2.0 * s.noise_grain_mm / sp[0], 2.0 * s.noise_grain_mm / sp[1]]
    zs = 0.4 / sp[2]
    norm = _kernel_norm(fine, coarse, zs)
    # A bank of NOISE_BANK_SLICES correlated slices is filtered once; each run of slices takes
    # it with its own random circular shift and flips. Filtering every voxel's noise would
    # cost several full-volume passes for a texture that is statistically the same.
    nx, ny, nz = img.shape
    depth = min(nz, NOISE_BANK_SLICES)
    w = (rng.random((nx, ny, depth), dtype=np.float32) - np.float32(0.5)) * np.float32(12**0.5)
    bank = _dog(w, fine, coarse)
    if zs > 0.05:
        ndi.gaussian_filter1d(bank, zs, axis=2, output=bank, truncate=3.0, mode="wrap")
    bank /= np.float32(norm)
    for k0 in range(0, nz, depth):
        k1 = min(k0 + depth, nz)
        sx, sy = int(rng.integers(nx)), int(rng.integers(ny))
        block = np.roll(bank[:, :, : k1 - k0], (sx, sy), axis=(0, 1))
        if rng.uniform() < 0.5:
            block = block[::-1]
        block *= scale[k0:k1].astype(np.float32)[None, None, :]
        img[:, :, k0:k1] += block
    return float(sd_ref)


def _dog(w: F32, fine: list[float], coarse: list[float]) -> F32:
    a = ndi.gaussian_filter(w, [fine[0], fine[1], 0], truncate=3.0)
    b = ndi.gaussian_filter(a, [coarse[0], coarse[1], 0], truncate=3.0)
    a -= np.float32(0.8) * b
    return a


def _kernel_norm(fine: list[float], coarse: list[float], zs: float) -> float:
    """Noise SD after the filters for unit white noise (from the impulse response)."""
    n = int(6 * max(*coarse, zs, 1.0)) * 2 + 1
    delta = np.zeros((n, n, 9), dtype=np.float32)
    delta[n // 2, n // 2, 4] = 1.0
    k = _dog(delta, fine, coarse)
    if zs > 0.05:
        k = ndi.gaussian_filter1d(k, zs, axis=2, truncate=3.0, mode="wrap")
    return float(np.sqrt((k.astype(np.float64) ** 2).sum()))


def finish(img: F32, s: ScanDraw) -> None:
    """Clip to the stored range and round to integers, in place."""
    np.clip(img, HU_MIN, HU_MAX_EXTENDED if s.extended_range else HU_MAX, out=img)
    np.rint(img, out=img)


def circle_mask(
    grid: RenderGrid, centre: tuple[float, float], radius: float
) -> npt.NDArray[np.bool_]:
    """In-plane bool (X, Y) mask of the reconstruction circle (world centre (x, y) mm)."""
    x = grid.axis(0)[:, None] - centre[0]
    y = grid.axis(1)[None, :] - centre[1]
    return np.asarray(x * x + y * y <= radius * radius)


# ---- metal streaks -------------------------------------------------------------------------


def add_streaks(
    img: F32,
    metal: F32,
    k_off: int,
    grid: RenderGrid,
    s: ScanDraw,
    ip: ImplantParams,
    rng: np.random.Generator,
) -> int:
    """Add metal streaks to ``img`` (X, Y, Z) in place from the metal fraction map ``metal``
    (X, Y, Zm), which covers the output slices ``k_off`` to ``k_off + Zm``.

    For every slice with metal (computed every ``streak_z_step_mm`` and interpolated between),
    the metal's path length through a parallel-beam sinogram at ``streak_pixel_mm`` is turned
    into an error sinogram (beam hardening ~ path^2, photon starvation noise growing
    exponentially with path), reconstructed by filtered back-projection and added.

    Returns:
        The number of slices that received streaks.
    """
    zs = np.nonzero(metal.max(axis=(0, 1)) > 0.05)[0]
    if len(zs) == 0:
        return 0
    step = max(int(round(ip.streak_z_step_mm / grid.spacing[2])), 1)
    keys = list(range(int(zs[0]), int(zs[-1]) + 1, step))
    if keys[-1] != zs[-1]:
        keys.append(int(zs[-1]))
    f = max(int(round(ip.streak_pixel_mm / grid.spacing[0])), 1)
    proj = _Projector(img.shape[0], img.shape[1], f, grid.spacing[0] * f, ip.streak_angles)
    errs = np.stack([proj.streaks(metal[:, :, k], s.streak_strength, rng) for k in keys], axis=2)
    k0, k1 = keys[0] + k_off, keys[-1] + 1 + k_off
    if len(keys) == 1:
        img[:, :, k0:k1] += errs
    else:
        zi = np.arange(k0, k1) - k_off
        pos = np.interp(zi, keys, np.arange(len(keys)))
        i0 = np.minimum(np.floor(pos).astype(int), len(keys) - 2)
        t = (pos - i0).astype(np.float32)
        img[:, :, k0:k1] += errs[:, :, i0] * (1 - t) + errs[:, :, i0 + 1] * t
    return int(keys[-1] - keys[0] + 1)


class _Projector:
    """Parallel-beam projector / filtered back-projector on a reduced-resolution slice."""

    def __init__(self, nx: int, ny: int, f: int, pix: float, n_angles: int) -> None:
        self.nx, self.ny, self.f, self.pix = nx, ny, f, pix
        self.cx, self.cy = -(-nx // f), -(-ny // f)
        xs = (np.arange(self.cx) - (self.cx - 1) / 2) * pix
        ys = (np.arange(self.cy) - (self.cy - 1) / 2) * pix
        th = np.linspace(0, np.pi, n_angles, endpoint=False)
        self.cos, self.sin = np.cos(th), np.sin(th)
        self.nb = int(np.ceil(np.hypot(self.cx, self.cy))) + 4
        # Bin coordinate of every reduced pixel for every angle: (angles, pixels).
        self.s = (
            ((xs[:, None, None] * self.cos + ys[None, :, None] * self.sin) / pix + self.nb / 2)
            .reshape(-1, n_angles)
            .T.astype(np.float32)
        )
        bins = np.clip(np.rint(self.s).astype(np.int64), 0, self.nb - 1)
        self.nearest = bins + (np.arange(n_angles) * self.nb)[:, None]
        freqs = np.fft.rfftfreq(2 * self.nb)
        self.ramp = (2 * np.abs(freqs)).astype(np.float32)

    def streaks(self, frac: F32, strength: float, rng: np.random.Generator) -> F32:
        f = self.f
        px = np.zeros((self.cx * f, self.cy * f), dtype=np.float32)
        px[: frac.shape[0], : frac.shape[1]] = frac
        low = px.reshape(self.cx, f, self.cy, f).mean(axis=(1, 3)).ravel()
        idx = np.nonzero(low > 0.02)[0]
        na = len(self.cos)
        sino: npt.NDArray[np.float64] = np.zeros((na, self.nb), dtype=np.float64)
        if len(idx):
            sv = self.s[:, idx]
            b0 = np.floor(sv).astype(np.int64)
            t = sv - b0
            rows = np.arange(na)[:, None] * self.nb
            w = low[idx][None, :] * self.pix
            flat = np.concatenate(
                [
                    (rows + np.clip(b0, 0, self.nb - 1)).ravel(),
                    (rows + np.clip(b0 + 1, 0, self.nb - 1)).ravel(),
                ]
            )
            wt = np.concatenate([((1 - t) * w).ravel(), (t * w).ravel()])
            sino = (
                np.bincount(flat, wt, minlength=na * self.nb)
                .reshape(na, self.nb)
                .astype(np.float64)
            )
        path = sino  # mm of metal along each ray
        err = -BEAM_HARDENING * path**2
        starv = np.expm1(np.minimum(path / STARVATION_MM, 6.0))
        err += STARVATION_NOISE * starv * rng.standard_normal(path.shape)
        err *= strength
        spec = np.fft.rfft(err, 2 * self.nb, axis=1) * self.ramp
        filt = (np.fft.irfft(spec, axis=1)[:, : self.nb] / self.pix).astype(np.float32)
        # Nearest-bin back-projection: streaks are smooth along the rays, so this is enough.
        back = filt.ravel()[self.nearest].sum(axis=0)
        back *= np.float32(np.pi / na)
        img = back.reshape(self.cx, self.cy)
        up = ndi.zoom(img, f, order=1, grid_mode=True, mode="nearest")
        return up[: self.nx, : self.ny].astype(np.float32)
