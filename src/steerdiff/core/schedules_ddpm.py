"""Discrete DDPM noise schedules (``alphas_cumprod``) for epsilon / v-prediction training."""

from __future__ import annotations

import torch

from .errors import check


def ddpm_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, beta_schedule: str = "linear"
) -> torch.Tensor:
    """``alphas_cumprod`` ``(T,)`` float64 of DDPM's linear schedule or SD's ``scaled_linear`` one."""
    check(
        beta_schedule in ("linear", "scaled_linear"),
        f"beta_schedule {beta_schedule!r}: use 'linear' or 'scaled_linear'",
    )
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    else:
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)
