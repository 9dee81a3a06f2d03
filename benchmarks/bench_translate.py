"""What the translator is for: a re-ID model trained on source images translated into the
target's style scores higher on the target than one trained on the raw source images.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_translate.py            # ~20-30 min CPU
    PYTHONPATH=python .venv/bin/python benchmarks/bench_translate.py --quick    # smoke run
    python benchmarks/bench_translate.py --device cuda --only throughput        # GPU figure

1. Data: `smcr synth` presets market-like (source) and duke-like (target), `--ids`
   identities each (half train, half test), at `--size` (64x32 default).
2. Baseline: `--seeds` re-ID models (smcr.models ResNet-18 of width `--reid-width`, CE with
   label smoothing + batch-hard triplet, P x K = 16 x 4, Adam, `--reid-iters` iterations,
   lr / 10 at 70 %) trained on the raw source
   train split; mAP / Rank-1 on the target's query / gallery (and on the source's).
3. Translator: `train_translator` source -> target (eSPGAN: CycleGAN + identity mapping +
   re-ID cross-entropy; the identity classifier is the seed-0 baseline model, i.e. "a
   source-trained re-ID classifier"); CPU size: 16 filters, 2 residual blocks, 20 epochs x
   60 iterations of batch 8. Reported: training time, how far the translated source
   images' colour statistics (per-channel mean and std) moved toward the target's.
4. D^RT: `translate_dataset` of the source train split; the same models trained on it,
   evaluated on the same target test split.
Optional `--ablation`: the same with a plain CycleGAN + identity mapping (mu3 = 0).

`--only throughput`: translator training iterations per second at `--tp-size` (256x128)
with the published networks (9 residual blocks, 64 filters, batch 8 per domain, identity
term with a ResNet-50 classifier), on `--device`, with the device's name.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from common import device_name  # noqa: E402
from smcr.data import (  # noqa: E402
    EvalTransform,
    RandomMultipleGallerySampler,
    TrainTransform,
    read_dataset,
)
from smcr.models import build_model  # noqa: E402
from smcr.synth import generate  # noqa: E402
from smcr.translate import (  # noqa: E402
    IdeClassifier,
    TranslateConfig,
    Translator,
    train_translator,
    translate_dataset,
)
from smcr.translate.data import load_images  # noqa: E402
from smcr.translate.toy import colour_stats  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    h, w = (int(x) for x in text.lower().split("x"))
    return h, w


# ----------------------------------------------------------------------------- re-ID


def batch_hard_triplet(f: torch.Tensor, y: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss on (B, D) features with (B,) labels (Euclidean)."""
    d = torch.cdist(f, f)  # (B, B)
    same = y[:, None] == y[None, :]
    pos = (d - 1e5 * (~same).float()).max(1).values
    neg = (d + 1e5 * same.float()).min(1).values
    return F.relu(pos - neg + margin).mean()


def load_split(samples, size):
    imgs = load_images([s.path for s in samples], size)
    pids = torch.tensor([s.pid for s in samples])
    cams = torch.tensor([s.camid for s in samples])
    return imgs, pids, cams


def train_reid(train, size, args, seed, dev):
    """A re-ID model trained on (images uint8, relabelled pids, camids)."""
    imgs, pids, cams = train
    k = int(pids.max()) + 1
    torch.manual_seed(seed)
    model = build_model(arch="resnet18", width=args.reid_width, num_classes=k).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4)
    sampler = RandomMultipleGallerySampler(pids.tolist(), cams.tolist(), 4, seed=seed)
    tf = TrainTransform(size=size, padding=max(1, round(10 * size[0] / 256)))
    g = torch.Generator().manual_seed(seed)
    bs = 64
    model.train()
    it, epoch = 0, 0
    while it < args.reid_iters:
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)))
        epoch += 1
        for i in range(0, len(order) - bs + 1, bs):
            if it == int(0.7 * args.reid_iters):
                for grp in opt.param_groups:
                    grp["lr"] *= 0.1
            idx = order[i : i + bs]
            x = tf(imgs[idx], generator=g).to(dev)
            y = pids[idx].to(dev)
            out = model.forward_all(x)
            loss = F.cross_entropy(out.logits, y, label_smoothing=0.1) + batch_hard_triplet(
                out.pooled, y
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            if it >= args.reid_iters:
                break
        if len(order) < bs:
            raise SystemExit(f"too few identities for a batch of {bs}: use more --ids")
    return model.eval()


@torch.no_grad()
def embed(model, imgs, size, dev):
    tf = EvalTransform(size=size)
    return torch.cat([model(tf(imgs[i : i + 256]).to(dev)).cpu() for i in range(0, len(imgs), 256)])


def map_rank1(q, g, qp, gp, qc, gc) -> tuple[float, float]:
    """mAP and Rank-1 of unit query features (Q, D) against gallery features (G, D), cosine
    distance, Market-1501 protocol: gallery items of the query's pid and camera are removed."""
    dist = 1 - q @ g.T  # (Q, G)
    order = dist.argsort(dim=1, stable=True)
    match = (gp[order] == qp[:, None]).float()  # (Q, G)
    keep = ~((gp[order] == qp[:, None]) & (gc[order] == qc[:, None]))
    aps, r1 = [], []
    for i in range(len(q)):
        m = match[i][keep[i]]
        if m.sum() == 0:
            continue
        hits = m.cumsum(0)
        ranks = torch.arange(1, len(m) + 1, dtype=torch.float32)
        aps.append(float((hits / ranks * m).sum() / m.sum()))
        r1.append(float(m[0]))
    return statistics.mean(aps), statistics.mean(r1)


def eval_reid(model, query, gallery, size, dev):
    (qi, qp, qc), (gi, gp, gc) = query, gallery
    return map_rank1(embed(model, qi, size, dev), embed(model, gi, size, dev), qp, gp, qc, gc)


def summary(vals):
    m = statistics.mean(vals)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{100 * m:5.1f} ± {100 * s:.1f}"


def run_models(name, train, evals, size, args, dev, results):
    for seed in range(args.seeds):
        t = time.perf_counter()
        model = train_reid(train, size, args, seed, dev)
        row = {}
        for ename, (q, g) in evals.items():
            row[ename] = eval_reid(model, q, g, size, dev)
        results.setdefault(name, []).append(row)
        msg = ", ".join(f"{e}: mAP {100 * m:.1f} R1 {100 * r:.1f}" for e, (m, r) in row.items())
        print(f"  [{name}] seed {seed}: {msg} ({time.perf_counter() - t:.0f} s)", flush=True)
        if seed == 0:
            first = model
    return first


def accuracy_experiment(args, dev) -> None:
    size = args.size
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_translate_"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    print(f"# bench_translate accuracy: {device_name(dev)}; torch {torch.__version__}")
    print(f"  work folder {work}; load average {os.getloadavg()[0]:.2f}")
    try:
        roots = {}
        for name, preset, seed in (("source", "market-like", 0), ("target", "duke-like", 1)):
            root = work / name
            t = time.perf_counter()
            if not (root / "manifest.csv").is_file():
                generate(
                    preset, root, args.ids, seed=seed, processes=args.processes, image_size=size
                )
            roots[name] = root
            print(
                f"  {name}: {preset}, {args.ids} ids, seed {seed} ({time.perf_counter() - t:.0f} s)"
            )
        src, tgt = read_dataset(roots["source"]), read_dataset(roots["target"])
        for n, d in (("source", src), ("target", tgt)):
            st = d.stats()
            print(
                f"  {n}: train {st['train'][1]} images / {st['train'][0]} ids, query {st['query'][1]}, gallery {st['gallery'][1]}"
            )
        evals = {
            "target": (load_split(tgt.query, size), load_split(tgt.gallery, size)),
            "source": (load_split(src.query, size), load_split(src.gallery, size)),
        }
        results: dict[str, list] = {}

        print("\n## raw source images", flush=True)
        baseline = run_models("raw", load_split(src.train, size), evals, size, args, dev, results)

        variants = [("eSPGAN-residual" if args.residual else "eSPGAN", {"residual": args.residual})]
        if args.ablation:
            variants.append(("CycleGAN+idt", {"mu3": 0.0, "residual": args.residual}))
        tr_info = {}
        for vname, over in variants:
            cfg = TranslateConfig(
                image_size=size,
                ngf=args.ngf,
                ndf=args.ndf,
                n_res_blocks=args.res_blocks,
                batch_size=args.gan_batch,
                epochs=args.gan_epochs,
                decay_epochs=args.gan_epochs // 2,
                iters_per_epoch=args.gan_iters,
                lr=args.gan_lr,
                ide_start_epoch=args.ide_start_epoch,
                **over,
            )
            run_dir = work / f"translator_{vname}"
            print(f"\n## translator {vname}: {cfg}", flush=True)
            t = time.perf_counter()
            clf = IdeClassifier(baseline) if cfg.mu3 > 0 else None
            res = train_translator(
                roots["source"],
                roots["target"],
                run_dir,
                cfg,
                classifier=clf,
                device=dev,
                log=lambda m: print("  " + m, flush=True),
            )
            t_train = time.perf_counter() - t
            steps = res.step
            translated = work / f"source_{vname}"
            t = time.perf_counter()
            translate_dataset(
                Translator.load(run_dir, dev),
                roots["source"],
                translated,
                "AB",
                subsets=("train",),
                device=dev,
                overwrite=True,
            )
            t_apply = time.perf_counter() - t
            src_t = read_dataset(translated)
            train_t = load_split(src_t.train, size)
            s_src = colour_stats(load_split(src.train, size)[0].float() / 255)
            s_tgt = colour_stats(load_split(tgt.train, size)[0].float() / 255)
            s_tr = colour_stats(train_t[0].float() / 255)
            moved = 1 - float((s_tr - s_tgt).norm() / (s_src - s_tgt).norm())
            tr_info[vname] = (t_train, steps, t_apply, moved)
            print(
                f"  translator: {steps} steps in {t_train:.0f} s ({steps / t_train:.2f} it/s); "
                f"translated {len(src_t.train)} images in {t_apply:.0f} s; colour statistics "
                f"moved {100 * moved:.0f} % of the way to the target's",
                flush=True,
            )
            print(f"\n## translated source images ({vname})", flush=True)
            run_models(vname, train_t, evals, size, args, dev, results)

        print(
            f"\n## summary ({args.seeds} re-ID seeds, mean ± std, %; total {time.perf_counter() - t_all:.0f} s)"
        )
        print(
            "| re-ID model trained on | target mAP | target Rank-1 | source mAP | source Rank-1 |"
        )
        print("| --- | --- | --- | --- | --- |")
        for name, rows in results.items():
            cols = []
            for e in ("target", "source"):
                cols += [summary([r[e][0] for r in rows]), summary([r[e][1] for r in rows])]
            print(f"| {name} | " + " | ".join(cols) + " |")
        base = [r["target"][0] for r in results["raw"]]
        for name, rows in results.items():
            if name != "raw":
                gains = [r["target"][0] - b for r, b in zip(rows, base, strict=True)]
                print(
                    f"  {name}: target mAP gain per seed {[round(100 * x, 1) for x in gains]}, "
                    f"mean {100 * statistics.mean(gains):+.1f}, positive in "
                    f"{sum(g > 0 for g in gains)}/{len(gains)}"
                )
        for vname, (t_train, steps, _t_apply, moved) in tr_info.items():
            print(
                f"  {vname}: translator {steps} steps / {t_train:.0f} s; colour moved {100 * moved:.0f} %"
            )
        print(f"  load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- throughput


def throughput(args, dev) -> None:
    from smcr.synth import generate_in_memory
    from smcr.translate.data import Domain
    from smcr.translate.trainer import _Run

    size = args.tp_size
    cfg = (
        TranslateConfig.gpu(image_size=size)
        if args.tp_published
        else TranslateConfig(image_size=size)
    )
    cfg = cfg.replace(
        ide_arch=args.tp_ide_arch, ide_width=1.0 if args.tp_published else cfg.ide_width
    )
    doms = []
    for preset, seed in (("market-like", 0), ("duke-like", 1)):
        d = generate_in_memory(preset, 12, seed=seed, subsets=("train",), image_size=size)
        imgs = torch.from_numpy(d.images).permute(0, 3, 1, 2).contiguous()
        _, labels = torch.unique(torch.from_numpy(d.pids), return_inverse=True)
        doms.append(Domain(preset, Path("."), [], imgs, labels))
    a, b = doms
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    run = _Run(cfg, a, None, dev)
    bs = cfg.batch_size
    g = torch.Generator().manual_seed(0)

    def step():
        ia = torch.randint(len(a.images), (bs,), generator=g)
        ib = torch.randint(len(b.images), (bs,), generator=g)
        ra = a.images[ia].to(dev).float() / 127.5 - 1
        rb = b.images[ib].to(dev).float() / 127.5 - 1
        run.train_step(ra, a.labels[ia].to(dev), rb)
        run.iter += 1

    for _ in range(args.tp_warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t = time.perf_counter()
    for _ in range(args.tp_iters):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t
    mem = (
        f", peak memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
        if dev.type == "cuda"
        else ""
    )
    print(
        f"# translator training throughput on {device_name(dev)}, torch {torch.__version__}\n"
        f"  {size[0]}x{size[1]}, {cfg.n_res_blocks} residual blocks, ngf {cfg.ngf}, ndf {cfg.ndf}, "
        f"batch {bs} per domain, identity term with {cfg.ide_arch} (width {cfg.ide_width}), "
        f"ide_joint {cfg.ide_joint}, fp32\n"
        f"  {args.tp_iters} iterations in {dt:.2f} s: {args.tp_iters / dt:.2f} it/s = "
        f"{2 * bs * args.tp_iters / dt:.1f} images/s (both domains){mem}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is fastest on a busy 2-core machine)",
    )
    ap.add_argument("--only", choices=["accuracy", "throughput"], default=None)
    ap.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    ap.add_argument("--size", type=_size, default=(64, 32))
    ap.add_argument("--ids", type=int, default=200, help="identities per domain (about half train)")
    ap.add_argument("--seeds", type=int, default=5, help="re-ID models per condition")
    ap.add_argument("--reid-width", type=float, default=0.25)
    ap.add_argument(
        "--reid-iters", type=int, default=600, help="re-ID training iterations (batch 64)"
    )
    ap.add_argument("--gan-epochs", type=int, default=20)
    ap.add_argument("--gan-iters", type=int, default=60, help="translator iterations per epoch")
    ap.add_argument("--gan-lr", type=float, default=2e-4)
    ap.add_argument("--ide-start-epoch", type=int, default=0, help="epoch L_c starts (eSPGAN 0)")
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--gan-batch", type=int, default=8, help="translator images per domain per step")
    ap.add_argument("--res-blocks", type=int, default=2)
    ap.add_argument(
        "--residual",
        action="store_true",
        help="generators that predict a change to their input (TranslateConfig.residual)",
    )
    ap.add_argument(
        "--ablation", action="store_true", help="also a translator without L_c (mu3 = 0)"
    )
    ap.add_argument("--processes", type=int, default=2, help="synth worker processes")
    ap.add_argument("--workdir", help="keep data and runs here (reused when present)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--tp-size", type=_size, default=(256, 128))
    ap.add_argument("--tp-iters", type=int, default=30)
    ap.add_argument("--tp-warmup", type=int, default=5)
    ap.add_argument("--tp-ide-arch", default="resnet50")
    ap.add_argument(
        "--tp-cpu-size",
        action="store_true",
        help="throughput of the CPU-size networks instead of the published ones",
    )
    args = ap.parse_args()
    args.tp_published = not args.tp_cpu_size
    if args.quick:
        args.ids, args.seeds, args.reid_iters, args.gan_epochs, args.gan_iters = 40, 1, 20, 2, 5
        args.tp_iters, args.tp_warmup = 2, 1
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    if args.only in (None, "accuracy"):
        accuracy_experiment(args, dev)
    if args.only in (None, "throughput") and (dev.type == "cuda" or args.only == "throughput"):
        throughput(args, dev)


if __name__ == "__main__":
    main()
