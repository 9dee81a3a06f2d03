"""Preview of a preset: a contact sheet (like the paper's Fig. 3) and the time-of-day and
weather pie charts (Fig. 2), drawn from a small sample of the dataset the preset makes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .generator import ImageJob, World, build_world, plan_jobs, render_job, sample_spec
from .presets import SynthPreset, get_preset
from .scene import WEATHERS

HOUR_BINS = [f"{a}~{a + 3}" for a in range(0, 24, 3)]


def _label_stats(world: World, jobs: list[ImageJob]) -> tuple[Counter, Counter, list]:
    hours, weather, specs = Counter(), Counter(), []
    for j in jobs:
        spec, _ = sample_spec(world, j)
        specs.append(spec)
        if j.k == 0 and j.pid:
            hours[HOUR_BINS[int(spec.light.hour // 3)]] += 1
            weather[spec.light.weather] += 1
    return hours, weather, specs


def _pick(jobs, specs, pred, n, order, distinct=True) -> list[int]:
    out, seen = [], set()
    for i in order:
        j, s = jobs[i], specs[i]
        if j.pid and pred(j, s) and (not distinct or j.pid not in seen):
            out.append(i)
            seen.add(j.pid)
            if len(out) == n:
                break
    return out


def _shrink_png(path: Path) -> None:
    """Re-save with an adaptive 256-colour palette (a contact sheet is 3-4x smaller)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(
            256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    small.save(path, optimize=True)


def write_preview(
    preset: str | SynthPreset,
    out_dir: str | Path,
    seed: int = 0,
    num_ids: int = 30,
    columns: int = 8,
    dpi: int = 100,
) -> list[Path]:
    """Write ``<name>_contact_sheet.png`` and ``<name>_pies.png`` into ``out_dir``; returns the
    paths. Rows: ideal conditions; extreme conditions (dark, occluded, low resolution, bad
    weather); one identity across cameras and viewpoints; similar-but-different identities
    (red frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preset = get_preset(preset)
    world = build_world(preset, num_ids, seed)
    jobs = plan_jobs(world)
    rng = np.random.default_rng(seed)
    if len(jobs) > 3000:
        keep = np.sort(rng.choice(len(jobs), 3000, replace=False))
        jobs = [jobs[i] for i in keep]
    hours, weather, specs = _label_stats(world, jobs)
    H = preset.image_size[0]
    order = [int(i) for i in rng.permutation(len(jobs))]

    def ideal(j, s):
        return (
            s.light.weather in ("clear", "extra_sunny")
            and 8 <= s.light.hour <= 17
            and not s.occluders
            and s.render_height >= H
            and not s.location.indoor
        )

    def dark(j, s):
        return s.light.night or s.light.hour < 6.5 or s.light.hour > 19.5

    extreme_kinds = [
        ("dark", dark),
        ("occluded", lambda j, s: bool(s.occluders)),
        ("low-res", lambda j, s: s.render_height < 0.5 * H),
        ("weather", lambda j, s: s.light.weather in ("rain", "foggy", "thunder")),
        ("indoor", lambda j, s: s.location.indoor),
    ]
    rows: list[tuple[str, list[int], list[str]]] = []
    sel = _pick(jobs, specs, ideal, columns, order)
    rows.append(("ideal", sel, [""] * len(sel)))
    ext, tags = [], []
    for name, pred in extreme_kinds:
        got = [i for i in _pick(jobs, specs, pred, 2, order) if i not in ext][
            : max(1, columns // 4)
        ]
        ext += got
        tags += [name] * len(got)
    if len(ext) < columns:
        more = [
            i for i in _pick(jobs, specs, lambda j, s: True, 3 * columns, order) if i not in ext
        ]
        ext += more[: columns - len(ext)]
        tags += [""] * (columns - len(tags))
    n_extreme = sum(1 for t in tags[:columns] if t)
    rows.append(("extreme" if n_extreme else "more samples", ext[:columns], tags[:columns]))
    pid0 = jobs[sel[0]].pid if sel else jobs[0].pid
    same = [i for i, j in enumerate(jobs) if j.pid == pid0 and j.k == 0]
    step = max(1, len(same) // columns)
    same = same[::step][:columns]
    rows.append((f"id {pid0} across cameras", same, [""] * len(same)))
    twins = [p for p in world.persons if p.twin_of]
    twin_jobs: list[ImageJob] = []
    all_jobs = plan_jobs(world)
    for tw in twins[: columns // 2]:
        for pid in (tw.twin_of, tw.pid):
            cands = [j for j in all_jobs if j.pid == pid and j.k == 0]
            if cands:
                twin_jobs.append(cands[0])
    rendered = {}
    for _title, idx, _ in rows:
        for i in idx:
            rendered[("j", i)] = render_job(world, jobs[i])
    for n, j in enumerate(twin_jobs):
        rendered[("t", n)] = render_job(world, j)
    n_rows = len(rows) + (1 if twin_jobs else 0)
    fig, axes = plt.subplots(
        n_rows, columns, figsize=(columns * 1.25, n_rows * 2.55), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for r, (title, idx, tg) in enumerate(rows):
        for c, i in enumerate(idx[:columns]):
            res, row = rendered[("j", i)]
            ax = axes[r, c]
            ax.imshow(res.image)
            ax.set_title(
                f"{row['pid']} c{row['camid']}s{row['viewpoint']}\n"
                f"{row['weather']} {row['hour']:.0f}h {tg[c] if c < len(tg) else ''}",
                fontsize=6,
            )
        axes[r, 0].text(
            -0.15,
            0.5,
            title,
            transform=axes[r, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    if twin_jobs:
        r = len(rows)
        for n in range(min(len(twin_jobs), columns)):
            res, row = rendered[("t", n)]
            ax = axes[r, n]
            ax.imshow(res.image)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_edgecolor("red")
                sp.set_linewidth(2)
            ax.set_title(
                f"id {row['pid']}" + (f" (twin of {row['twin_of']})" if row["twin_of"] else ""),
                fontsize=6,
            )
        axes[r, 0].text(
            -0.15,
            0.5,
            "similar but different",
            transform=axes[r, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    fig.suptitle(f"{preset.name}: {preset.description}", fontsize=8, wrap=True)
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / f"{preset.name}_contact_sheet.png"
    fig.savefig(sheet, dpi=dpi)
    plt.close(fig)
    _shrink_png(sheet)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4.2))
    hv = [hours.get(b, 0) for b in HOUR_BINS]
    a1.pie(
        [v for v in hv if v],
        labels=[b for b, v in zip(HOUR_BINS, hv, strict=True) if v],
        autopct="%1.0f%%",
        textprops={"fontsize": 7},
    )
    a1.set_title("time of day (hours)")
    wv = [weather.get(w, 0) for w in WEATHERS]
    a2.pie(
        [v for v in wv if v],
        labels=[w for w, v in zip(WEATHERS, wv, strict=True) if v],
        autopct="%1.0f%%",
        textprops={"fontsize": 7},
    )
    a2.set_title("weather")
    fig.suptitle(
        f"{preset.name}: time-of-day and weather distribution ({sum(hv)} tracklets)", fontsize=9
    )
    pies = out / f"{preset.name}_pies.png"
    fig.savefig(pies, dpi=100)
    plt.close(fig)
    _shrink_png(pies)
    return [sheet, pies]
