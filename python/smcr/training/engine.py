"""The two training stages of SMCR (paper §IV) as plain loops.

Stage 1, `pretrain`: supervised training of one encoder on labelled images (D^SR ∪ D^R,
or D^R alone): label-smoothed cross-entropy + softplus triplet (MMT's source pre-training).

Stage 2, `refine`: the DTHR and RIHR branches (§IV-C, IV-D), each with its student encoder
E_b, its mean teacher A(θ_b) (Eq. 11) and its hybrid memory; every epoch each branch
clusters its target rows into pseudo labels (Eq. 6-7), then every iteration

    loss_joint_b = L^b_joint over [source batch of branch b ; shared target batch]  (Eq. 4, 10)
    loss_col_1   = soft triplet of E1 on x_t toward A(θ2) on x_t, E1's pseudo labels  (Eq. 13)
    loss_col_2   = soft triplet of E2 on x_t toward A(θ1) on x_t, E2's pseudo labels
    loss_col     = alpha * loss_col_1 + (1 - alpha) * loss_col_2                       (Eq. 12)
    loss         = beta * loss_col + 2 (1 - beta) (alpha * loss_joint_1 + (1 - alpha) * loss_joint_2)   (Eq. 17)

then the memories take the batch's features (momentum update, an explicit op), and the
teachers the students' weights (λ with MMT's warm-up min(1 - 1/(t+1), λ)).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import smcr_ext

from ..cluster import ClusteringCollapsed, PseudoLabeler
from ..evaluation import evaluate
from ..losses import HybridMemory
from ..models import ReIDModel
from ..models.dsbn import set_dsbn_domain
from . import dist
from .domains import Domain, PKStream, augment, eval_batches, seeded

log = logging.getLogger("smcr.train")

__all__ = ["Branch", "TrainingDiverged", "extract_features", "evaluate_models", "pretrain",
           "refine_epoch", "ema_update", "fused_features", "smcr_loss"]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the message names the stage, epoch and step."""


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def extract_features(model: nn.Module, domain: Domain, size: tuple[int, int], batch: int,
                     device: torch.device, amp: bool = True) -> torch.Tensor:
    """(N, D) float32 unit embeddings of a domain, the model in eval mode. Under
    torch.distributed each rank embeds its shard (after the ranks' BN statistics are
    averaged) and every rank gets all N rows."""
    was = model.training
    dist.average_buffers(model)
    model.eval()
    part = domain
    if dist.env().active:
        idx = torch.arange(len(domain))[dist.shard(len(domain))]
        part = domain.subset(idx)
    out = []
    with _autocast(device, amp):
        for x in eval_batches(part, size, batch, device):
            out.append(model(x).float())
    model.train(was)
    # a rank whose shard is empty still takes part in the gather
    mine = torch.cat(out) if out else torch.zeros(0, model.embedding_dim, device=device)
    return F.normalize(dist.gather_rows(mine), dim=1)


def fused_features(f1: torch.Tensor, f2: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 16: the alpha-weighted average of both branches' unit embeddings, re-normalised."""
    return F.normalize(alpha * f1 + (1.0 - alpha) * f2, dim=1)


def evaluate_models(
    extractors: dict[str, Callable[[Domain], torch.Tensor]], query: Domain, gallery: Domain
) -> dict[str, dict[str, float]]:
    """mAP / mINP / Rank-1/5/10 of every named feature extractor on query -> gallery. A
    single-camera target (every query and gallery image from one camera, custom data) keeps
    same-camera matches, as there are no others."""
    single = torch.cat([query.camids.flatten(), gallery.camids.flatten()]).unique().numel() == 1
    out = {}
    for name, fn in extractors.items():
        q, g = fn(query), fn(gallery)
        r = evaluate(q, g, query.pids, gallery.pids, query.camids, gallery.camids,
                     single_camera=single)
        out[name] = {
            "mAP": float(r.mAP),
            "mINP": float(r.mINP),
            "rank1": float(r.cmc[0]),
            "rank5": float(r.rank5),
            "rank10": float(r.rank10),
        }
    return out


def smcr_loss(loss_joint: list[torch.Tensor], loss_col: list[torch.Tensor], alpha: float,
              beta: float) -> torch.Tensor:
    """Eq. 17 (with Eq. 12): L = beta * L_col + 2 (1 - beta) (alpha L1_joint + (1 - alpha) L2_joint),
    L_col = alpha L1_col + (1 - alpha) L2_col. Two branches without collaboration ("independent"
    ablation): 2 (alpha L1_joint + (1 - alpha) L2_joint); one branch: its L_joint (SpCL)."""
    if len(loss_joint) == 1:
        return loss_joint[0]
    joint = alpha * loss_joint[0] + (1.0 - alpha) * loss_joint[1]
    if not loss_col:
        return 2.0 * joint
    col = alpha * loss_col[0] + (1.0 - alpha) * loss_col[1]
    return beta * col + 2.0 * (1.0 - beta) * joint


class _StepSums:
    """Per-epoch sums of logged scalars, kept on the device (float64) and read once at the
    end of the epoch: reading each term with .item() every step would make the host wait
    for the device several times per step (the one per-step read left is the finiteness
    check of the loss)."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().to(torch.float64)
        self._sums[key] = self._sums[key] + v if key in self._sums else v

    def floats(self) -> dict[str, float]:
        if not self._sums:
            return {}
        keys = list(self._sums)
        return dict(zip(keys, torch.stack([self._sums[k] for k in keys]).tolist(), strict=True))


def _check_finite(loss: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(loss.detach())):
        raise TrainingDiverged(f"non-finite loss ({loss.detach().item()}) at {where}")


# ---------------------------------------------------------------------------- stage 1


@dataclass
class PretrainState:
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def pretrain(
    model: ReIDModel,
    train: Domain,
    *,
    size: tuple[int, int],
    batch: int,
    num_instances: int,
    epochs: int,
    iters: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: int,
    label_smoothing: float,
    seed: int,
    device: torch.device,
    amp: bool,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    save_state: Callable[[int, dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    progress: Callable[..., Any] | None = None,
) -> ReIDModel:
    """Supervised training of `model` (with a classifier over train.num_classes) on `train`.
    LR: linear warm-up from 1% over `warmup_epochs`, then x0.1 at 60% of the epochs.

    After each epoch, on_epoch(epoch, stats), then save_state(epoch, state) with state =
    {"epoch": epochs done, "model", "optimizer": state dicts, "rng_torch"}: a `resume`
    holding such a state continues after its epoch and ends with the weights of an
    uninterrupted run (every batch and augmentation is seeded by (seed, epoch, step))."""
    if model.classifier is None or model.classifier.out_features != train.num_classes:
        raise ValueError("pretrain needs a model with a classifier over the train identities")
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["rng_torch"])
        start = int(resume["epoch"])
    decay_at = max(1, int(round(0.6 * epochs)))

    def lr_at(epoch: int) -> float:
        warm = min(1.0, 0.01 + 0.99 * epoch / warmup_epochs) if warmup_epochs > 0 else 1.0
        return lr * warm * (0.1 if epoch >= decay_at else 1.0)

    world = dist.env().world
    mine = dist.local_slice(batch)
    dist.broadcast_module(model)
    for epoch in range(start, epochs):
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch)
        stream = PKStream(train.pids, train.camids, batch, num_instances, seed, epoch)
        sums = _StepSums()
        steps = range(iters) if progress is None else progress(range(iters), desc=f"pretrain {epoch + 1}/{epochs}")
        for it in steps:
            idx = stream.next()  # the global batch; this rank trains on its slice
            x = augment(train.images[idx], size, seeded(seed, 1, epoch, it), device)[mine]
            y_all = train.pids[idx].to(device)
            y = y_all[mine]
            with _autocast(device, amp):
                out = model.forward_all(x)
            logits = out.logits.float()
            loss_ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            # batch-hard mining over the global batch (see smcr.training.dist)
            loss_tri = smcr_ext.soft_triplet(
                dist.global_with_local(out.pooled.float()), None, y_all, margin=0.0).loss
            loss = loss_ce + world * loss_tri
            _check_finite(loss, f"pretrain epoch {epoch + 1} step {it + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.all_reduce_grads(params)
            opt.step()
            sums.add("ce", loss_ce)
            sums.add("triplet", loss_tri)
            sums.add("acc", (logits.argmax(1) == y).float().mean())
        sums = dist.mean_over_ranks(sums.floats(), device)
        dist.average_buffers(model)
        stats = {k: v / iters for k, v in sums.items()} | {"lr": lr_at(epoch)}
        log.info("pretrain epoch %d/%d: %s", epoch + 1, epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
        if on_epoch is not None:
            on_epoch(epoch, stats)
        if save_state is not None:
            save_state(epoch, {
                "epoch": epoch + 1,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "rng_torch": torch.get_rng_state(),
            })
    return model


# ---------------------------------------------------------------------------- stage 2


@dataclass
class Branch:
    """One refinement branch: DTHR (source = D^RT) or RIHR (source = D^R)."""

    name: str
    student: ReIDModel
    teacher: ReIDModel
    memory: HybridMemory
    source: Domain
    labeler: PseudoLabeler
    labels: torch.Tensor | None = None  # (N_t,) pseudo labels of the current epoch
    last_clustering: dict[str, Any] = field(default_factory=dict)


def make_teacher(student: ReIDModel) -> ReIDModel:
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, lam: float, step: int,
               buffers: bool = False) -> None:
    """A(θ) <- a A(θ) + (1 - a) θ with a = min(1 - 1/(step + 1), lam) (MMT's warm-up of Eq. 11).
    Parameters only by default: a teacher that runs forward in training (collaborative
    refinement) keeps its own BN statistics (MMT). `buffers=True` averages the floating
    buffers (BN statistics) the same way, for a teacher that never sees a training batch
    (one branch, or no collaboration): otherwise it would keep stage 1's statistics."""
    a = min(1.0 - 1.0 / (step + 1), lam)
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        pt.mul_(a).add_(ps.detach(), alpha=1.0 - a)
    if buffers:
        for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
            if bt.is_floating_point():
                bt.mul_(a).add_(bs, alpha=1.0 - a)


def build_memory(model: ReIDModel, source: Domain, target: Domain, *, size, batch, device, amp,
                 temperature: float, momentum: float) -> HybridMemory:
    """SpCL's initialisation: source-class centroids and target instance features of one
    pass of `model` (source rows through the source BN of a DSBN model)."""
    set_dsbn_domain(model, "source")
    fs = extract_features(model, source, size, batch, device, amp)
    set_dsbn_domain(model, None)
    ft = extract_features(model, target, size, batch, device, amp)
    return HybridMemory.from_features(
        fs, source.pids.to(fs.device), ft, temperature=temperature, momentum=momentum
    )


def cluster_branch(branch: Branch, features: torch.Tensor, epoch: int) -> dict[str, Any]:
    """Pseudo labels of one branch from (N_t, D) features; relabels its memory."""
    t0 = time.perf_counter()
    try:
        result = branch.labeler(features)
    except ClusteringCollapsed as e:
        log.error("%s epoch %d: %s", branch.name, epoch + 1, e)
        raise
    branch.labels = result.labels.cpu()
    branch.memory.relabel(result.labels)
    info = {
        "clusters": result.num_clusters,
        "un_clustered": result.num_outliers,
        "largest_cluster": result.largest_cluster,
        "indep_threshold": result.indep_threshold,
        "kept_previous": result.kept_previous,
        "seconds": time.perf_counter() - t0,
    }
    branch.last_clustering = info
    log.info("%s epoch %d: %d clusters, %d un-clustered instances (largest %d) in %.2f s",
             branch.name, epoch + 1, result.num_clusters, result.num_outliers,
             result.largest_cluster, info["seconds"])
    return info


def refine_epoch(
    branches: list[Branch],
    target: Domain,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    iters: int,
    step0: int,
    size: tuple[int, int],
    batch_source: int,
    batch_target: int,
    num_instances: int,
    alpha: float,
    beta: float,
    collaborative: bool,
    ema: float,
    seed: int,
    device: torch.device,
    amp: bool,
    progress: Callable[..., Any] | None = None,
) -> dict[str, float]:
    """One epoch of stage 2 over already clustered branches; returns mean losses."""
    n_src = branches[0].source
    src_stream = PKStream(n_src.pids, n_src.camids, batch_source, num_instances, seed, 10_000 + epoch)
    tgt_streams = [
        PKStream(b.labels, target.camids, batch_target, num_instances, seed, 20_000 + 100 * epoch + i)
        for i, b in enumerate(branches)
    ]
    use_col = collaborative and len(branches) == 2
    world = dist.env().world
    mine_s, mine_t = dist.local_slice(batch_source), dist.local_slice(batch_target)
    sums = _StepSums()
    steps = range(iters) if progress is None else progress(range(iters), desc=f"epoch {epoch + 1}")
    for it in steps:
        # The shared target batch follows the branches' pseudo labels in turn.
        # global batches (identical on every rank); each rank trains on its slices
        t_idx = tgt_streams[it % len(tgt_streams)].next()
        s_idx = src_stream.next()
        x_t = augment(target.images[t_idx], size, seeded(seed, 2, epoch, it, 1), device)[mine_t]
        outs, teacher_pooled, rows = [], [], []
        for b in branches:
            rows.append(torch.cat([b.memory.source_rows(b.source.pids[s_idx[mine_s]]),
                                   b.memory.target_rows(t_idx[mine_t])]).to(device))
            # the same crops and flips for D^RT and D^R: one generator state per step
            x_s = augment(b.source.images[s_idx], size, seeded(seed, 2, epoch, it, 0), device)[mine_s]
            with _autocast(device, amp):
                out = b.student.forward_all(torch.cat([x_s, x_t]))
            outs.append(out)
            if use_col:
                with torch.no_grad(), _autocast(device, amp):
                    set_dsbn_domain(b.teacher, "target")
                    teacher_pooled.append(
                        dist.gather_rows(b.teacher.forward_all(x_t).pooled.float()))
                    set_dsbn_domain(b.teacher, None)
        n_s = x_s.shape[0]
        loss_joint, loss_col = [], []
        for i, (b, out) in enumerate(zip(branches, outs, strict=True)):
            loss_joint.append(b.memory(out.embedding.float(), rows[i]))
            if use_col:
                # mined over the global target batch (see smcr.training.dist)
                other = teacher_pooled[1 - i]
                pooled_t = dist.global_with_local(out.pooled.float()[n_s:])
                loss_col.append(smcr_ext.soft_triplet(
                    pooled_t, other, b.labels[t_idx].to(device)).loss)
        # the global-batch terms count `world` times so that the averaged gradient is theirs
        loss = smcr_loss(loss_joint, [world * lc for lc in loss_col], alpha, beta)
        _check_finite(loss, f"refinement epoch {epoch + 1} step {it + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.all_reduce_grads(p for g in optimizer.param_groups for p in g["params"])
        optimizer.step()
        step = step0 + it
        for b, out, r in zip(branches, outs, rows, strict=True):
            # the features and rows that b.memory's forward checked in this step: no second
            # check (and no second host synchronisation on CUDA)
            b.memory.update(out.embedding.detach().float(), r, validate=False)
            ema_update(b.teacher, b.student, ema, step, buffers=not use_col)
        sums.add("loss", smcr_loss(loss_joint, loss_col, alpha, beta))
        for b, lj in zip(branches, loss_joint, strict=True):
            sums.add(f"loss_joint_{b.name}", lj)
        if use_col:
            for b, lc in zip(branches, loss_col, strict=True):
                sums.add(f"loss_col_{b.name}", lc)
    for b in branches:
        dist.average_buffers(b.student)
        dist.average_buffers(b.teacher)
    sums = dist.mean_over_ranks(sums.floats(), device)
    return {k: v / iters for k, v in sums.items()}


def lr_for_epoch(lr: float, epoch: int, step_size: int, gamma: float) -> float:
    return lr * math.pow(gamma, epoch // step_size)
