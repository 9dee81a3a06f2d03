"""Data-parallel training under torchrun (DDP-equivalent; gloo on CPU, NCCL on GPU).

    torchrun --nproc_per_node 4 -m smcr train --config duke2market

The result does not depend on the number of processes, up to floating-point summation
order. How:

* **One global batch.** Every rank draws the same global P x K batch (the samplers and the
  augmentation are seeded by (seed, epoch, step), not by rank) and trains on its contiguous
  slice: `batch / world` images per domain, whole identities per rank.
* **Batch norm over fixed-size groups** (`data.bn_group`, `smcr.models.group_bn`): the
  statistics are those of the same groups of images whatever the world size; running
  statistics are averaged over the ranks before every use (evaluation, clustering input,
  checkpoint).
* **Losses over the global batch.** Per-sample losses (cross-entropy, hybrid memory) are
  local means whose gradients the ranks average. Batch-hard mining (the triplet of stage 1,
  the soft triplet of L_col) runs on the gathered global batch: each rank's own rows keep
  their gradient, the others' are constants, and the term is scaled by the world size so
  that the averaged gradient is that of the global loss.
* **Gradients** are averaged with one all-reduce of the flattened gradients per step
  (instead of a DDP wrapper, because SMCR has two students, teachers run outside autograd
  and a model's `forward_all` is not `forward`). Parameters start identical (broadcast
  from rank 0) and stay identical.
* **Hybrid memories** gather every rank's features and rows and apply the same sequential
  update on every rank (`HybridMemory.update`), so memories, and the pseudo labels
  clustered from them, are identical on every rank.
* **Feature extraction** (evaluation, memory initialisation, re-clustering from features)
  is sharded over the ranks and gathered.
* Data generation and translator training run on rank 0 while the others wait (their
  results are cached on disk); rank 0 alone writes the run folder and the checkpoints.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistEnv", "all_reduce_grads", "average_buffers", "barrier", "broadcast_module",
    "broadcast_object", "env", "gather_rows", "global_with_local", "is_main", "local_slice",
    "main_first", "mean_over_ranks", "setup", "shard", "teardown",
]


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1


_ENV = DistEnv()
_OWNED = False  # whether setup() initialised the process group (and teardown destroys it)


def env() -> DistEnv:
    return _ENV


def is_main() -> bool:
    return _ENV.rank == 0


def setup(device: str, timeout_minutes: float = 720.0) -> tuple[DistEnv, torch.device | None]:
    """Join the torchrun group when WORLD_SIZE > 1 (or adopt one initialised by the caller).

    Returns the environment and, for a CUDA run, this rank's device (cuda:LOCAL_RANK), else
    None. The backend is NCCL for CUDA and gloo for CPU. The timeout covers the waits while
    rank 0 generates data or trains a translator alone."""
    global _ENV, _OWNED
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        _ENV = DistEnv(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    elif world > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(
            "nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
        _OWNED = True
        _ENV = DistEnv(dist.get_rank(), dist.get_world_size(), local)
    else:
        _ENV = DistEnv()
    dev = None
    if _ENV.active and device != "cpu" and torch.cuda.is_available():
        dev = torch.device("cuda", _ENV.local_rank)
    return _ENV, dev


def teardown() -> None:
    """Leave the group if setup() created it."""
    global _ENV, _OWNED
    if _OWNED and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _OWNED = False
    _ENV = DistEnv()


def barrier() -> None:
    if _ENV.active:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills a cache), the others after it."""
    if _ENV.active and not is_main():
        dist.barrier()
    yield
    if _ENV.active and is_main():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's value of a picklable object on every rank."""
    if not _ENV.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_slice(batch: int) -> slice:
    """This rank's contiguous slice of a global batch of `batch` items."""
    if batch % _ENV.world:
        raise ValueError(f"a global batch of {batch} does not split over {_ENV.world} processes")
    n = batch // _ENV.world
    return slice(_ENV.rank * n, (_ENV.rank + 1) * n)


def shard(n: int) -> slice:
    """This rank's contiguous share of n items (sizes differ by at most one)."""
    w, r = _ENV.world, _ENV.rank
    return slice(r * n // w, (r + 1) * n // w)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `x` (any number of rows) in rank order; no gradient."""
    if not _ENV.active:
        return x
    x = x.detach().contiguous()
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(_ENV.world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    m = max(sizes)
    pad = x.new_zeros((m, *x.shape[1:]))
    pad[: x.shape[0]] = x
    out = [torch.empty_like(pad) for _ in range(_ENV.world)]
    dist.all_gather(out, pad)
    return torch.cat([o[:s] for o, s in zip(out, sizes, strict=True)])


def global_with_local(local: torch.Tensor) -> torch.Tensor:
    """The global batch (every rank's equal-size slice, in rank order) where this rank's
    rows are `local` itself (with its gradient) and the others' are constants."""
    if not _ENV.active:
        return local
    parts = list(gather_rows(local).split(local.shape[0]))
    parts[_ENV.rank] = local
    return torch.cat(parts)


def _average_in_place(tensors: list[torch.Tensor], dtype: torch.dtype) -> None:
    """Replace each tensor by its mean over the ranks (one all-reduce of them flattened)."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat)
    flat /= _ENV.world
    o = 0
    for t in tensors:
        k = t.numel()
        t.copy_(flat[o : o + k].view_as(t))
        o += k


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of `params` over the ranks (one flattened all-reduce)."""
    if _ENV.active:
        _average_in_place([p.grad for p in params if p.grad is not None], torch.float32)


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Scalars averaged over the ranks (for logging)."""
    if not _ENV.active or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= _ENV.world
    return dict(zip(keys, t.tolist(), strict=True))


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    if not _ENV.active:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BN running statistics) over the ranks."""
    if _ENV.active:
        _average_in_place([b for b in module.buffers() if b.is_floating_point()], torch.float64)
