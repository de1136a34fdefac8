"""scripts/real_stress.py: the scanner-condition views of a real scan are what they say (no
model needed), and the script refuses a folder without scans."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from femurseg.types import Volume

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "real_stress.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("real_stress", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _scan() -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(0)
    a = (rng.normal(0.0, 5.0, (30, 28, 40)) + 40.0).astype(np.float32)
    aff = np.diag([1.5, 1.5, 3.0, 1.0])
    aff[:3, 3] = (-20.0, -20.0, 100.0)
    truth = np.zeros(a.shape, dtype=np.uint8)
    truth[5:12, 8:16, 2:30] = 1  # a femur whose top is slice 29
    truth[18:25, 8:16, 2:30] = 2
    return Volume(a, aff), truth


def test_views_change_the_scan_as_named() -> None:
    mod = _script()
    vol, truth = _scan()
    views = {name: (v, t) for name, v, t in mod._views(vol, truth)}
    assert set(mod.VARIANTS) <= set(views)
    base = vol.array.astype(np.float32)
    np.testing.assert_array_equal(views["as is"][0].array, base)
    np.testing.assert_allclose(views["hu+40"][0].array - base, 40.0, atol=1e-4)
    np.testing.assert_allclose(views["hu-40"][0].array - base, -40.0, atol=1e-4)
    for sd in (30, 50, 80):
        added = views[f"noise{sd}"][0].array - base
        assert float(added.std()) == pytest.approx(sd, rel=0.05)
        # correlated grain: neighbours agree, unlike white noise
        assert np.corrcoef(added[:-1].ravel(), added[1:].ravel())[0, 1] > 0.3
    assert float(views["smooth"][0].array.std()) < float(base.std())
    # repeatable: the same seeds give the same noise
    again = {name: v for name, v, _ in mod._views(vol, truth)}
    np.testing.assert_array_equal(again["noise50"].array, views["noise50"][0].array)


def test_head_top_views_keep_only_the_top_of_the_femurs_in_place() -> None:
    mod = _script()
    vol, truth = _scan()
    views = {name: (v, t) for name, v, t in mod._views(vol, truth)}
    for mm in (20, 45):
        v, t = views[f"head_top{mm}"]
        k = 30 - round(mm / 3.0)  # the first slice kept
        assert v.shape[2] == 40 - k
        np.testing.assert_array_equal(v.array, vol.array[:, :, k:])
        np.testing.assert_array_equal(t, truth[:, :, k:])
        # the same world position: slice 0 of the view is slice k of the scan
        np.testing.assert_allclose(v.affine[2, 3], vol.affine[2, 3] + 3.0 * k)
    # a negative (no reference) gets no head-top views
    assert all(not n.startswith("head_top") for n, _, _ in mod._views(vol, None))


def test_a_folder_without_scans_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mod = _script()
    monkeypatch.setattr(sys, "argv", ["real_stress.py", "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match="no real scans"):
        mod.main()


def test_fine_views_resample_coarse_axes_in_place() -> None:
    from femurseg.types import affine_to_world

    mod = _script()
    vol, truth = _scan()  # 1.5 x 1.5 x 3 mm
    views = {name: (v, t) for name, v, t in mod._views(vol, truth)}
    v, t = views["fine1.0mm"]
    assert v.shape == (45, 42, 120)
    np.testing.assert_allclose(v.spacing, (1.0, 1.0, 1.0))
    v15, t15 = views["fine1.5mm"]
    assert v15.shape == (30, 28, 80)  # only the 3 mm axis is finer
    np.testing.assert_allclose(v15.spacing, (1.5, 1.5, 1.5))
    for view, lab in ((v, t), (v15, t15)):
        assert lab is not None and lab.shape == view.shape
        for side in (1, 2):
            # the same femur in the same world place, about the same size
            before = affine_to_world(np.argwhere(truth == side), vol.affine)
            after = affine_to_world(np.argwhere(lab == side), view.affine)
            np.testing.assert_allclose(after.mean(0), before.mean(0), atol=0.3)
            ml = (lab == side).sum() * np.prod(view.spacing)
            assert ml == pytest.approx((truth == side).sum() * 1.5 * 1.5 * 3.0, rel=0.1)
        # the scan's extent is kept: first and last voxel edges where they were
        lo = view.affine[:3, 3] - 0.5 * np.asarray(view.spacing)
        np.testing.assert_allclose(lo, vol.affine[:3, 3] - 0.5 * np.asarray(vol.spacing))
    # a grid already that fine gets no view
    fine_vol = Volume(vol.array, np.diag([0.8, 0.8, 0.8, 1.0]))
    assert mod.finer(fine_vol, None, 1.0) is None
