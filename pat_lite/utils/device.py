"""A device the user names (`--device cuda`), checked before any work: one line where it does not exist."""

from __future__ import annotations

from pat_lite.utils.errors import ConfigError


def check_device(device: str | None, what: str = "--device") -> str | None:
    """`device` if this machine has it ("auto" and None pass: the caller chooses); else ConfigError."""
    if device is None or device == "auto":
        return device
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{what} {device!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"{what} {device}: {why} here; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{what} {device}: no Apple MPS device here; use --device cpu")
    return device
