"""The discriminators' history of generated images (Shrivastava et al. 2017; CycleGAN).

Until the pool holds `size` images each new image is stored and returned; afterwards each
new image is, with probability 1/2, swapped with a random stored one (the stored one is
returned) or returned itself. The discriminator thus sees a mix of current and older
translations, which damps oscillation. The pool owns its random generator, so its state
(images + generator) round-trips through `state_dict` and a resumed run draws the same.
"""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A history of up to `size` images; `size` 0 disables it (query returns its input)."""

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be an int >= 0, got {size!r}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) new images -> (B, C, H, W) images for the discriminator (detached)."""
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for img in images:
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
                continue
            if torch.rand((), generator=self.generator).item() < 0.5:
                k = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict:
        """Plain tensors: the stored images (N, C, H, W) on the CPU and the generator state."""
        imgs = torch.stack([x.cpu() for x in self.images]) if self.images else torch.empty(0)
        return {"size": self.size, "images": imgs, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        """Restore what `state_dict` returned (images go to `device`)."""
        if int(state["size"]) != self.size:
            raise ValueError(f"pool size {self.size} cannot load a pool of size {state['size']}")
        imgs = state["images"]
        self.images = [x.to(device) for x in imgs] if imgs.numel() else []
        self.generator.set_state(state["rng"])
