"""Training-free h-space directions: the principal components of the bottleneck over many images.

A trained edit (:func:`~steerdiff.edit.hspace.train_edit`) needs pairs or a target attribute. The
directions here need neither: invert ``N`` images along the editing schedule, record ``h`` (the
mid-block output) at a reference level, and take the top principal components of the ``N``
flattened ``h``. Component ``j`` is a unit vector ``u_j`` in h-space; at every level ``sigma`` of the
schedule it is scaled by ``std_j(sigma)``, the spread of the images' ``h`` along ``u_j`` at that
level, so **strength 1 moves h by one standard deviation of the data along the direction** at each
level. The result is a ``free`` :class:`~steerdiff.edit.hspace.DeltaH` (one tensor per level), saved
and applied like any edit (``steerdiff edit --edit DIR``), inside the editing interval chosen from
the measured curves as for trained edits (:func:`~steerdiff.edit.hspace.choose_intervals`).

A component's sign is arbitrary; here it is fixed so that the component's largest entry is
positive, which makes the output deterministic (``--strength -1`` runs a direction backwards).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..core.errors import check
from .hspace import DeltaH, HSpace, choose_intervals, edit_sigmas, interval_curves, invert, save_edit

EDIT_STEPS = 60  # the editing schedule's levels, as for trained edits


@torch.no_grad()
def discover_directions(
    denoiser,
    images: torch.Tensor,
    k: int = 4,
    *,
    sigma_top: float = 10.0,
    edit_steps: int | None = None,
    sigma_ref: float | None = None,
    cond: dict | None = None,
) -> list[tuple[DeltaH, dict]]:
    """The top ``k`` principal directions of h-space over ``images``, as ready-to-apply edits.

    Args:
        denoiser: a steerdiff denoiser around a diffusers UNet (one with a mid block).
        images: ``(N, C, H, W)`` in ``[-1, 1]``, the model's sample shape; ``N > k``.
        k: number of directions, at least 1.
        sigma_top: the level (sigma units) images are inverted to; the schedule's top.
        edit_steps: levels of the editing schedule (:func:`~steerdiff.edit.hspace.edit_sigmas`;
            default :data:`EDIT_STEPS`).
        sigma_ref: the level whose ``h`` the components are computed at (default: the geometric
            middle of the editing interval chosen from the curves).
        cond: the model's condition for every image (e.g. ``class_labels``), or ``None``.

    Returns:
        ``[(delta, config)]`` for components 1..k: ``delta`` a ``free`` ``DeltaH`` with one
        ``(C_h, H_h, W_h)`` tensor per level (``std_j(sigma) u_j``), ``config`` the edit config
        (``attribute`` ``pcJ``, ``intervals``, ``strength`` 1, ``edit_steps``, ``sigma_top``, and
        ``discovered``: method, component, explained-variance share, image count, ``sigma_ref``).
    """
    check(isinstance(k, int) and k >= 1, f"--discover must be at least 1, got {k}")
    check(images.ndim == 4, f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    check(
        len(images) > k,
        f"{len(images)} images give at most {len(images) - 1} directions: use more images or a smaller k",
    )
    cond = cond or {}
    edit_steps = edit_steps or EDIT_STEPS
    sigmas = edit_sigmas(denoiser, edit_steps, sigma_top)
    _, path = invert(denoiser, images, sigmas, cond, return_path=True)  # (levels, N, ...), highest first
    intervals = choose_intervals(interval_curves(denoiser, images, sigmas, cond=cond, path=path))
    levels = sigmas[:-1]
    if sigma_ref is None:
        sigma_ref = math.sqrt(intervals["sigma_edit"] * float(levels[0]))
    ref = int((levels.log() - math.log(sigma_ref)).abs().argmin())
    hs = HSpace(denoiser)

    def h_at(i: int) -> torch.Tensor:
        with hs.capture():
            denoiser(path[i], float(levels[i]), **cond)
        return hs.h.flatten(1).double()  # (N, D)

    h = h_at(ref)
    centred = h - h.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    share = (s**2 / (s**2).sum()).tolist()
    u = vt[:k]  # (k, D) unit rows
    u = u * torch.sign(u.gather(1, u.abs().argmax(1, keepdim=True)))  # largest entry positive
    shape = tuple(hs.h.shape[1:])
    deltas = [DeltaH("free", *shape, sigmas=levels) for _ in range(k)]
    for i in range(len(levels)):
        hi = h_at(i) if i != ref else h
        std = ((hi - hi.mean(0)) @ u.T).std(0)  # (k,) the data's spread along each direction here
        for j in range(k):
            deltas[j].table[i] = (std[j] * u[j]).reshape(shape).float()
    out = []
    for j, delta in enumerate(deltas):
        conf = {
            "attribute": f"pc{j + 1}",
            "intervals": intervals,
            "strength": 1.0,
            "edit_steps": edit_steps,
            "sigma_top": sigma_top,
            "discovered": {
                "method": "pca",
                "component": j + 1,
                "explained_variance": share[j],
                "images": len(images),
                "sigma_ref": float(levels[ref]),
            },
        }
        out.append((delta.eval().requires_grad_(False), conf))
    return out


def save_directions(out: str | os.PathLike, directions: list[tuple[DeltaH, dict]], **extra) -> list[Path]:
    """Write each direction as an edit directory ``out/pcJ`` (``delta.safetensors`` + ``config.json``);
    ``extra`` is added to every config (e.g. the model name and the command)."""
    return [save_edit(Path(out) / conf["attribute"], delta, {**conf, **extra}) for delta, conf in directions]
