"""Score checkpoints on a training run's own validation data (the metric its run logs).

So that a fine-tuned model is compared with its starting point on the same validation cases
(never the test split): stage 1 by validation box IoU, stage 2 by validation Dice (crops
around the true boxes and, when the run used them, the off-femur crops, where an empty
prediction scores 1).

    python scripts/validate_checkpoint.py RUN CKPT [CKPT ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from femurseg.training.config import TrainConfig
from femurseg.training.tasks import build_task, task_class
from femurseg.weights import Stage, config_from_dict, load_checkpoint, load_state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run folder (config.json and cache/)")
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, required=True, help="the run's dataset folder")
    args = ap.parse_args()
    conf = json.loads((args.run / "config.json").read_text())
    stage = Stage(conf["train"]["stage"])
    model_cls, _ = task_class(stage)
    model_cfg = config_from_dict(model_cls, conf["model"], "model config")
    train_cfg = config_from_dict(TrainConfig, conf["train"], "train config")
    data = args.data
    task = build_task(stage, data, train_cfg, model_cfg, args.run / "cache")
    torch.set_grad_enabled(False)
    for ckpt_path in args.checkpoints:
        ck = load_checkpoint(ckpt_path, stage)
        net = task.build()
        load_state(net, ck["model"], ckpt_path)
        print(ckpt_path, task.validate(net, torch.device("cpu")), flush=True)


if __name__ == "__main__":
    main()
