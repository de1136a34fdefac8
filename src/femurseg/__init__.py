"""femurseg: two-stage automatic segmentation of the left and right femur in lower-limb CT."""

from femurseg.types import LABELS, Label, Volume

__version__ = "0.1.0"

__all__ = ["LABELS", "Label", "Volume", "__version__"]
