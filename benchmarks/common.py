"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_name(device) -> str:
    """The card's name for a CUDA device, else the CPU's model, cores and torch threads."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def upsert(path: Path, key: str, body: str) -> None:
    """Put `body` between the `<!-- key: start/end -->` markers of a results file (appended
    when the markers are not there yet), written atomically."""
    from smcr.fileio import atomic_write_text

    start, end = f"<!-- {key}: start -->", f"<!-- {key}: end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(path, text)


class _Above:
    base: int = 0
    peak: int = 0

    @property
    def above_bytes(self) -> int:
        return self.peak - self.base

    @property
    def above(self) -> float:
        """GiB above the baseline."""
        return self.above_bytes / 2**30

    @property
    def above_mib(self) -> float:
        return self.above_bytes / 2**20


class PeakSampler(_Above):
    """Peak of `read()` (bytes) above its value on entry, sampled by a thread every
    `interval` seconds; subclasses define `read`."""

    interval = 0.002

    def read(self) -> int:
        raise NotImplementedError

    def __enter__(self):
        self.base = self.peak = self.read()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.read())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self.read())


class PeakCuda(_Above):
    """Peak CUDA memory allocated by torch above the amount on entry."""

    def __enter__(self):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.cuda.synchronize()
        self.peak = torch.cuda.max_memory_allocated()
