"""Fingerprints and the sample-grid PNG of the translator."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..fileio import atomic_write_bytes

__all__ = ["module_fingerprint", "save_grid"]


def module_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_grid(rows: Sequence[torch.Tensor], path: str | os.PathLike, pad: int = 2) -> Path:
    """Write image rows as one PNG (atomically): each row (N, 3, H, W) float in [-1, 1];
    rows may hold different N. Returns the path."""
    if not rows:
        raise ValueError("rows must hold at least one (N, 3, H, W) batch")
    H, W = rows[0].shape[-2:]
    ncol = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (H + pad) + pad, ncol * (W + pad) + pad, 3), 255, dtype=np.uint8)
    for i, r in enumerate(rows):
        if r.shape[-2:] != (H, W):
            raise ValueError(f"every row must hold {H}x{W} images, row {i} has {tuple(r.shape)}")
        u8 = ((r.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        for j, img in enumerate(u8):
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            canvas[y : y + H, x : x + W] = img.permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
