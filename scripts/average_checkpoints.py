"""Average the network weights of several checkpoints of one training run into one.

    python scripts/average_checkpoints.py OUT.pt RUN/step1000.pt RUN/last.pt

The result is an inference checkpoint (no optimiser state) that `femurseg predict
--stage2-weights`, `femurseg scorecard --model` and `scripts/ship_weights.py` take.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from femurseg.training import average_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="checkpoint to write")
    ap.add_argument("checkpoints", type=Path, nargs="+", help="two or more checkpoints")
    args = ap.parse_args()
    print(average_weights(list(args.checkpoints), args.out))


if __name__ == "__main__":
    main()
