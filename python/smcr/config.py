"""The training configuration: dataclasses with their defaults, loaded from YAML.

    cfg = load_config("configs/duke2market.yaml", ["schedule.epochs=10", "run.out=runs/x"])
    cfg = TrainConfig()                       # the paper's defaults, nothing else set

Every default lives in the dataclass (paper §V-A, equal to SpCL's schedule). Unknown keys
are errors that name the key; values of `--set a.b=c` overrides are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "DomainConfig",
    "PretrainConfig",
    "RunConfig",
    "ScheduleConfig",
    "SMCRConfig",
    "TrainConfig",
    "TranslatorConfig",
    "config_to_dict",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names it."""


def _show(v: Any) -> str:
    """A value as a message shows it: -3.0 as -3, 3.5e-4 as 0.00035."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return repr(v)


def _prefixed(section: str, names: Any, error: Exception) -> str:
    """"eps must be ..." from a constructor as "smcr.cluster.eps must be ..."."""
    msg = str(error)
    first = msg.split(" ", 1)[0]
    return f"{section}.{msg}" if first in names else f"{section}: {msg}"


def _in_range(key: str, v: Any, lo: float | None = None, hi: float | None = None, *,
              lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ConfigError naming `key` unless lo <= v <= hi (< where open); NaN and
    infinities never pass. "must be in (0, 1]", "must be >= 1", "must be > 0"."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if ok:
        return
    if lo is not None and hi is not None:
        what = f"in {'(' if lo_open else '['}{_show(lo)}, {_show(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
        what = f"{'>' if lo_open else '>='} {_show(lo)}"
    elif hi is not None:
        what = f"{'<' if hi_open else '<='} {_show(hi)}"
    else:
        what = "a finite number"
    raise ConfigError(f"{key} must be {what}, got {_show(v)}")


@dataclass
class DomainConfig:
    """One domain: a dataset on disk (`root`, any layout `smcr.data.read_dataset` knows),
    or one our renderer generates into the run's data folder (`preset`, `ids`, `seed`)."""

    root: str | None = None
    format: str = "auto"
    preset: str | None = None
    ids: int = 200
    seed: int = 0
    render_size: list[int] | None = None  # (H, W) of generated images; default: preset's

    def check(self, name: str) -> None:
        if (self.root is None) == (self.preset is None):
            raise ConfigError(f"data.{name}: give exactly one of root (a dataset) or preset (generate)")
        if self.root is not None and not self.root.strip():
            raise ConfigError(f"data.{name}.root must be a path, got {self.root!r}")
        from .data.readers import READERS

        formats = ("auto", "market-style", *sorted(READERS))
        if self.format not in formats:
            raise ConfigError(f"data.{name}.format must be one of {list(formats)}, got {self.format!r}")
        if self.preset is not None:
            _in_range(f"data.{name}.ids", self.ids, 2)
        _in_range(f"data.{name}.seed", self.seed, 0)
        if self.render_size is not None and len(self.render_size) != 2:
            raise ConfigError(f"data.{name}.render_size must be [H, W], got {self.render_size}")
        if self.preset is not None:
            from .synth import PresetError, get_preset

            over = {} if self.render_size is None else {"image_size": tuple(self.render_size)}
            try:
                get_preset(self.preset, **over)
            except PresetError as e:
                key = "render_size" if "image_size" in str(e) else "preset"
                raise ConfigError(f"data.{name}.{key}: {e}") from e


@dataclass
class DataConfig:
    source: DomainConfig = field(default_factory=DomainConfig)
    target: DomainConfig = field(default_factory=DomainConfig)
    synthetic: DomainConfig | None = None  # labeled synthetic data for stage 1
    image_size: list[int] = field(default_factory=lambda: [256, 128])  # (H, W) of the network input
    batch_source: int = 64
    batch_target: int = 64
    num_instances: int = 4
    test_batch: int = 128
    # Every BatchNorm of a training model normalises consecutive groups of this many
    # samples of one domain (SpCL's 64 per domain over 4 GPUs = 16), so BN statistics, and
    # the results, do not depend on the number of processes; 0: the whole per-process batch.
    bn_group: int = 16


@dataclass
class TranslatorConfig:
    """eSPGAN translation of synthetic -> source (D^SR) and source -> target (D^RT).
    kind: "espgan" (CycleGAN + identity mapping + re-ID cross-entropy, the paper's) or
    "cyclegan" (the ablation row). `options` go to smcr.translate.TranslateConfig."""

    enabled: bool = True
    kind: str = "espgan"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PretrainConfig:
    """Stage 1 (§IV-B): supervised training on D^SR ∪ D^R (label-smoothed cross-entropy +
    softplus triplet). mode: "translated" (the paper), "raw" (synthetic images untranslated,
    the paper's "GSPR-pre"), "source" (source only: no synthetic data), "none" (no stage 1:
    `checkpoint` or a fresh network initialises the branches)."""

    mode: str = "translated"
    checkpoint: str | None = None
    epochs: int = 20
    iters: int = 200
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    label_smoothing: float = 0.1


@dataclass
class SMCRConfig:
    """Stage 2 (§IV-C..E). branches: "both" (SMCR), "rihr" or "dthr" alone (a single
    branch, SpCL-like). collaborative: the mean-teacher soft-triplet terms between branches.
    recluster: "memory" (SpCL: cluster each branch's momentum-updated target rows) or
    "features" (fresh features every epoch). cluster: keyword arguments of
    smcr.cluster.PseudoLabeler (criterion "spcl" | "paper" | "none", eps, eps_gap, k1, ...)."""

    branches: str = "both"
    collaborative: bool = True
    alpha: float = 0.5
    beta: float = 0.01
    temperature: float = 0.05
    memory_momentum: float = 0.2
    ema: float = 0.999
    recluster: str = "memory"
    cluster: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    """Paper §V-A (SpCL's): Adam 3.5e-4, wd 5e-4, x0.1 every 20 epochs, 50 epochs x 400."""

    epochs: int = 50
    iters: int = 400
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    eval_every: int = 10


@dataclass
class RunConfig:
    out: str = "runs/smcr"
    cache: str | None = None  # generated data, translations, stage-1 models (default: <out>/../cache)
    seed: int = 1
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    resume: str = "auto"  # "auto" (continue when a checkpoint exists), "never", or a path
    amp: bool = True  # bf16 autocast on CUDA (CPU runs in float32)
    threads: int = 0  # torch CPU threads (0 = torch's default)
    ranked_lists: int = 4  # ranked-list pictures of the final model (0 = none)
    dist_timeout_min: float = 720.0  # torchrun: how long ranks wait for rank 0 (data, translators)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"arch": "resnet50_ibn_a"})
    translator: TranslatorConfig = field(default_factory=TranslatorConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    smcr: SMCRConfig = field(default_factory=SMCRConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def check(self) -> None:
        """Raise ConfigError naming the first wrong key and its value: every numeric field
        is range-checked here, at load time, so that nothing fails hours into a run."""
        d = self.data
        d.source.check("source")
        d.target.check("target")
        if d.synthetic is not None:
            d.synthetic.check("synthetic")
        if len(d.image_size) != 2 or min(d.image_size) < 16:
            raise ConfigError(f"data.image_size must be [H, W] >= 16, got {d.image_size}")
        _in_range("data.num_instances", d.num_instances, 1)
        for name in ("batch_source", "batch_target"):
            v = getattr(d, name)
            _in_range(f"data.{name}", v, 1)
            if v < d.num_instances or v % d.num_instances:
                raise ConfigError(
                    f"data.{name} must be a multiple of data.num_instances={d.num_instances}, got {v}"
                )
        _in_range("data.test_batch", d.test_batch, 1)
        if isinstance(d.bn_group, bool) or d.bn_group < 0 or d.bn_group == 1:
            raise ConfigError(f"data.bn_group must be 0 (the whole batch) or >= 2 (batch norm "
                              f"over groups of that many samples), got {d.bn_group}")
        for name in ("batch_source", "batch_target"):
            v = getattr(d, name)
            if d.bn_group and v > d.bn_group and v % d.bn_group:
                raise ConfigError(
                    f"data.{name}={v} must be a multiple of data.bn_group={d.bn_group} (the "
                    "batch-norm group size; 0 normalises the whole batch)"
                )
        self._check_translator()
        p = self.pretrain
        if p.mode not in ("translated", "raw", "source", "none"):
            raise ConfigError(
                f"pretrain.mode must be translated, raw, source or none, got {p.mode!r}"
            )
        if p.mode in ("translated", "raw") and d.synthetic is None:
            raise ConfigError(f"pretrain.mode={p.mode!r} needs data.synthetic")
        if p.mode == "translated" and not self.translator.enabled:
            raise ConfigError("pretrain.mode='translated' needs translator.enabled=true")
        if p.checkpoint is not None and not p.checkpoint.strip():
            raise ConfigError(f"pretrain.checkpoint must be a file or null, got {p.checkpoint!r}")
        _in_range("pretrain.epochs", p.epochs, 1)
        _in_range("pretrain.iters", p.iters, 1)
        _in_range("pretrain.lr", p.lr, 0, lo_open=True)
        _in_range("pretrain.weight_decay", p.weight_decay, 0)
        _in_range("pretrain.warmup_epochs", p.warmup_epochs, 0)
        _in_range("pretrain.label_smoothing", p.label_smoothing, 0, 1, hi_open=True)
        s = self.smcr
        if s.branches not in ("both", "rihr", "dthr"):
            raise ConfigError(f"smcr.branches must be both, rihr or dthr, got {s.branches!r}")
        if s.branches in ("both", "dthr") and not self.translator.enabled:
            raise ConfigError(
                "the DTHR branch trains on translated source images: translator.enabled must be "
                "true (or smcr.branches='rihr')"
            )
        if s.recluster not in ("memory", "features"):
            raise ConfigError(f"smcr.recluster must be memory or features, got {s.recluster!r}")
        for name in ("alpha", "beta", "ema", "memory_momentum"):
            _in_range(f"smcr.{name}", getattr(s, name), 0, 1)
        _in_range("smcr.temperature", s.temperature, 0, lo_open=True)
        self._check_cluster()
        sc = self.schedule
        for name in ("epochs", "iters", "step_size", "eval_every"):
            _in_range(f"schedule.{name}", getattr(sc, name), 1)
        _in_range("schedule.lr", sc.lr, 0, lo_open=True)
        _in_range("schedule.weight_decay", sc.weight_decay, 0)
        _in_range("schedule.gamma", sc.gamma, 0, 1, lo_open=True)
        r = self.run
        if not r.out.strip():
            raise ConfigError(f"run.out must be a folder, got {r.out!r}")
        if r.cache is not None and not r.cache.strip():
            raise ConfigError(f"run.cache must be a folder or null, got {r.cache!r}")
        _in_range("run.seed", r.seed, 0)
        if r.device != "auto":
            import torch

            try:
                torch.device(r.device)
            except (RuntimeError, ValueError) as e:
                raise ConfigError(
                    f"run.device must be auto, cpu, cuda or cuda:N, got {r.device!r}"
                ) from e
        if r.resume not in ("auto", "never") and not Path(r.resume).is_file():
            raise ConfigError(f"run.resume must be auto, never or a checkpoint file, got {r.resume!r}")
        _in_range("run.threads", r.threads, 0)
        _in_range("run.ranked_lists", r.ranked_lists, 0)
        _in_range("run.dist_timeout_min", r.dist_timeout_min, 0, lo_open=True)
        from .models import ModelConfig

        try:
            mc = ModelConfig.from_dict(self.model)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model: {e}") from e
        if mc.dsbn and d.batch_source != d.batch_target:
            raise ConfigError(
                "model.dsbn splits each batch into source and target halves: data.batch_source "
                f"({d.batch_source}) must equal data.batch_target ({d.batch_target})"
            )

    def _check_translator(self) -> None:
        """translator.kind, and translator.options as smcr.translate.TranslateConfig takes
        them (unknown keys and bad values), checked even when the translator is off."""
        t = self.translator
        if t.kind not in ("espgan", "cyclegan"):
            raise ConfigError(f"translator.kind must be espgan or cyclegan, got {t.kind!r}")
        from .translate.config import TranslateConfig, TranslateError

        known = {f.name for f in dataclasses.fields(TranslateConfig)}
        unknown = sorted(set(t.options) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(f'translator.options.{k}' for k in unknown)}; "
                f"known: {sorted(known)}"
            )
        try:
            TranslateConfig.from_dict(self.translator_options())
        except (TranslateError, TypeError, ValueError) as e:
            raise ConfigError(_prefixed("translator.options", known, e)) from e

    def translator_options(self) -> dict[str, Any]:
        """The keyword arguments of smcr.translate.TranslateConfig for translator.kind:
        CycleGAN has no identity-preserving re-ID term (L_c, mu3 = 0)."""
        options = dict(self.translator.options)
        if self.translator.kind == "cyclegan":
            options["mu3"] = 0.0
        return options

    def _check_cluster(self) -> None:
        """smcr.cluster: the keyword arguments of smcr.cluster.PseudoLabeler, and values
        it (and the k-reciprocal kernels it calls) accept."""
        from smcr_ext.cluster import _KNN_BACKENDS  # what smcr_ext.knn accepts

        from .cluster import PseudoLabeler

        c = self.smcr.cluster
        known = [n for n in inspect.signature(PseudoLabeler.__init__).parameters if n != "self"]
        unknown = sorted(set(c) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(f'smcr.cluster.{k}' for k in unknown)}; known: {known}"
            )
        defaults = {n: p.default for n, p in inspect.signature(PseudoLabeler.__init__).parameters.items()
                    if n != "self"}
        v = defaults | c
        for name in ("k1", "k2", "min_samples"):
            if isinstance(v[name], bool) or not isinstance(v[name], int):
                raise ConfigError(f"smcr.cluster.{name} must be an int, got {_show(v[name])}")
        for name in ("eps", "eps_gap", "percentile", "max_cluster_fraction"):
            _in_range(f"smcr.cluster.{name}", v[name])  # a finite number; ranges below
        _in_range("smcr.cluster.k1", v["k1"], 1)
        _in_range("smcr.cluster.k2", v["k2"], 1, v["k1"])
        if v["knn_backend"] not in _KNN_BACKENDS:
            raise ConfigError(
                f"smcr.cluster.knn_backend must be one of {list(_KNN_BACKENDS)}, got {v['knn_backend']!r}"
            )
        try:
            PseudoLabeler(**c)
        except (TypeError, ValueError) as e:
            raise ConfigError(_prefixed("smcr.cluster", known, e)) from e

    def check_world(self, world: int) -> None:
        """Raise ConfigError when the batches do not split over `world` processes so that
        every process normalises whole batch-norm groups (results independent of `world`)."""
        if world <= 1:
            return
        d = self.data
        for name in ("batch_source", "batch_target"):
            v = getattr(d, name)
            if v % world:
                raise ConfigError(f"data.{name}={v} does not split over {world} processes")
            if d.bn_group and (v // world) % d.bn_group:
                raise ConfigError(
                    f"data.{name}={v} over {world} processes gives {v // world} samples per "
                    f"process, not a multiple of data.bn_group={d.bn_group}: batch norm would "
                    "depend on the number of processes; change data.bn_group or the batch"
                )


def _build(cls: type, values: Any, where: str) -> Any:
    """A dataclass of type `cls` from a dict, recursively; unknown keys are errors."""
    if values is None:
        return None
    if dataclasses.is_dataclass(values):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(sorted(f'{where}.{k}'.lstrip('.') for k in unknown))}; "
            f"known: {sorted(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        inner = [a for a in get_args(hint) if a is not type(None)] if get_origin(hint) else []
        target = hint if dataclasses.is_dataclass(hint) else next(
            (a for a in inner if dataclasses.is_dataclass(a)), None
        )
        key = f"{where}.{name}".lstrip(".")
        if target is not None:
            kwargs[name] = _build(target, value, key)
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` checked against a field's type hint (scalars, lists, mappings, optionals)."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if value is None:
        if type(None) in get_args(hint) or hint is Any:
            return None
        raise ConfigError(f"{key} must not be null")
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin is not None and origin not in (list, dict):  # Optional[...] / Union[...]
        if len(args) == 1:
            return _coerce(value, args[0], key)
        for a in args:
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} matches none of {args}")
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") if args else v for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # PyYAML reads 5e-4 (no dot) as a string: accept what parses as a number
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _set(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError(f"--set {dotted}: {p} is not a mapping")
        node = node[p]
    node[parts[-1]] = value


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _parse_overrides(overrides: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) of "a.b=value" overrides (`--set`), the value parsed as YAML;
    an error naming the entry for anything else."""
    if overrides is None:
        return []
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, (list, tuple)):
        hint = f" (write [{overrides!r}])" if isinstance(overrides, str) else ""
        raise TypeError(f"overrides must be a list of 'key=value' strings, got "
                        f"{type(overrides).__name__} {overrides!r}{hint}")
    out = []
    for i, item in enumerate(overrides):
        if not isinstance(item, str):
            raise TypeError(f"overrides[{i}] must be a 'key=value' string, got "
                            f"{type(item).__name__} {item!r}")
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        key, raw = (part.strip() for part in item.split("=", 1))
        if not all(key.split(".")):
            raise ConfigError(f"--set {item!r}: {key!r} has an empty key part (expected a "
                              "dotted key like schedule.epochs)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            why = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({why})") from e
        out.append((key, value))
    return out


def load_config(
    source: str | os.PathLike | dict | TrainConfig | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """A checked TrainConfig from a YAML file, a dict or a TrainConfig, with `a.b=c`
    overrides (values parsed as YAML: numbers, booleans, lists, null)."""
    if isinstance(source, TrainConfig):
        tree = config_to_dict(source)
    elif source is None:
        tree = {}
    elif isinstance(source, dict):
        tree = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {os.fspath(source)!r}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    else:
        raise TypeError(
            "config must be a TrainConfig, a YAML path or a dict, got "
            f"{type(source).__name__} {source!r}"
        )
    for key, value in _parse_overrides(overrides):
        _set(tree, key, value)
    cfg = _build(TrainConfig, tree, "")
    cfg.check()
    return cfg
