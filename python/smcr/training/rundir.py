"""A run's folder: resolved config, log, metrics.jsonl, TensorBoard events (when
tensorboard is installed), plots and report.md. Every file is written atomically
(temporary file + rename) or appended line by line, so nothing is ever half-written.

metrics.jsonl holds the records of one run: a fresh run moves an older file to
metrics.prev.jsonl (`start_metrics`), a resumed one cuts it back to the records its
checkpoint covers (`keep_metrics`), so a resume never repeats an epoch's records. The
TensorBoard events in tensorboard/ mirror metrics.jsonl the same way: at either call the
earlier events move to tensorboard.prev/ and the kept records are written again."""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..fileio import atomic_write_bytes, atomic_write_text

__all__ = ["NullRunDir", "RunDir"]

log = logging.getLogger("smcr.train")


def _save_png(fig: Any, path: Path) -> None:
    """Render a matplotlib figure to PNG and write it atomically; closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


class RunDir:
    def __init__(self, path: Path) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.records = 0  # records of this run in metrics.jsonl (see start/keep_metrics)
        self._handler = logging.FileHandler(self.dir / "train.log")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("smcr")
        for h in list(root.handlers):
            if isinstance(h, logging.FileHandler) and getattr(h, "_smcr_run", False):
                root.removeHandler(h)
                h.close()
        self._handler._smcr_run = True  # type: ignore[attr-defined]
        root.addHandler(self._handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        self._tb = None  # the SummaryWriter, opened by start_metrics / keep_metrics
        self._tb_started = False

    def write_config(self, cfg: dict[str, Any]) -> None:
        atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))

    def start_metrics(self) -> None:
        """A fresh run: an existing metrics.jsonl (an earlier run's) becomes metrics.prev.jsonl,
        its TensorBoard events tensorboard.prev/."""
        self._rotate_metrics()
        self.records = 0
        self._start_tensorboard([], rotate=True)

    def _rotate_metrics(self) -> None:
        if self.metrics_path.exists():
            prev = self.dir / "metrics.prev.jsonl"
            self.metrics_path.replace(prev)
            log.info("metrics.jsonl of the earlier run in %s moved to %s", self.dir, prev.name)

    def _start_tensorboard(self, records: list[dict[str, Any]], *, rotate: bool) -> None:
        """Open the TensorBoard writer (tensorboard is optional: nothing without it). With
        `rotate`, earlier events in tensorboard/ move to tensorboard.prev/ (replacing an older
        one) and `records` are written again, so the events show this run only."""
        self._tb_started = True
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # not installed
            return
        events = self.dir / "tensorboard"
        if rotate and events.exists():
            prev = self.dir / "tensorboard.prev"
            if prev.is_dir() and not prev.is_symlink():
                shutil.rmtree(prev)
            elif prev.exists() or prev.is_symlink():
                prev.unlink()
            events.replace(prev)
            log.info("TensorBoard events of the earlier run in %s moved to %s", self.dir,
                     prev.name)
        try:
            self._tb = SummaryWriter(str(events))
        except Exception as e:  # e.g. an unwritable folder: the run goes on without it
            log.warning("TensorBoard events not written: %s", e)
            return
        for r in records:
            self._tb_log(r)
        self._tb.flush()

    def keep_metrics(self, count: int | None, keep: Callable[[dict[str, Any]], bool] | None,
                     source: Path | None = None) -> None:
        """A resumed run: metrics.jsonl cut back (atomically) to its first `count` records,
        the ones the checkpoint covers; when `count` is None (older checkpoints), to the
        records `keep` accepts. `source`: another run's metrics.jsonl to start from (resuming
        its checkpoint), this folder's own file moving to metrics.prev.jsonl."""
        src = self.metrics_path if source is None else Path(source)
        history = self.read_history(src)
        kept = history[:count] if count is not None else [r for r in history if keep is None or keep(r)]
        if src.resolve() != self.metrics_path.resolve():
            self._rotate_metrics()
        # rewritten even when nothing is dropped: a line a kill cut short would otherwise
        # run into the next record
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, default=float) + "\n" for r in kept))
        if len(kept) < len(history):
            log.info("metrics.jsonl: %d records after the checkpoint dropped", len(history) - len(kept))
        self.records = len(kept)
        self._start_tensorboard(kept, rotate=True)

    def log_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()
        self.records += 1
        if not self._tb_started:  # neither start_metrics nor keep_metrics was called
            self._start_tensorboard([], rotate=False)
        if self._tb is not None:
            self._tb_log(record)
            self._tb.flush()

    def _tb_log(self, record: dict[str, Any]) -> None:
        step = int(record.get("epoch", 0))
        prefix = record.get("stage", "run")
        for k, v in _flatten(record).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch",):
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    def read_history(self, path: Path | None = None) -> list[dict[str, Any]]:
        """The records of metrics.jsonl (or of `path`); a line cut short by a kill is skipped."""
        path = self.metrics_path if path is None else path
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    @staticmethod
    def progress(iterable, desc: str = ""):
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr,
                    mininterval=1.0)

    def plot(self) -> list[Path]:
        """mAP per evaluated epoch (every model) and clusters per epoch (every branch)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        hist = self.read_history()
        evals = [r for r in hist if r.get("stage") == "eval"]
        clusters = [r for r in hist if r.get("stage") == "cluster"]
        out = []
        if evals:
            fig, ax = plt.subplots(figsize=(6, 4))
            names = sorted({n for r in evals for n in r["results"]} - {"direct_transfer"})
            for n in names:
                pts = [(r["epoch"], 100 * r["results"][n]["mAP"]) for r in evals if n in r["results"]]
                ax.plot(*zip(*pts, strict=True), marker="o", label=n)
            dt = [r for r in evals if "direct_transfer" in r["results"]]
            if dt:
                ax.axhline(100 * dt[-1]["results"]["direct_transfer"]["mAP"], color="grey",
                           linestyle="--", label="direct transfer")
            ax.set_xlabel("epoch")
            ax.set_ylabel("target mAP (%)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = self.dir / "map.png"
            _save_png(fig, p)
            out.append(p)
        if clusters:
            fig, ax = plt.subplots(figsize=(6, 4))
            for b in sorted({r["branch"] for r in clusters}):
                pts = [(r["epoch"], r["clusters"]) for r in clusters if r["branch"] == b]
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{b} clusters")
                pts = [(r["epoch"], r["un_clustered"]) for r in clusters if r["branch"] == b]
                ax.plot(*zip(*pts, strict=True), linestyle="--", label=f"{b} un-clustered")
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = self.dir / "clusters.png"
            _save_png(fig, p)
            out.append(p)
        return out

    def write_report(self, metrics: dict[str, dict[str, float]], cfg: dict[str, Any],
                     models: dict[str, str]) -> Path:
        lines = [
            f"# smcr run: {self.dir}",
            "",
            f"source: {_domain(cfg['data']['source'])}; target: {_domain(cfg['data']['target'])}; "
            f"synthetic: {_domain(cfg['data'].get('synthetic'))}",
            f"stage 1: {cfg['pretrain']['mode']}; branches: {cfg['smcr']['branches']}; "
            f"collaborative: {cfg['smcr']['collaborative']}; model: {cfg['model']}",
            "",
            "| model | mAP | Rank-1 | Rank-5 | Rank-10 | mINP |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in metrics.items():
            lines.append(
                f"| {name} | {100 * m['mAP']:.1f} | {100 * m['rank1']:.1f} | {100 * m['rank5']:.1f} "
                f"| {100 * m['rank10']:.1f} | {100 * m['mINP']:.1f} |"
            )
        lines += ["", "Models: " + ", ".join(f"{k}: `{v}`" for k, v in models.items()),
                  "Plots: `map.png`, `clusters.png`; per-epoch records: `metrics.jsonl`."]
        path = self.dir / "report.md"
        atomic_write_text(path, "\n".join(lines) + "\n")
        return path


def _domain(d: dict[str, Any] | None) -> str:
    if d is None:
        return "none"
    return d["root"] if d.get("root") else f"{d['preset']} ({d['ids']} ids, seed {d['seed']})"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, float) and math.isfinite(v) or isinstance(v, int):
            out[key] = v
    return out


class NullRunDir(RunDir):
    """What a torchrun rank other than 0 holds: the same paths, nothing written."""

    def __init__(self, path: Path) -> None:  # noqa: D107 - no folder, no log file
        self.dir = Path(path)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.records = 0
        self._tb = None

    def start_metrics(self) -> None:
        pass

    def keep_metrics(self, count: int | None, keep: Callable[[dict[str, Any]], bool] | None,
                     source: Path | None = None) -> None:
        pass

    def write_config(self, cfg: dict[str, Any]) -> None:
        pass

    def log_metrics(self, record: dict[str, Any]) -> None:
        pass

    def read_history(self, path: Path | None = None) -> list[dict[str, Any]]:
        return []

    def plot(self) -> list[Path]:
        return []

    def write_report(self, metrics: dict[str, dict[str, float]], cfg: dict[str, Any],
                     models: dict[str, str]) -> Path:
        return self.dir / "report.md"
