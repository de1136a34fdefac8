"""Memory: what is free, what this process holds, and what inference on a scan will need.

The estimate of :func:`inference_peak_gb` is a straight line through the peak resident memory
that ``benchmarks/predict_speed.py`` measured for whole ``femurseg predict`` processes on this
project's 2-core reference machine: 2.2 GB for a 512 x 512 x 1000 CT and 3.3 GB for
512 x 512 x 2000 (the networks, the float32 volume, the label map and the paste-back buffers),
with 10 % headroom. :func:`check_memory` compares it, before any network runs, with what the
process already holds and what the system has free, so that a scan too large for the machine
fails at once with one line instead of after minutes with an allocator's message.
"""

from __future__ import annotations

import resource

from femurseg.errors import FemursegError

#: fixed part of a predict process's peak (libraries, networks, stage-1 grid), GB
BASE_GB = 1.06
#: peak bytes per input voxel (float32 volume, label map, paste-back and resampling buffers)
BYTES_PER_VOXEL = 4.35
#: margin on the measured line
HEADROOM = 1.1


class ResourceError(FemursegError):
    """The machine lacks what a case needs (memory); not the user's data (exit code 1)."""


def available_memory_gb() -> float | None:
    """Memory the system can give without swapping (``MemAvailable``), GB; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_gb() -> float:
    """This process's current resident memory, GB (its peak where the current is unknown)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**30
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def inference_peak_gb(voxels: int) -> float:
    """Estimated peak resident memory (GB) of predicting a scan of ``voxels`` voxels."""
    return HEADROOM * (BASE_GB + BYTES_PER_VOXEL * voxels / 2**30)


def check_memory(
    shape: tuple[int, ...], where: str = "", available_gb: float | None = None
) -> float:
    """Refuse a scan whose inference would not fit in the memory left; the estimate in GB.

    Args:
        shape: the scan's voxel counts.
        where: the case, for the message (none: the message starts with the scan).
        available_gb: free memory (default: the system's ``MemAvailable``; unknown: no check).

    Raises:
        ResourceError: the estimated peak, less what this process already holds, exceeds the
            free memory.
    """
    voxels = 1
    for n in shape:
        voxels *= int(n)
    peak = inference_peak_gb(voxels)
    free = available_memory_gb() if available_gb is None else available_gb
    if free is None:
        return peak
    more = peak - resident_gb()
    if more > free:
        dims = " x ".join(str(int(n)) for n in shape)
        prefix = f"{where}: " if where else ""
        raise ResourceError(
            f"{prefix}a {dims} scan needs about {peak:.1f} GB to segment ({more:.1f} GB more "
            f"than this process holds) but {free:.1f} GB is free; expected a machine with more "
            "free memory; close other programs, run fewer workers, or crop the scan to the legs"
        )
    return peak
