"""Training-free h-space directions: the principal components of the bottleneck over many images,
or the directions of h the denoiser's prediction is most sensitive to (its Jacobian).

A trained edit (:func:`~steerdiff.edit.hspace.train_edit`) needs pairs or a target attribute. The
directions here need neither: invert ``N`` images along the editing schedule, record ``h`` (the
mid-block output) at a reference level, and take the top principal components of the ``N``
flattened ``h``. Component ``j`` is a unit vector ``u_j`` in h-space; at every level ``sigma`` of the
schedule it is scaled by ``std_j(sigma)``, the spread of the images' ``h`` along ``u_j`` at that
level, so **strength 1 moves h by one standard deviation of the data along the direction** at each
level. The result is a ``free`` :class:`~steerdiff.edit.hspace.DeltaH` (one tensor per level), saved
and applied like any edit (``steerdiff edit --edit DIR``), inside the editing interval chosen from
the measured curves as for trained edits (:func:`~steerdiff.edit.hspace.choose_intervals`).

``method="jacobian"`` (``steerdiff edit --discover K --discover-method jacobian``) replaces the
principal components by the top eigenvectors of the **pullback metric** of the prediction,
``G = mean_i J_i^T J_i`` with ``J_i = dD(x_i; sigma_ref) / dh`` the Jacobian of image ``i``'s denoised
prediction with respect to h at the reference level: ``u_1`` is the unit change of h that moves the
predictions most in pixels (squared L2, averaged over the images), ``u_2`` the most among those
orthogonal to it, and so on. This is the decoder-side form of the Riemannian analysis of Park et al.
(NeurIPS 2023), who take the Jacobian of h with respect to ``x_t`` and find per-image bases; here one
basis serves every image, so each direction is an edit like a principal one, scaled the same way. ``G``
is never formed: subspace iteration multiplies by it with two reverse-mode passes per vector
(``J v`` as the derivative of ``J^T u`` in ``u``), then a Rayleigh-Ritz step orders the directions.

A component's sign is arbitrary; here it is fixed so that the component's largest entry is
positive, which makes the output deterministic (``--strength -1`` runs a direction backwards).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..core.errors import check
from .hspace import DeltaH, HSpace, choose_intervals, edit_sigmas, interval_curves, invert, save_edit

EDIT_STEPS = 60  # the editing schedule's levels, as for trained edits
METHODS = ("pca", "jacobian")  # how discover_directions picks the directions
PREFIX = {"pca": "pc", "jacobian": "jac"}  # direction J is saved as PREFIX + J


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
    method: str = "pca",
    iterations: int = 20,
    seed: int = 0,
) -> list[tuple[DeltaH, dict]]:
    """The top ``k`` principal (or Jacobian) directions of h-space over ``images``, as ready-to-apply edits.

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
        method: ``pca`` (principal components of h) or ``jacobian`` (top eigenvectors of the
            prediction's pullback metric at ``sigma_ref``; see the module docstring).
        iterations: subspace iterations of the ``jacobian`` method (each costs one forward pass and
            two reverse-mode passes per vector over the ``N`` images; ``k + 4`` vectors are iterated).
        seed: the ``jacobian`` method's random starting subspace.

    Returns:
        ``[(delta, config)]`` for components 1..k: ``delta`` a ``free`` ``DeltaH`` with one
        ``(C_h, H_h, W_h)`` tensor per level (``std_j(sigma) u_j``), ``config`` the edit config
        (``attribute`` ``pcJ`` or ``jacJ``, ``intervals``, ``strength`` 1, ``edit_steps``, ``sigma_top``,
        and ``discovered``: method, component, the share of h's variance along the direction, image
        count, ``sigma_ref``; for ``jacobian`` also ``gain``, the RMS change of the predictions per
        pixel for a unit change of h along the direction, and ``iterations``).
    """
    check(method in METHODS, f"--discover-method {method!r}: use one of {', '.join(METHODS)}")
    check(isinstance(iterations, int) and iterations >= 1, f"iterations must be at least 1, got {iterations}")
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
    shape = tuple(hs.h.shape[1:])
    centred = h - h.mean(0)
    gain = None
    if method == "pca":
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        u = vt[:k]  # (k, D) unit rows
    else:
        with torch.enable_grad():
            u, lam = _pullback_eigvecs(denoiser, hs, path[ref], float(levels[ref]), cond, shape, k, iterations, seed)
        gain = (lam.clamp(min=0) / path[ref][0].numel()).sqrt().tolist()
    share = ((centred @ u.T).pow(2).sum(0) / centred.pow(2).sum()).tolist()  # h's variance along each
    u = u * torch.sign(u.gather(1, u.abs().argmax(1, keepdim=True)))  # largest entry positive
    deltas = [DeltaH("free", *shape, sigmas=levels) for _ in range(k)]
    for i in range(len(levels)):
        hi = h_at(i) if i != ref else h
        std = ((hi - hi.mean(0)) @ u.T).std(0)  # (k,) the data's spread along each direction here
        for j in range(k):
            deltas[j].table[i] = (std[j] * u[j]).reshape(shape).float()
    out = []
    for j, delta in enumerate(deltas):
        conf = {
            "attribute": f"{PREFIX[method]}{j + 1}",
            "intervals": intervals,
            "strength": 1.0,
            "edit_steps": edit_steps,
            "sigma_top": sigma_top,
            "discovered": {
                "method": method,
                "component": j + 1,
                "explained_variance": share[j],
                "images": len(images),
                "sigma_ref": float(levels[ref]),
                **({} if gain is None else {"gain": gain[j], "iterations": iterations}),
            },
        }
        out.append((delta.eval().requires_grad_(False), conf))
    return out


def _pullback_eigvecs(denoiser, hs, x, sigma, cond, shape, k, iterations, seed):
    """Top ``k`` eigenpairs of ``G = sum_i J_i^T J_i / N`` (``J_i``: the Jacobian of image ``i``'s
    prediction ``D(x_i; sigma)`` with respect to its h, ``(C*H*W, D)``), by subspace iteration on
    ``min(k + 4, D)`` vectors and a final Rayleigh-Ritz step. Returns ``(u (k, D) float64 orthonormal
    rows, eigenvalues (k,) descending)``."""
    n, dim = len(x), math.prod(shape)
    p = torch.zeros(shape, device=x.device, requires_grad=True)  # one h offset shared by all images
    # the math attention kernel: the fused ones have no second derivative
    with hs.capture(lambda h: p.expand_as(h)), sdpa_kernel(SDPBackend.MATH):
        y = denoiser(x, sigma, **cond)  # (N, C, H, W)
    u_dual = torch.zeros_like(y, requires_grad=True)
    jt = torch.autograd.grad(y, p, u_dual, create_graph=True)[0]  # J^T u, linear in u

    def apply_g(v: torch.Tensor) -> torch.Tensor:  # (D,) float64 -> G v
        jv = torch.autograd.grad(jt, u_dual, v.reshape(shape).to(jt.dtype), retain_graph=True)[0]  # J v
        return torch.autograd.grad(y, p, jv, retain_graph=True)[0].flatten().double() / n

    gen = torch.Generator().manual_seed(seed)
    m = min(k + 4, dim)
    q = torch.linalg.qr(torch.randn(dim, m, generator=gen, dtype=torch.float64))[0].to(x.device)
    for _ in range(iterations):
        q = torch.linalg.qr(torch.stack([apply_g(q[:, j]) for j in range(m)], 1))[0]
    gq = torch.stack([apply_g(q[:, j]) for j in range(m)], 1)
    lam, w = torch.linalg.eigh(q.T @ gq)  # ascending
    order = lam.argsort(descending=True)[:k]
    return (q @ w[:, order]).T.contiguous(), lam[order]


def save_directions(out: str | os.PathLike, directions: list[tuple[DeltaH, dict]], **extra) -> list[Path]:
    """Write each direction as an edit directory ``out/pcJ`` (``out/jacJ``) (``delta.safetensors`` + ``config.json``);
    ``extra`` is added to every config (e.g. the model name and the command)."""
    return [save_edit(Path(out) / conf["attribute"], delta, {**conf, **extra}) for delta, conf in directions]
