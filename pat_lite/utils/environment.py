"""What made a result: the versions and the arithmetic path a committed number depends on.

The same seeded CPU run gives other numbers with another torch, transformers or peft, or on a CPU whose
kernels differ (torch picks AVX-512, AVX2 or generic code at start-up; `ATEN_CPU_CAPABILITY` overrides it).
Every committed results file records `environment()` beside its numbers, and CI installs the locked
versions of `constraints/` so that a re-run meets the same libraries.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

#: The packages whose versions a results file records (issue: python, torch, transformers, peft,
#: datasets, lm-eval), plus the two that touch every forward pass.
RECORDED_PACKAGES = ("torch", "transformers", "peft", "datasets", "lm_eval", "accelerate", "tokenizers")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions of Python and `RECORDED_PACKAGES`, the machine, and torch's CPU kernel level."""
    import torch

    return {
        "python": platform.python_version(),
        **{package: _version(package) for package in RECORDED_PACKAGES},
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
    }
