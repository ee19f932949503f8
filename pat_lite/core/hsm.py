"""Hybrid Sparsification Module (HSM), docs/method.md §3 and the identity loss of §5.

An HSM sits where a block writes into the residual stream (after the embedding, after self-attention's
o_proj, after the MLP's down_proj) and maps the writer's output y ∈ R^d to

    z = s ⊙ M ⊙ (D · y),    D = I + L1 · diag(v) · L0                        (Hybrid-Identity-Operator)

with L0 ∈ R^{r×d} (Kaiming-uniform), L1 ∈ R^{d×r} (zeros, so D = I at step 0), a per-channel scale
s ∈ R^d (ones) and the global mask M. The rank scale v ∈ R^r exists only for the paper's identity-loss
variant; the released code has D = I + L1 · L0. HSM parameters stay in float32 even in a bf16 model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class HSM(nn.Module):
    """One hybrid sparsification module for a writer of width `width` with HIO rank `rank`."""

    def __init__(self, width: int, rank: int, rank_scale: bool = False) -> None:
        super().__init__()
        self.L0 = nn.Parameter(torch.empty(rank, width, dtype=torch.float32))
        self.L1 = nn.Parameter(torch.zeros(width, rank, dtype=torch.float32))
        self.scale = nn.Parameter(torch.ones(width, dtype=torch.float32))
        self.rank_scale = nn.Parameter(torch.ones(rank, dtype=torch.float32)) if rank_scale else None
        nn.init.kaiming_uniform_(self.L0, a=math.sqrt(5))  # as nn.Linear(width, rank) would

    def low_rank(self) -> torch.Tensor:
        """L1 · diag(v) · L0 (d × d is never formed in forward; used by the merge)."""
        left = self.L1 if self.rank_scale is None else self.L1 * self.rank_scale
        return left @ self.L0

    def operator(self) -> torch.Tensor:
        """D = I + L1 · diag(v) · L0 as a dense d × d matrix (for the merge)."""
        return torch.eye(self.L0.shape[1], device=self.L0.device, dtype=self.L0.dtype) + self.low_rank()

    def forward(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Row-vector form of z = s ⊙ M ⊙ (y + L1 diag(v) L0 y), computed in at least float32: a bf16 model
        # keeps float32 HSMs (no bf16 rounding of the small low-rank update), a float64 one stays float64.
        dtype = torch.promote_types(y.dtype, torch.float32)
        y_wide = y.to(dtype)
        hidden = F.linear(y_wide, self.L0.to(dtype))
        if self.rank_scale is not None:
            hidden = hidden * self.rank_scale.to(dtype)
        z = (y_wide + F.linear(hidden, self.L1.to(dtype))) * (self.scale.to(dtype) * mask.to(dtype))
        return z.to(y.dtype)

    def identity_loss(self, variant: str) -> torch.Tensor:
        """§5. "released": MSE(L0·L0ᵀ, I_r). "paper": ‖L0·L0ᵀ − I‖_F + ‖L1ᵀ·L1 − I‖_F."""
        rank = self.L0.shape[0]
        eye = torch.eye(rank, device=self.L0.device)
        gram0 = self.L0 @ self.L0.T
        if variant == "released":
            return F.mse_loss(gram0, eye)
        if variant == "paper":
            return torch.linalg.matrix_norm(gram0 - eye) + torch.linalg.matrix_norm(self.L1.T @ self.L1 - eye)
        raise ValueError(f"unknown identity-loss variant {variant!r}; use 'released', 'paper' or 'off'")

    def extra_repr(self) -> str:
        return f"width={self.L0.shape[1]}, rank={self.L0.shape[0]}, rank_scale={self.rank_scale is not None}"
