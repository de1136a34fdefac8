"""Training both stages on datasets in our layout (seeded, resumable, CPU / CUDA / DDP)."""

from femurseg.training.config import TrainConfig
from femurseg.training.data import CaseEntry, read_split
from femurseg.training.loop import average_weights, export_weights, learning_rate, train

__all__ = [
    "CaseEntry",
    "TrainConfig",
    "average_weights",
    "export_weights",
    "learning_rate",
    "read_split",
    "train",
]
