"""One hybrid-memory training step (loss, backward, momentum update), ours vs the plain-PyTorch
formulation, in one process.

For each memory size (C_s source-class rows + N_t target rows, d = 2048) and batch B:
  (a) plain PyTorch, SpCL's formulation (smcr.losses.reference): the B x M logits, a scatter
      into a (#labels x B) matrix, an un-stabilised masked softmax, autograd backward
      (G M), and SpCL's Python loop for the update;
  (b) ours, float32 memory: smcr_ext.hybrid_memory_loss (streamed label means, online
      softmax, gradient accumulated in the same pass) + backward + hybrid_memory_update_;
  (c) ours, bfloat16 memory (half the bytes);
  (f) the floor of (a): its two B x M x d products F M^T and G M alone.
Prints milliseconds per step (median of --steps after --warmup), the peak of memory
allocated during a step (CPU: glibc heap sampled every 0.5 ms; CUDA: the caching
allocator's peak), not counting the memory bank, the ratios a/b, a/c and b/f, and checks that (b) and (a) agree.

The target rows are labelled like a mid-training clustering: --clustered of them in clusters
(about 0.75 C_s clusters of random sizes), the rest un-clustered instances, so the label
count L is well below M; `--labels instances` gives the worst case L = M (no clusters).
The label index (rows grouped by label) is built once per relabelling, outside the step.
The rows lie as sampled (SpCL's memory: target rows in dataset order); `--layout grouped`
stores them in label order, as smcr.losses.HybridMemory does, and `--layout both` times ours
on both, interleaved, with the ratios.

    python benchmarks/bench_memory.py                                  # CPU, all sizes
    python benchmarks/bench_memory.py --sizes 12936 --batch 64 --labels instances
    python benchmarks/bench_memory.py --device cuda --results benchmarks/RESULTS.md
    python benchmarks/bench_memory.py --overhead          # fixed cost per call (host side)
    python benchmarks/bench_memory.py --layout both --skip-plain   # rows as sampled vs grouped
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from common import PeakCuda, PeakSampler, device_name, upsert
from smcr.losses import HybridMemory
from smcr.losses.reference import hybrid_memory_loss_reference, hybrid_memory_update_reference

import smcr_ext

# N_t target rows -> C_s source classes (Market-1501, MSMT17, and a 126k-image target set).
SIZES = {12936: 751, 32621: 1041, 126441: 4101}


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


class PeakHeap(PeakSampler):
    """Peak bytes allocated on the C heap (glibc mallinfo2: in-use arena + mmapped blocks,
    which is where torch's CPU tensors live) above a baseline, sampled every 0.5 ms by a
    thread. Unlike the resident set size it sees memory that is freed and reused."""

    interval = 0.0005

    def __init__(self) -> None:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        self._mallinfo2 = libc.mallinfo2

    def read(self) -> int:
        m = self._mallinfo2()
        return m.uordblks + m.hblkhd



def make_memory(n_t: int, c_s: int, d: int, labels: str, clustered: float, device: str,
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, d) float32 unit rows and their labels: source rows 0..C_s-1 carry their class,
    target rows carry C_s + cluster, or a label of their own when un-clustered."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    m = c_s + n_t
    gd = torch.Generator(device=device).manual_seed(seed)
    memory = torch.randn(m, d, generator=gd, device=device)
    memory.div_(memory.norm(dim=1, keepdim=True))
    if labels == "instances":
        tl = torch.arange(n_t)
    else:
        k = max(1, round(0.75 * c_s))
        n_in = round(clustered * n_t)
        perm = torch.randperm(n_t, generator=g)
        tl = torch.empty(n_t, dtype=torch.int64)
        # Random cluster sizes >= 2: every cluster gets 2 members, the rest at random.
        sizes = torch.full((k,), 2) + torch.multinomial(torch.ones(k), n_in - 2 * k, True,
                                                        generator=g).bincount(minlength=k)
        tl[perm[:n_in]] = torch.repeat_interleave(torch.arange(k), sizes)
        tl[perm[n_in:]] = k + torch.arange(n_t - n_in)
    row_labels = torch.cat([torch.arange(c_s), c_s + tl])
    return memory, row_labels.to(device)


def make_batch(b: int, c_s: int, n_t: int, d: int, device: str, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    rows = torch.cat([torch.randint(0, c_s, (b // 2,), generator=g),
                      c_s + torch.randint(0, n_t, (b - b // 2,), generator=g)])
    f = torch.randn(b, d, generator=g)
    f = f / f.norm(dim=1, keepdim=True)
    return f.to(device), rows.to(device)


def plain_step(f0, memory, row_labels, rows):
    f = f0.clone().requires_grad_()
    loss, _ = hybrid_memory_loss_reference(f, memory, row_labels, row_labels[rows])
    loss.backward()
    hybrid_memory_update_reference(memory, rows, f.detach())
    return loss


def ours_step(f0, memory, index, rows, validate=True):
    f = f0.clone().requires_grad_()
    loss = smcr_ext.hybrid_memory_loss(f, memory, index, index.row_labels[rows],
                                       validate=validate).loss
    loss.backward()
    smcr_ext.hybrid_memory_update_(memory, rows, f.detach(), validate=validate)
    return loss


def module_step(f0, memory, rows):
    f = f0.clone().requires_grad_()
    loss = memory(f, rows)
    loss.backward()
    memory.update(f.detach(), rows, validate=False)  # as the trainer: forward checked them
    return loss


def in_cuda_graph(step, warmup: int = 3):
    """`step` (no arguments, no host synchronisation: ours with validate=False) captured once
    in a CUDA graph; returns its replay, or the reason the capture failed (reported in the
    table instead of ending the run). What a user gets from torch.cuda.graphs or
    torch.compile(mode="reduce-overhead"): the device's time, no per-launch host cost."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        graph.replay()
        torch.cuda.synchronize()
        return graph.replay
    except Exception as e:  # noqa: BLE001  (the benchmark reports it and goes on)
        torch.cuda.synchronize()
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def floor_step(f0, memory, grad_scores):
    s = f0 @ memory.t()  # (B, M)
    g = grad_scores @ memory  # (B, d)
    return s, g


def time_interleaved(steps_by_name: dict, device: str, warmup: int, steps: int
                     ) -> dict[str, tuple[float, float]]:
    """Run the variants in turn, one step each per round, so that they see the same machine
    load; returns {name: (median ms per step, peak MiB above the start of its steps)}."""
    names = list(steps_by_name)
    for _ in range(warmup):
        for name in names:
            steps_by_name[name]()
    ms = {name: [] for name in names}
    peak = dict.fromkeys(names, 0.0)
    for _ in range(steps):
        for name in names:
            step = steps_by_name[name]
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                with PeakCuda() as pk:
                    start.record()
                    step()
                    end.record()
                ms[name].append(start.elapsed_time(end))
            else:
                with PeakHeap() as pk:
                    t0 = time.perf_counter()
                    step()
                    ms[name].append((time.perf_counter() - t0) * 1e3)
            peak[name] = max(peak[name], pk.above_mib)
    return {name: (statistics.median(ms[name]), peak[name]) for name in names}


def run_size(n_t: int, args) -> list[str]:
    c_s = SIZES.get(n_t, max(1, n_t // 30))
    dev = args.device
    memory, row_labels = make_memory(n_t, c_s, args.d, args.labels, args.clustered, dev, args.seed)
    # rows stored in label order (each cluster's rows together, the single-row labels on
    # consecutive rows, as smcr.losses.HybridMemory keeps them): the same memory and labels,
    # permuted (a stable sort by label, what HybridMemory.relabel does)
    order = torch.argsort(row_labels, stable=True)
    both = args.layout == "both"
    if args.layout == "grouped":  # the batch's rows are drawn from the permuted memory
        memory, row_labels = memory[order].contiguous(), row_labels[order]
    m = memory.shape[0]
    t0 = time.perf_counter()
    index = smcr_ext.label_index(row_labels)
    if dev == "cuda":
        torch.cuda.synchronize()
    index_ms = (time.perf_counter() - t0) * 1e3
    num_labels = int((index.counts > 0).sum())
    mem_bf16 = memory.to(torch.bfloat16)
    lines = [
        f"### N_t = {n_t:,} target + C_s = {c_s:,} source rows (M = {m:,}), d = {args.d}, "
        f"L = {num_labels:,} labels ({args.labels}), {device_name(dev)}"
        + (", ours without value checks" if args.no_validate else "")
        + (", TF32 float32 products" if args.tf32 and dev == "cuda" else "")
        + (", rows grouped by label" if args.layout == "grouped" else "")
        + (", rows as sampled (scattered) and grouped by label" if both else ""),
        "",
        "| B | (a) plain ms | (b) ours f32 ms | (c) ours bf16 ms | (f) floor of (a) ms | "
        "a/b | a/c | b/f | peak MiB a / b / c | loss a vs b |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    graph_rows = []  # CUDA: (b) and (c) captured in a CUDA graph, validate=False
    layout_rows = []  # --layout both: (b) and (c) with the rows in label order
    if both:
        g_memory, g_labels = memory[order].contiguous(), row_labels[order]
        g_index = smcr_ext.label_index(g_labels)
        g_bf16 = g_memory.to(torch.bfloat16)
        new_row = torch.empty_like(order)
        new_row[order] = torch.arange(order.numel(), device=order.device)
        # smcr.losses.HybridMemory holding the same memory and labels (loaded as a state in
        # SpCL's layout, which it rearranges: one mean row per cluster, which its loss reads
        # instead of the cluster's rows, and which its update keeps current)
        modules = {}
        for key, mem in (("h", memory), ("hc", mem_bf16)):
            hm = HybridMemory(args.d, c_s, n_t, dtype=mem.dtype, device=dev,
                              validate=not args.no_validate)
            hm.load_state_dict({"features": mem, "labels": row_labels})
            modules[key] = hm
    for b in args.batch:
        f0, rows = make_batch(b, c_s, n_t, args.d, dev, args.seed + b)
        # Agreement on one step from the same memory.
        m_a, m_b = memory.clone(), memory.clone()
        la = plain_step(f0, m_a, row_labels, rows).item()
        lb = ours_step(f0, m_b, index, rows).item()
        mem_diff = (m_a - m_b).abs().max().item()
        del m_a, m_b
        gs = torch.randn(b, m, device=dev)  # (B, M) stand-in for the plain backward's G
        variants = {
            "a": partial(plain_step, f0, memory.clone(), row_labels, rows),
            "b": partial(ours_step, f0, memory.clone(), index, rows, not args.no_validate),
            "c": partial(ours_step, f0, mem_bf16.clone(), index, rows, not args.no_validate),
            "f": partial(floor_step, f0, memory, gs),
        }
        if args.skip_plain:
            del variants["a"]
        if both:  # the same batch: the same features and memory rows, at their new places
            g_rows = new_row[rows]
            variants["bg"] = partial(ours_step, f0, g_memory.clone(), g_index, g_rows,
                                     not args.no_validate)
            variants["cg"] = partial(ours_step, f0, g_bf16.clone(), g_index, g_rows,
                                     not args.no_validate)
            is_src = rows < c_s
            for key, hm in modules.items():
                h_rows = torch.where(is_src, rows, hm.target_rows((rows - c_s).clamp(min=0)))
                variants[key] = partial(module_step, f0, copy.deepcopy(hm), h_rows)
                if key == "h":  # agreement with (b) on one step from the same memory
                    lh = module_step(f0, copy.deepcopy(hm), h_rows).item()
        failed = {}
        if dev == "cuda":
            for key, mem in (("gb", memory), ("gc", mem_bf16)):
                replay = in_cuda_graph(partial(ours_step, f0, mem.clone(), index, rows, False))
                if callable(replay):
                    variants[key] = replay
                else:
                    failed[key] = replay
        res = time_interleaved(variants, dev, args.warmup, args.steps)
        variants = gs = None  # free the working copies before the next batch size
        ta, pa = res.get("a", (float("nan"), float("nan")))
        (tb, pb), (tc, pc), (tf, _) = res["b"], res["c"], res["f"]
        lines.append(
            f"| {b} | {ta:.1f} | {tb:.2f} | {tc:.2f} | {tf:.1f} | {ta / tb:.2f} | "
            f"{ta / tc:.2f} | {tb / tf:.2f} | {pa:.0f} / {pb:.0f} / {pc:.0f} | "
            f"{la:.6f} vs {lb:.6f} (memory after one update: max diff {mem_diff:.1e}) |"
        )
        print(lines[-1], flush=True)
        if both:
            (tbg, _), (tcg, _), (th, ph), (thc, phc) = res["bg"], res["cg"], res["h"], res["hc"]
            layout_rows.append(
                f"| {b} | {tb:.2f} | {tbg:.2f} | {th:.2f} | {tb / tbg:.2f} | {tb / th:.2f} | "
                f"{tc:.2f} | {tcg:.2f} | {thc:.2f} | {tc / tcg:.2f} | {tc / thc:.2f} | "
                f"{ph:.0f} / {phc:.0f} | {lb:.6f} vs {lh:.6f} |")
        if dev == "cuda":
            cells = [f"{res[k][0]:.3f}" if k in res else f"capture failed ({failed[k]})"
                     for k in ("gb", "gc")]
            graph_rows.append(f"| {b} | {tb:.2f} | {cells[0]} | {tc:.2f} | {cells[1]} |")
    load = os.getloadavg()[0] if dev == "cpu" else float("nan")
    if layout_rows:
        lines += [
            "",
            "The same steps with the rows in label order (b', c': "
            f"{int(g_index.runs[:, 1].sum()):,} of the {num_labels:,} labels in "
            f"{g_index.runs.shape[0]} zero-copy runs) and through smcr.losses.HybridMemory "
            f"(h: {modules['h'].num_clusters:,} cluster-mean rows, the loss reads "
            f"{modules['h'].num_labels:,} of {modules['h'].features.shape[0]:,} rows; forward, "
            "backward and update(validate=False) as the trainer calls them), interleaved with "
            "the above:",
            "",
            "| B | (b) f32 as sampled ms | (b') f32 label order ms | (h) f32 HybridMemory ms | "
            "b/b' | b/h | (c) bf16 as sampled ms | (c') bf16 label order ms | "
            "(hc) bf16 HybridMemory ms | c/c' | c/hc | peak MiB h / hc | loss b vs h |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *layout_rows,
        ]
    if graph_rows:
        lines += [
            "",
            "The same steps captured in a CUDA graph (validate=False, replayed; the device's "
            "time without per-launch host cost):",
            "",
            "| B | (b) ours f32 ms | (b) in a CUDA graph ms | (c) ours bf16 ms | "
            "(c) in a CUDA graph ms |",
            "|---|---|---|---|---|",
            *graph_rows,
        ]
    lines += [
        "",
        f"- label index (once per relabelling, not in the step): {index_ms:.1f} ms; memory "
        f"bank {memory.numel() * 4 / 2**20:.0f} MiB float32, {mem_bf16.numel() * 2 / 2**20:.0f} "
        "MiB bfloat16 (not counted in the peaks)",
        f"- the variants ran interleaved, one step each per round ({args.steps} rounds after "
        f"{args.warmup} warm-up); 1-minute load average at the end: {load:.1f} on "
        f"{os.cpu_count()} cores",
        "",
    ]
    return lines


def run_overhead(args) -> list[str]:
    """The fixed cost of one call at a tiny size (M = 64 rows, d = 64, B = 64), where the
    arithmetic is negligible: what every training step pays on the host before the device
    has anything to do (on a GPU, time the device waits for when it exceeds the kernels')."""
    dev = args.device
    c_s, n_t, d, b = 16, 48, 64, 64
    memory, row_labels = make_memory(n_t, c_s, d, "clustered", 0.75, dev, args.seed)
    index = smcr_ext.label_index(row_labels)
    f0, rows = make_batch(b, c_s, n_t, d, dev, args.seed)
    targets = index.row_labels[rows]
    teacher = f0.flip(0).contiguous()
    labels = targets.clone()

    def loss_fwd(validate):
        smcr_ext.hybrid_memory_loss(f0, memory, index, targets, validate=validate)

    def loss_fwd_bwd(validate):
        f = f0.clone().requires_grad_()
        smcr_ext.hybrid_memory_loss(f, memory, index, targets, validate=validate).loss.backward()

    def update(validate):
        smcr_ext.hybrid_memory_update_(memory, rows, f0, validate=validate)

    def step(validate):
        loss_fwd_bwd(validate)
        update(validate)

    def triplet_fwd_bwd():
        f = f0.clone().requires_grad_()
        smcr_ext.soft_triplet(f, teacher, labels).loss.backward()

    def autograd_floor():
        f = f0.clone().requires_grad_()
        (f @ memory.t()).sum().backward()

    def plain_fwd_bwd():
        f = f0.clone().requires_grad_()
        hybrid_memory_loss_reference(f, memory, row_labels, targets)[0].backward()

    # the trainer's call sequence through smcr.losses.HybridMemory (same memory and labels:
    # a state in SpCL's layout, rearranged into one row per label and cluster-mean rows)
    hm = HybridMemory(d, c_s, n_t, device=dev)
    hm.load_state_dict({"features": memory, "labels": row_labels})
    hm_rows = torch.where(rows < c_s, rows, hm.target_rows((rows - c_s).clamp(min=0)))

    def module_step_checked(validate):
        hm.validate = validate
        module_step(f0, hm, hm_rows)

    variants = {
        "hybrid_memory_loss, forward": partial(loss_fwd, True),
        "hybrid_memory_loss, forward + backward": partial(loss_fwd_bwd, True),
        "hybrid_memory_loss, forward + backward, validate=False": partial(loss_fwd_bwd, False),
        "hybrid_memory_update_": partial(update, True),
        "hybrid_memory_update_, validate=False": partial(update, False),
        "training step: loss forward + backward + update": partial(step, True),
        "training step, validate=False": partial(step, False),
        "HybridMemory step: forward (checked) + backward + update(validate=False)":
            partial(module_step_checked, True),
        "HybridMemory step, validate=False": partial(module_step_checked, False),
        "soft_triplet, forward + backward": triplet_fwd_bwd,
        "floor: (F @ M^T).sum() forward + backward (two autograd ops)": autograd_floor,
        "plain PyTorch loss (SpCL's), forward + backward": plain_fwd_bwd,
    }
    if dev == "cuda":
        replay = in_cuda_graph(partial(step, False))
        name = "training step, validate=False, in a CUDA graph (replay)"
        if callable(replay):
            variants[name] = replay
        else:
            print(f"{name}: capture failed ({replay})", flush=True)
    calls, rounds = 50, args.overhead_rounds
    per_call = {name: [] for name in variants}
    for r in range(rounds + 2):  # two warm-up rounds
        for name, fn in variants.items():
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            if dev == "cuda":
                torch.cuda.synchronize()
            if r >= 2:
                per_call[name].append((time.perf_counter() - t0) / calls * 1e6)
    work = {name: work_per_call(fn, dev) for name, fn in variants.items()}
    load = os.getloadavg()[0]
    what = "device ops (kernels, memsets, copies)" if dev == "cuda" else "ops dispatched"
    lines = [
        f"### Fixed cost per call: M = {c_s + n_t} rows, d = {d}, B = {b}, {device_name(dev)}",
        "",
        f"| call | µs per call (median) | {what} per call |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {statistics.median(v):.0f} | {work[name]:g} |"
              for name, v in per_call.items()]
    lines += [
        "",
        f"- wall time of {calls} calls in a row{' (synchronised at both ends)' if dev == 'cuda' else ''}, "
        f"median of {rounds} rounds, the variants interleaved round by round; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; 1-minute load average at the "
        f"end: {load:.1f} on {os.cpu_count()} cores",
        "- " + ("device ops: the CUDA activities torch.profiler records per call (each one a "
                "launch or a copy the host queues)" if dev == "cuda" else
                "ops dispatched: the aten:: and smcr:: ops torch.profiler records per call, "
                "nested ones included (on a GPU most of the leaf ones are launches)"),
        "",
    ]
    return lines


def work_per_call(fn, dev: str, calls: int = 5) -> float:
    """What one call asks of the backend, counted by torch.profiler over `calls` calls: on
    CUDA the device activities (kernels, memsets, copies), on the CPU the aten:: and smcr::
    ops dispatched (nested ones included)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(calls):
            fn()
        if dev == "cuda":
            torch.cuda.synchronize()
    events = prof.events()
    if dev == "cuda":
        n = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    else:
        n = sum(1 for e in events if e.name.startswith(("aten::", "smcr::")))
    return n / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                   help="target rows N_t (source classes from the table, else N_t // 30)")
    p.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    p.add_argument("--d", type=int, default=2048)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--labels", choices=["clustered", "instances"], default="clustered")
    p.add_argument("--layout", choices=["scattered", "grouped", "both"], default="scattered",
                   help="where the rows of a label lie: at random (SpCL's memory, rows in "
                        "dataset order) or grouped by label (smcr's HybridMemory), so that the "
                        "single-row labels sit on consecutive rows, which the loss multiplies "
                        "in place; both: time ours on each, interleaved, and print the ratios")
    p.add_argument("--clustered", type=float, default=0.75,
                   help="fraction of target rows in clusters (--labels clustered)")
    p.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 5 on CUDA")
    p.add_argument("--steps", type=int, default=None, help="default: 5 on CPU, 20 on CUDA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-plain", action="store_true")
    p.add_argument("--no-validate", action="store_true",
                   help="ours without the value checks (saves their host sync on CUDA)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 float32 products on CUDA")
    p.add_argument("--overhead", action="store_true",
                   help="measure the fixed cost per call at a tiny size instead (host overhead)")
    p.add_argument("--overhead-rounds", type=int, default=40)
    p.add_argument("--results", type=Path, default=None,
                   help="write the tables into this markdown file (between markers)")
    args = p.parse_args()
    if args.device == "cuda":
        if not smcr_ext.backends()["cuda_available"]:
            sys.exit("--device cuda needs a GPU and the CUDA build of smcr_ext")
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    args.warmup = args.warmup if args.warmup is not None else (5 if args.device == "cuda" else 1)
    args.steps = args.steps if args.steps is not None else (20 if args.device == "cuda" else 5)
    cmd = "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:])
    out = [f"Command: `{cmd}`", ""]
    if args.overhead:
        lines = run_overhead(args)
        print("\n".join(lines), flush=True)
        if args.results is not None:
            upsert(args.results, f"bench_memory {args.device} overhead", "\n".join(out + lines))
        return
    for n_t in args.sizes:
        lines = run_size(n_t, args)
        print("\n".join(lines), flush=True)
        out += lines
    if args.results is not None:
        key = (f"bench_memory {args.device} {args.labels} sizes={','.join(map(str, args.sizes))} "
               f"batch={','.join(map(str, args.batch))}" + (" no-validate" if args.no_validate else "")
               + (" tf32" if args.tf32 else "") + (f" {args.layout}" if args.layout != "scattered" else ""))
        upsert(args.results, key, "\n".join(out))


if __name__ == "__main__":
    main()
