"""Training of the translator pair (G_AB: from-domain A -> to-domain B, and G_BA), and the
`Translator` that applies a trained pair.

One iteration (paper Eq. 2, eSPGAN's order):

    fake_b = G_AB(a); rec_a = G_BA(fake_b); fake_a = G_BA(b); rec_b = G_AB(fake_a)
    generators, every g_every-th iteration:
        loss_adv_t = LS(D_B(fake_b), real)            translated A must look like B
        loss_adv_r = LS(D_A(fake_a), real)
        loss_cyc   = |rec_a - a| + |rec_b - b|
        loss_ide   = |G_AB(b) - b| + |G_BA(a) - a|
        loss_c     = CE(C(cat(fake_b, rec_a)), cat(y_a, y_a))       C in eval mode
        loss_sia   = SPGAN contrastive term (option, from siamese_start_epoch)
        loss_dt    = loss_adv_t + loss_adv_r + mu1 loss_cyc + mu2 loss_ide + mu3 loss_c
                     + siamese_weight loss_sia
    classifier (ide_joint): CE on cat(a, fake_b) with labels y_a, BN statistics frozen
    metric net (siamese): (pos0 + pos1 + 2 neg) / 3
    discriminators: 0.5 (LS(D(real), real) + LS(D(pool(fake)), fake)) per domain

A run lives in one folder: `config.yaml`, `inputs.json`, `checkpoint.pt` (everything needed
to continue: networks, optimisers, schedulers, pools, random states, position inside the
epoch, loss history; rewritten atomically after each epoch, every `checkpoint_every`
iterations and when `max_steps` stops the call), `history.json`, `samples/epoch_NNN.png`
(rows: real A, G_AB(A), reconstructed A, real B, G_BA(B), reconstructed B) and, once
finished, `translator.pt` (the two generators and the config). Checkpoints hold plain
tensors, numbers, strings, lists and dicts only (`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smcr.data import ReidDataset

from ..fileio import atomic_save, atomic_write_text, sha256_json
from .classifier import build_classifier, classifier_param_groups, pretrain_classifier
from .config import TranslateConfig, TranslateError
from .data import (
    Domain,
    augment_batch,
    center_batch,
    load_domain,
    samples_fingerprint,
    to_uint8,
    train_samples,
)
from .files import module_fingerprint, save_grid
from .losses import (
    ide_cross_entropy,
    l1_loss,
    lsgan_loss,
    siamese_generator_loss,
    siamese_metric_loss,
)
from .networks import MetricNet, PatchDiscriminator, ResnetGenerator, init_weights
from .pool import ImagePool

__all__ = ["TrainResult", "Translator", "build_generators", "run_key", "train_translator"]

CHECKPOINT_FORMAT = "smcr.translate.checkpoint/1"
TRANSLATOR_FORMAT = "smcr.translator/1"
CHECKPOINT = "checkpoint.pt"
TRANSLATOR = "translator.pt"


@dataclass
class TrainResult:
    """out_dir: the run folder; translator_path: its translator.pt (None while unfinished);
    finished: all epochs done; epoch, step: position reached; history: one dict per epoch;
    reused: the run was already complete and nothing was trained."""

    out_dir: Path
    translator_path: Path | None
    finished: bool
    epoch: int
    step: int
    history: list[dict] = field(default_factory=list)
    reused: bool = False


def build_generators(config: TranslateConfig) -> tuple[ResnetGenerator, ResnetGenerator]:
    """(G_AB, G_BA) of the configured size, CycleGAN-initialised from config.seed."""
    g = torch.Generator().manual_seed(config.seed)
    g_ab = ResnetGenerator(config.ngf, config.n_res_blocks, residual=config.residual)
    g_ba = ResnetGenerator(config.ngf, config.n_res_blocks, residual=config.residual)
    init_weights(g_ab, generator=g)
    init_weights(g_ba, generator=g)
    return g_ab, g_ba


def run_key(config: TranslateConfig, fp_a: str, fp_b: str, classifier_fp: str | None) -> str:
    """Identity of a training run: SHA-256 of the config and the two input lists (and the
    given classifier's weights, if one was passed)."""
    return sha256_json(
        {"config": config.to_dict(), "a": fp_a, "b": fp_b, "classifier": classifier_fp}
    )


def _linear_decay(config: TranslateConfig) -> Callable[[int], float]:
    n_const = config.epochs - config.decay_epochs

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - n_const) / float(config.decay_epochs + 1)

    return factor


def _epoch_indices(n: int, count: int, seed: int, epoch: int, domain: int) -> torch.Tensor:
    """`count` indices into n images: concatenated random permutations, one fresh draw per
    (seed, epoch, domain), so a resumed epoch replays the same order without saved state."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 2 + domain) % (2**63))
    reps = -(-count // n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:count]


class _Run:
    """Networks, optimisers and state of one training run."""

    def __init__(
        self,
        config: TranslateConfig,
        dom_a: Domain,
        classifier: nn.Module | None,
        device: torch.device,
    ) -> None:
        c = self.config = config
        self.device = device
        self.g_ab, self.g_ba = build_generators(c)
        g = torch.Generator().manual_seed(c.seed + 1)
        self.d_a = PatchDiscriminator(c.ndf, c.d_layers)
        self.d_b = PatchDiscriminator(c.ndf, c.d_layers)
        init_weights(self.d_a, generator=g)
        init_weights(self.d_b, generator=g)
        self.metric = None
        if c.siamese:
            self.metric = MetricNet()
            init_weights(self.metric, generator=g)
        self.classifier = None
        self.classifier_built = False
        if c.mu3 > 0:
            if classifier is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(c.seed + 2)
                    classifier = build_classifier(dom_a.num_classes, c)
                self.classifier_built = True
            else:  # joint training must not change the caller's module
                classifier = copy.deepcopy(classifier)
            self.classifier = classifier
        # the classifier's trainable parameters (a given one may hold frozen ones)
        self.classifier_params = (
            [p for p in classifier.parameters() if p.requires_grad]
            if classifier is not None
            else []
        )
        for m in self.modules().values():
            m.to(device)
        betas = (c.beta1, c.beta2)
        g_params = list(self.g_ab.parameters()) + list(self.g_ba.parameters())
        d_params = list(self.d_a.parameters()) + list(self.d_b.parameters())
        self.opt = {
            "g": torch.optim.Adam(g_params, lr=c.lr, betas=betas),
            "d": torch.optim.Adam(d_params, lr=c.lr, betas=betas),
        }
        if self.metric is not None:
            self.opt["m"] = torch.optim.Adam(self.metric.parameters(), lr=c.lr, betas=betas)
        decay = _linear_decay(c)
        self.sched = {k: torch.optim.lr_scheduler.LambdaLR(o, decay) for k, o in self.opt.items()}
        if self.classifier is not None and c.ide_joint:
            self.opt["c"] = torch.optim.SGD(
                classifier_param_groups(self.classifier, c.ide_lr, c.ide_backbone_lr_mult),
                lr=c.ide_lr,
                momentum=0.9,
                weight_decay=5e-4,
                nesterov=True,
            )
            self.sched["c"] = torch.optim.lr_scheduler.StepLR(self.opt["c"], c.ide_lr_step, 0.1)
        self.pool_a = ImagePool(c.pool_size, seed=c.seed + 3)
        self.pool_b = ImagePool(c.pool_size, seed=c.seed + 4)
        self.aug = torch.Generator().manual_seed(c.seed + 5)
        self.epoch = 0
        self.iter = 0
        self.step = 0
        self.history: list[dict] = []
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.seconds = 0.0
        self.ide_pretrain_acc: list[float] = []
        self.classifier_ready = self.classifier is None or not self.classifier_built

    def modules(self) -> dict[str, nn.Module]:
        mods = {"g_ab": self.g_ab, "g_ba": self.g_ba, "d_a": self.d_a, "d_b": self.d_b}
        if self.metric is not None:
            mods["metric"] = self.metric
        if self.classifier is not None:
            mods["classifier"] = self.classifier
        return mods

    # ------------------------------------------------------------------ state
    def state_dict(self, key: str) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "aug": self.aug.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "key": key,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "iter": self.iter,
            "step": self.step,
            "models": {k: m.state_dict() for k, m in self.modules().items()},
            "optim": {k: o.state_dict() for k, o in self.opt.items()},
            "sched": {k: s.state_dict() for k, s in self.sched.items()},
            "pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()},
            "rng": rng,
            "history": self.history,
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "counts": self.counts,
            "seconds": self.seconds,
            "ide_pretrain_acc": self.ide_pretrain_acc,
            "classifier_ready": self.classifier_ready,
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        mods = self.modules()
        if set(st["models"]) != set(mods):
            raise TranslateError(
                f"checkpoint holds networks {sorted(st['models'])}, this run has {sorted(mods)}"
            )
        for k, m in mods.items():
            m.load_state_dict(st["models"][k])
        for k, o in self.opt.items():
            o.load_state_dict(st["optim"][k])
        for k, s in self.sched.items():
            s.load_state_dict(st["sched"][k])
        self.pool_a.load_state_dict(st["pools"]["a"], self.device)
        self.pool_b.load_state_dict(st["pools"]["b"], self.device)
        torch.set_rng_state(st["rng"]["torch"])
        self.aug.set_state(st["rng"]["aug"])
        if "cuda" in st["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(st["rng"]["cuda"], self.device)
        self.epoch, self.iter, self.step = int(st["epoch"]), int(st["iter"]), int(st["step"])
        self.history = list(st["history"])
        self.sums = {k: v.to(self.device) for k, v in st["sums"].items()}
        self.counts = dict(st["counts"])
        self.seconds = float(st["seconds"])
        self.ide_pretrain_acc = list(st["ide_pretrain_acc"])
        self.classifier_ready = bool(st["classifier_ready"])

    # ------------------------------------------------------------------ one iteration
    def _add(self, name: str, value: torch.Tensor) -> None:
        """Accumulate a scalar on its device (no synchronisation per step)."""
        v = value.detach().to(torch.float64)
        self.sums[name] = self.sums[name] + v if name in self.sums else v
        self.counts[name] = self.counts.get(name, 0) + 1

    def epoch_means(self) -> dict[str, float]:
        """Mean of every accumulated scalar over the epoch so far."""
        out = {k: float(self.sums[k]) / self.counts[k] for k in sorted(self.sums)}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"translator training diverged: non-finite {bad} in epoch {self.epoch + 1}"
            )
        return out

    def train_step(self, real_a: torch.Tensor, y_a: torch.Tensor, real_b: torch.Tensor) -> None:
        c = self.config
        update_g = self.iter % c.g_every == 0
        use_sia = self.metric is not None and self.epoch >= c.siamese_start_epoch
        for m in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            m.train()

        # ---- generators: L_dt (Eq. 2)
        with torch.set_grad_enabled(update_g):
            fake_b = self.g_ab(real_a)  # (B, 3, H, W)
            rec_a = self.g_ba(fake_b)
            fake_a = self.g_ba(real_b)
            rec_b = self.g_ab(fake_a)
        if update_g:
            for d in (self.d_a, self.d_b):
                d.requires_grad_(False)
            loss_adv_t = lsgan_loss(self.d_b(fake_b), True)
            loss_adv_r = lsgan_loss(self.d_a(fake_a), True)
            loss_cyc = l1_loss(rec_a, real_a) + l1_loss(rec_b, real_b)
            loss_dt = loss_adv_t + loss_adv_r + c.mu1 * loss_cyc
            if c.mu2 > 0:
                loss_ide = l1_loss(self.g_ab(real_b), real_b) + l1_loss(self.g_ba(real_a), real_a)
                loss_dt = loss_dt + c.mu2 * loss_ide
                self._add("loss_ide", loss_ide)
            if self.classifier is not None and self.epoch >= c.ide_start_epoch:
                self.classifier.eval()
                for p in self.classifier_params:
                    p.requires_grad_(False)
                loss_c = ide_cross_entropy(self.classifier, fake_b, rec_a, y_a)
                for p in self.classifier_params:
                    p.requires_grad_(True)
                loss_dt = loss_dt + c.mu3 * loss_c
                self._add("loss_c", loss_c)
            if use_sia:
                self.metric.eval()
                self.metric.requires_grad_(False)
                loss_sia = siamese_generator_loss(
                    self.metric, real_a, fake_b, real_b, fake_a, c.siamese_margin
                )
                self.metric.requires_grad_(True)
                loss_dt = loss_dt + c.siamese_weight * loss_sia
                self._add("loss_sia", loss_sia)
            self.opt["g"].zero_grad(set_to_none=True)
            loss_dt.backward()
            self.opt["g"].step()
            for d in (self.d_a, self.d_b):
                d.requires_grad_(True)
            self._add("loss_adv_t", loss_adv_t)
            self._add("loss_adv_r", loss_adv_r)
            self._add("loss_cyc", loss_cyc)
            self._add("loss_dt", loss_dt)
        fake_a, fake_b = fake_a.detach(), fake_b.detach()

        # ---- the re-ID classifier on half real, half translated images (eSPGAN)
        if self.classifier is not None and "c" in self.opt:
            self.classifier.eval()  # BN statistics stay those of the real domain
            logits = self.classifier(torch.cat((real_a, fake_b), 0))  # (2B, K)
            y = torch.cat((y_a, y_a), 0)
            loss_cls = nn.functional.cross_entropy(logits, y)
            self.opt["c"].zero_grad(set_to_none=True)
            loss_cls.backward()
            self.opt["c"].step()
            self._add("ide_loss", loss_cls)
            self._add("ide_acc", (logits.argmax(1) == y).float().mean())

        # ---- SPGAN's metric net
        if self.metric is not None:
            self.metric.train()
            loss_m = siamese_metric_loss(
                self.metric, real_a, fake_b, real_b, fake_a, c.siamese_margin
            )
            self.opt["m"].zero_grad(set_to_none=True)
            loss_m.backward()
            self.opt["m"].step()
            self._add("loss_metric", loss_m)

        # ---- discriminators, on pooled translations
        pooled_a = self.pool_a.query(fake_a)
        pooled_b = self.pool_b.query(fake_b)
        loss_d_a = 0.5 * (
            lsgan_loss(self.d_a(real_a), True) + lsgan_loss(self.d_a(pooled_a), False)
        )
        loss_d_b = 0.5 * (
            lsgan_loss(self.d_b(real_b), True) + lsgan_loss(self.d_b(pooled_b), False)
        )
        self.opt["d"].zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        self.opt["d"].step()
        self._add("loss_d_a", loss_d_a)
        self._add("loss_d_b", loss_d_b)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Translations and reconstructions of fixed images (generators in eval mode)."""
        self.g_ab.eval()
        self.g_ba.eval()
        fake_b = self.g_ab(real_a)
        fake_a = self.g_ba(real_b)
        out = {
            "real_a": real_a,
            "fake_b": fake_b,
            "rec_a": self.g_ba(fake_b),
            "real_b": real_b,
            "fake_a": fake_a,
            "rec_b": self.g_ab(fake_a),
        }
        self.g_ab.train()
        self.g_ba.train()
        return out


def _log_line(epoch: int, epochs: int, entry: dict) -> str:
    keys = (
        "loss_adv_t",
        "loss_adv_r",
        "loss_cyc",
        "loss_ide",
        "loss_c",
        "loss_sia",
        "loss_d_a",
        "loss_d_b",
        "ide_acc",
    )
    parts = [f"{k[5:] if k.startswith('loss_') else k} {entry[k]:.3f}" for k in keys if k in entry]
    return (
        f"translate epoch {epoch}/{epochs}: "
        + ", ".join(parts)
        + f"; sample cycle L1 {entry['sample_cycle_l1']:.3f}; {entry['seconds']:.1f} s"
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise TranslateError(f"device must be like 'cpu' or 'cuda:0', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TranslateError(f"device {device!r} asked for, but CUDA is not available")
    return dev


def train_translator(
    from_data: str | os.PathLike | ReidDataset,
    to_data: str | os.PathLike | ReidDataset,
    out_dir: str | os.PathLike,
    config: TranslateConfig | None = None,
    *,
    classifier: nn.Module | None = None,
    device: str | torch.device = "cpu",
    resume: bool = True,
    max_steps: int | None = None,
    max_images: int | None = None,
    checkpoint_every: int = 0,
    load_workers: int = 0,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the translator pair from domain A (`from_data`, labelled) to domain B (`to_data`,
    labels unused) on their `train` lists; see the module docstring for the loss and the folder.

    Args:
        from_data, to_data: dataset roots (any layout `read_dataset` opens) or ReidDatasets.
        out_dir: the run folder (created); an existing run in it is continued (`resume`)
            when its config and inputs are the same; a finished one is returned as it is.
        config: TranslateConfig (default: the CPU-sized defaults).
        classifier: a trained re-ID classifier of A's identities for L_c (any module mapping
            [-1, 1] images to logits over A's relabelled train pids); default: a small
            ResNet trained on A first (`ide_pretrain_epochs`).
        device: where to train ('cpu', 'cuda', 'cuda:1').
        resume: False discards an unfinished run in `out_dir` and starts afresh.
        max_steps: stop (after checkpointing) once this many iterations were done in this
            call; call again to continue. None = run to the end.
        max_images: use only the first N training images of each domain.
        checkpoint_every: also checkpoint every N iterations (0 = at epoch ends only).
        load_workers: DataLoader workers decoding the images once at the start.
        log: called with one progress line per epoch (e.g. `print`).
    """
    config = TranslateConfig() if config is None else config
    if not isinstance(config, TranslateConfig):
        raise TypeError(f"config must be a TranslateConfig, got {type(config).__name__}")
    if classifier is not None and not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
    for name, v in (("max_steps", max_steps),):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise TranslateError(f"{name} must be None or an int >= 1, got {v!r}")
    if (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int)
        or checkpoint_every < 0
    ):
        raise TranslateError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
    if isinstance(load_workers, bool) or not isinstance(load_workers, int) or load_workers < 0:
        raise TranslateError(f"load_workers (--workers) must be an int >= 0, got {load_workers!r}")
    dev = _resolve_device(device)
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TranslateError(f"out_dir {out} exists and is not a folder")
    c = config

    ds_a, list_a = train_samples(from_data, max_images, "from_data")
    ds_b, list_b = train_samples(to_data, max_images, "to_data")
    fp_a = samples_fingerprint(list_a, ds_a.root)
    fp_b = samples_fingerprint(list_b, ds_b.root)
    cls_fp = module_fingerprint(classifier) if (classifier is not None and c.mu3 > 0) else None
    key = run_key(c, fp_a, fp_b, cls_fp)

    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, final_path = out / CHECKPOINT, out / TRANSLATOR
    if final_path.is_file():
        try:
            done = torch.load(final_path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - unreadable: not this run's result
            done = None
        if not isinstance(done, dict):
            done = {}
        if done.get("key") == key:
            say(f"translate: {final_path} is already trained with these inputs and settings")
            return TrainResult(
                out,
                final_path,
                True,
                c.epochs,
                int(done.get("steps", 0)),
                list(done.get("history", [])),
                reused=True,
            )
        if resume:
            raise TranslateError(
                f"{out} holds a finished translator of other inputs or settings (or an unreadable "
                f"translator.pt); use another "
                f"out_dir or resume=False (--no-resume) to replace it"
            )
        final_path.unlink()

    t0 = time.perf_counter()
    dom_a = load_domain(ds_a, c.image_size, c.load_scale, max_images, load_workers, "from_data")
    dom_b = load_domain(ds_b, c.image_size, c.load_scale, max_images, load_workers, "to_data")
    say(
        f"translate: A = {dom_a.name} ({len(dom_a)} images, {dom_a.num_classes} ids), "
        f"B = {dom_b.name} ({len(dom_b)} images), loaded in {time.perf_counter() - t0:.1f} s"
    )
    inputs = {
        "key": key,
        "from": {
            "name": dom_a.name,
            "root": str(dom_a.root),
            "images": len(dom_a),
            "ids": dom_a.num_classes,
            "fingerprint": fp_a,
        },
        "to": {
            "name": dom_b.name,
            "root": str(dom_b.root),
            "images": len(dom_b),
            "fingerprint": fp_b,
        },
        "classifier": cls_fp or ("built" if c.mu3 > 0 else None),
    }

    if classifier is not None and c.mu3 > 0:
        was_training = classifier.training
        classifier.eval()
        with torch.no_grad():
            cdev = next(classifier.parameters(), torch.empty(0)).device
            probe = classifier(center_batch(dom_a.images[:2], c.image_size).to(cdev))
        classifier.train(was_training)
        if probe.dim() != 2 or probe.shape[1] != dom_a.num_classes:
            raise TranslateError(
                f"classifier must give (B, {dom_a.num_classes}) logits (one per train identity "
                f"of from_data {dom_a.root}), got shape {tuple(probe.shape)}"
            )
    run = _Run(c, dom_a, classifier, dev)

    def _body() -> TrainResult:
        if ckpt_path.is_file():
            st = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if st.get("format") != CHECKPOINT_FORMAT:
                raise TranslateError(
                    f"{ckpt_path}: not a translator checkpoint ({st.get('format')!r})"
                )
            if resume and st["key"] != key:
                raise TranslateError(
                    f"{ckpt_path} belongs to a run with other inputs or settings; use another "
                    f"out_dir or resume=False (--no-resume) to start afresh"
                )
            if resume:
                run.load_state_dict(st)
                say(f"translate: resuming {out} at epoch {run.epoch + 1}, iteration {run.iter}")
            else:
                ckpt_path.unlink()
        atomic_write_text(out / "config.yaml", _yaml(c.to_dict()))
        atomic_write_text(out / "inputs.json", _json(inputs))

        def save() -> None:
            atomic_save(run.state_dict(key), ckpt_path)

        # the identity classifier: trained on A before the GAN when we built it
        if not run.classifier_ready:
            run.ide_pretrain_acc = pretrain_classifier(
                run.classifier, dom_a, c, dev, torch.Generator().manual_seed(c.seed + 6), say
            )
            run.classifier_ready = True
            save()

        # fixed images of the sample grid
        gs = torch.Generator().manual_seed(c.seed + 7)
        ia = torch.randperm(len(dom_a), generator=gs)[: c.samples]
        ib = torch.randperm(len(dom_b), generator=gs)[: c.samples]
        sample_a = center_batch(dom_a.images[ia], c.image_size).to(dev)
        sample_b = center_batch(dom_b.images[ib], c.image_size).to(dev)

        iters = c.resolved_iters(len(dom_a), len(dom_b))
        steps_here = 0
        while run.epoch < c.epochs:
            idx_a = _epoch_indices(len(dom_a), iters * c.batch_size, c.seed, run.epoch, 0)
            idx_b = _epoch_indices(len(dom_b), iters * c.batch_size, c.seed, run.epoch, 1)
            t_epoch = time.perf_counter()
            while run.iter < iters:
                sl = slice(run.iter * c.batch_size, (run.iter + 1) * c.batch_size)
                real_a = augment_batch(dom_a.images[idx_a[sl]], c.image_size, c.flip, run.aug).to(
                    dev
                )
                real_b = augment_batch(dom_b.images[idx_b[sl]], c.image_size, c.flip, run.aug).to(
                    dev
                )
                y_a = dom_a.labels[idx_a[sl]].to(dev)
                run.train_step(real_a, y_a, real_b)
                run.iter += 1
                run.step += 1
                steps_here += 1
                if (max_steps is not None and steps_here >= max_steps) or (
                    checkpoint_every and run.step % checkpoint_every == 0
                ):
                    run.seconds += time.perf_counter() - t_epoch
                    t_epoch = time.perf_counter()
                    if run.iter < iters:
                        save()
                        if max_steps is not None and steps_here >= max_steps:
                            say(
                                f"translate: stopped after {steps_here} steps; checkpoint {ckpt_path}"
                            )
                            return TrainResult(out, None, False, run.epoch, run.step, run.history)
            run.seconds += time.perf_counter() - t_epoch
            # ---- end of epoch: statistics, sample grid, schedulers, checkpoint
            entry: dict[str, Any] = {"epoch": run.epoch + 1, "steps": run.step}
            entry.update(run.epoch_means())
            s = run.sample(sample_a, sample_b)
            entry["sample_cycle_l1"] = (
                float(
                    (s["rec_a"] - s["real_a"]).abs().mean()
                    + (s["rec_b"] - s["real_b"]).abs().mean()
                )
                / 2
            )
            entry["lr"] = run.opt["g"].param_groups[0]["lr"]
            entry["seconds"] = run.seconds
            run.history.append(entry)
            grid = out / "samples" / f"epoch_{run.epoch + 1:03d}.png"
            save_grid(
                [s[k] for k in ("real_a", "fake_b", "rec_a", "real_b", "fake_a", "rec_b")], grid
            )
            for sch in run.sched.values():
                sch.step()
            run.epoch += 1
            run.iter = 0
            run.sums, run.counts, run.seconds = {}, {}, 0.0
            save()
            atomic_write_text(out / "history.json", _json(run.history))
            say(_log_line(run.epoch, c.epochs, entry))
            if max_steps is not None and steps_here >= max_steps and run.epoch < c.epochs:
                say(f"translate: stopped after {steps_here} steps; checkpoint {ckpt_path}")
                return TrainResult(out, None, False, run.epoch, run.step, run.history)

        final = {
            "format": TRANSLATOR_FORMAT,
            "key": key,
            "config": c.to_dict(),
            "g_ab": {k: v.cpu() for k, v in run.g_ab.state_dict().items()},
            "g_ba": {k: v.cpu() for k, v in run.g_ba.state_dict().items()},
            "from": inputs["from"],
            "to": inputs["to"],
            "steps": run.step,
            "history": run.history,
            "ide_pretrain_acc": run.ide_pretrain_acc,
        }
        atomic_save(final, final_path)
        say(f"translate: wrote {final_path}")
        return TrainResult(out, final_path, True, run.epoch, run.step, run.history)

    # every draw of the global generator (dropout) belongs to the run: seeded from the
    # config, saved in checkpoints, and the caller's random state is left untouched
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(c.seed + 8)
        return _body()


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=True)


class Translator:
    """A trained generator pair. `translate(images, "AB")` maps A-domain images to B's style
    (`"BA"` the other way); images are (B, 3, H, W) uint8 or float in [-1, 1]."""

    def __init__(
        self,
        config: TranslateConfig,
        g_ab: ResnetGenerator,
        g_ba: ResnetGenerator,
        meta: dict | None = None,
    ) -> None:
        self.config = config
        self.g_ab = g_ab.eval()
        self.g_ba = g_ba.eval()
        self.meta = meta or {}
        self.device = next(g_ab.parameters()).device

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Translator:
        """From a translator.pt or a training folder that holds one."""
        p = Path(path)
        if p.is_dir():
            p = p / TRANSLATOR
        if not p.is_file():
            raise TranslateError(
                f"translator {p} does not exist (train one with `smcr translate train`; an "
                f"unfinished run has only {CHECKPOINT})"
            )
        if p.stat().st_size == 0:
            raise TranslateError(f"{p}: the translator file is empty (0 bytes)")
        try:
            st = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            # torch's own messages run over many lines; the first one says what failed
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TranslateError(
                f"{p}: cannot read translator file (not a complete file written by "
                f"`smcr translate train`): {why}"
            ) from e
        if not isinstance(st, dict) or st.get("format") != TRANSLATOR_FORMAT:
            fmt = st.get("format") if isinstance(st, dict) else None
            raise TranslateError(f"{p}: not an smcr translator file (format {fmt!r})")
        try:
            config = TranslateConfig.from_dict(st["config"])
            g_ab, g_ba = build_generators(config)
            g_ab.load_state_dict(st["g_ab"])
            g_ba.load_state_dict(st["g_ba"])
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TranslateError(f"{p}: damaged translator file ({type(e).__name__}: {why})") from e
        dev = _resolve_device(device)
        meta = {k: st[k] for k in ("key", "from", "to", "steps", "history") if k in st}
        return cls(config, g_ab.to(dev), g_ba.to(dev), meta)

    @property
    def key(self) -> str:
        """The training run's key (config + inputs)."""
        return str(self.meta.get("key", ""))

    def generator(self, direction: str) -> ResnetGenerator:
        if direction not in ("AB", "BA"):
            raise TranslateError(f"direction must be 'AB' or 'BA', got {direction!r}")
        return self.g_ab if direction == "AB" else self.g_ba

    @torch.no_grad()
    def translate(
        self, images: torch.Tensor, direction: str = "AB", batch_size: int = 64
    ) -> torch.Tensor:
        """(N, 3, H, W) images at the translator's size -> translated (N, 3, H, W): uint8 in,
        uint8 out; float in [-1, 1] in, float out."""
        g = self.generator(direction)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise TranslateError(
                f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images).__name__)}"
            )
        if tuple(images.shape[-2:]) != tuple(self.config.image_size):
            raise TranslateError(
                f"images must be {self.config.image_size[0]}x{self.config.image_size[1]} (the "
                f"translator's size), got {images.shape[-2]}x{images.shape[-1]}"
            )
        is_u8 = images.dtype == torch.uint8
        outs = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(self.device)
            x = x.float() / 127.5 - 1.0 if is_u8 else x.float()
            y = g(x)
            outs.append(to_uint8(y) if is_u8 else y.cpu())
        return torch.cat(outs, 0) if outs else images.clone()
