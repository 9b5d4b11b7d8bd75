"""Writing and reading sample files; the suffix of the path picks the format.

``.png``/``.jpg``: an image grid; ``.npy``: the raw array in ``[-1, 1]``; ``.pt``: the raw tensor (a
plain tensor file, read back with ``torch.load(weights_only=True)``); ``.npz``: several named arrays.
Writes go through a temporary file and an atomic rename: an existing file is never half-written.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .core.errors import SteerdiffError, check

SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".pt", ".npz")


def image_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` in ``[-1, 1]`` -> a ``(rows*(H+pad)+pad, cols*(W+pad)+pad, 3)`` uint8 grid.

    One channel is shown as grey; two channels as red/green (ColorMNIST style); three as RGB.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach().float().cpu()
    check(x.ndim == 4, f"an image grid needs (N, C, H, W) images, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    check(c in (1, 2, 3), f"an image grid needs 1, 2 or 3 channels, got {c}")
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if c == 1:
        x = x.expand(n, 3, h, w)
    elif c == 2:
        x = torch.cat([x, torch.zeros(n, 1, h, w, dtype=torch.uint8)], 1)
    if scale > 1:
        x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        h, w = h * scale, w * scale
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k in range(n):
        r, col = divmod(k, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = (
            x[k].permute(1, 2, 0).numpy()
        )
    return grid


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o644)
    return Path(tmp)


def save_samples(x, path: str | os.PathLike, *, nrow: int | None = None, scale: int | None = None, **extra) -> Path:
    """Write samples ``x`` ``(N, ...)`` to ``path`` in the format its suffix names (see module doc).

    ``.npz`` stores ``x`` as ``samples`` plus any ``extra`` arrays.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check(suffix in SAMPLE_SUFFIXES, f"cannot write {path}: use a suffix among {', '.join(SAMPLE_SUFFIXES)}")
    x = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    tmp = _atomic_target(path)
    try:
        if suffix in (".png", ".jpg", ".jpeg"):
            from PIL import Image

            if scale is None:
                scale = max(1, 64 // x.shape[-1]) if x.ndim == 4 else 1
            Image.fromarray(image_grid(x, nrow=nrow, scale=scale)).save(
                tmp, format="PNG" if suffix == ".png" else "JPEG"
            )
        elif suffix == ".npy":
            np.save(tmp, x.float().numpy())
        elif suffix == ".pt":
            # through memory: saved to a path, the zip's records are named after the (random) temporary
            # file, so identical runs would differ byte for byte
            buf = io.BytesIO()
            torch.save(x.float().clone(), buf)
            tmp.write_bytes(buf.getvalue())
        else:
            arrays = {
                "samples": x.float().numpy(),
                **{k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in extra.items()},
            }
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_array(path: str | os.PathLike, key: str | None = None) -> torch.Tensor:
    """Read a tensor saved by :func:`save_samples` (``.npy``, ``.pt``, or ``.npz`` with ``key``)."""
    path = Path(path)
    check(path.is_file(), f"{path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        if suffix == ".pt":
            return torch.load(path, weights_only=True)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                k = key or ("samples" if "samples" in z.files else z.files[0])
                check(k in z.files, f"{path} has no array {k!r} (it has {', '.join(z.files)})")
                return torch.from_numpy(z[k])
    except (ValueError, OSError, RuntimeError) as e:
        raise SteerdiffError(f"cannot read {path}: {e}") from None
    raise SteerdiffError(f"cannot read {path}: use a .npy, .pt or .npz file")
