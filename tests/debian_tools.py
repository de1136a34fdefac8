"""Debian command-line tools some tests need (chromium, dicom3tools): found on PATH, or
installed with apt-get by the project's own test set-up when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess


def debian_tool(package: str, *binaries: str, timeout: float = 900.0) -> str | None:
    """Path of the first of ``binaries`` on PATH, installing ``package`` first if none is
    there and apt-get can be used (root); None when it cannot be had (the test then skips)."""
    for name in binaries:
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return next((shutil.which(n) for n in binaries if shutil.which(n)), None)
    return None
