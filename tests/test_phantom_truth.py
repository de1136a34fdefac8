"""True femur measurements of phantoms, from their posed meshes, and imposed torsion/length."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.truth import femur_truth
from femurseg.phantoms.generate import make_anatomy
from femurseg.phantoms.params import PhantomConfig


def value(truth, side, name):
    return truth[side]["measurements"][name]["value"]


@pytest.mark.parametrize("target", [-8.0, 38.0])
def test_imposed_torsion_and_length_are_what_the_truth_measures(target) -> None:
    cfg = PhantomConfig(femur_torsion_deg=(target, target), femur_length_mm=(430.0, 430.0))
    anatomy, _ = make_anatomy(cfg, np.random.default_rng(11), None)
    truth = femur_truth(anatomy.meshes)
    for side in ("femur_left", "femur_right"):
        assert value(truth, side, "torsion_lee_deg") == pytest.approx(target, abs=1.0)
        assert value(truth, side, "femoral_length_mm") == pytest.approx(430.0, abs=2.0)
        # the head centre found on the mesh is the one the pose placed
        hip = anatomy.landmarks[f"hip_{side.split('_')[1]}"]
        centre = truth[side]["landmarks_ras_mm"]["head_centre"]
        assert np.linalg.norm(np.asarray(centre) - hip) < 2.0
    assert anatomy.meta["imposed"]["targets"]["femur_left"]["torsion_deg"] == target
    # the side never swaps: the left femur lies at world -x (RAS+)
    assert truth["femur_left"]["landmarks_ras_mm"]["knee_centre"][0] < 0


def test_phantom_dataset_records_the_truth(tmp_path) -> None:
    out = tmp_path / "ds"
    res = CliRunner().invoke(
        app,
        ["phantom", "--n", "1", "--seed", "3", "--fov", "thighs", "--spacing", "3",
         "--torsion", "20", "-o", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads((out / "dataset.json").read_text())["case_info"]
    (case,) = info.values()
    truth = case["femur_truth"]
    assert truth["femur_right"]["source"].startswith("posed mesh")
    assert value(truth, "femur_right", "torsion_lee_deg") == pytest.approx(20.0, abs=1.0)
    with pytest.raises(ConfigError, match="femur_torsion_deg"):
        PhantomConfig(femur_torsion_deg=(50.0, 10.0))
    bad = CliRunner().invoke(app, ["phantom", "--torsion", "x", "-o", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--torsion" in bad.output
