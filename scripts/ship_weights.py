"""Release tooling: copy a training run's checkpoint into the shipped weights.

Keeps only what inference needs (network weights, model and training configs, step, metrics)
and records where it came from, then rewrites ``SHA256SUMS``.

    python scripts/ship_weights.py stage1 RUN/best.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from femurseg.weights import (
    WEIGHTS_DIR,
    Stage,
    load_checkpoint,
    save_checkpoint,
    write_checksums,
)

KEEP = (
    "stage",
    "model_config",
    "train_config",
    "model",
    "step",
    "metrics",
    "averaged_from",
    "femurseg_version",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=[Stage.STAGE1.value, Stage.STAGE2.value])
    ap.add_argument("checkpoint", type=Path)
    args = ap.parse_args()
    ck = load_checkpoint(args.checkpoint, Stage(args.stage))
    body = {k: ck[k] for k in KEEP if k in ck}
    body["source"] = {
        "checkpoint": str(args.checkpoint),
        "init_from": (ck.get("source") or {}).get("init_from") or ck.get("init_from"),
    }
    out = save_checkpoint(body, WEIGHTS_DIR / f"{args.stage}.pt")
    write_checksums()
    print(f"shipped {out} (step {ck.get('step')}, metrics {ck.get('metrics')})")


if __name__ == "__main__":
    main()
