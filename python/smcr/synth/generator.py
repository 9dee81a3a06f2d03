"""Dataset generation: the world, the plan of images, parallel rendering, safe writing.

``generate(preset, out_dir, num_ids, seed)`` writes a Market-1501-style tree::

    out_dir/
      bounding_box_train/0001_c1s1_000123_00.jpg ...
      query/ ...
      bounding_box_test/ ...
      manifest.csv       one row of labels per image (see smcr.synth.labeler)
      identities.csv     the attributes of every identity (twins name their source)
      meta.json          preset, seed, counts, version

Determinism: every random choice comes from a NumPy generator seeded by
``(seed, purpose, pid, camera, view, k)``, never from shared state, so the bytes of every file
are the same for any number of processes and any chunking.

Safety: images go into ``<out_dir>.partial/``, each one written to a temporary name and
renamed; a chunk of images is complete when its label file exists. A stopped run resumes
where it stopped (same plan required); the finished tree is renamed to ``out_dir`` at once.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_write_bytes, open_partial, publish_partial
from .labeler import SUBSET_DIRS, image_name, write_manifest
from .person import PersonModel, make_twin, sample_person
from .presets import SynthPreset, get_preset
from .render import ImageSpec, Occluder, RenderResult, render_image
from .scene import CameraStyle, Location, make_lighting, make_location

FORMAT_VERSION = 1
CHUNK = 48


class SynthError(ValueError):
    """Bad arguments to the generator, or an output folder it must not touch."""


@dataclass(frozen=True)
class ImageJob:
    """One image of the plan. pid 0 = distractor; cam, view 1-based; k = index in tracklet."""

    pid: int
    subset: str
    cam: int
    view: int
    k: int
    index: int  # distractor number (pid 0), else 0

    def key(self) -> tuple:
        """A sortable identity of the job."""
        return (self.pid, self.cam, self.view, self.k, self.index)


@dataclass(frozen=True)
class World:
    """Everything shared by the images of one dataset: preset, seed, cameras, identities."""

    preset: SynthPreset
    seed: int
    num_ids: int
    locations: tuple[Location, ...]
    persons: tuple[PersonModel, ...]  # persons[pid - 1]
    train_ids: tuple[int, ...]
    test_ids: tuple[int, ...]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise SynthError(
            f"{name} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}"
        )
    return int(value)


def _camera_style(preset: SynthPreset, rng: np.random.Generator) -> CameraStyle:
    s = preset.style
    wb = np.asarray(s.wb_bias) * (1.0 + rng.normal(0.0, s.wb_sigma, 3))
    return CameraStyle(
        wb=tuple(float(x) for x in wb / wb[1]),
        exposure=float(rng.uniform(*s.exposure)),
        saturation=float(rng.uniform(*s.saturation)),
        contrast=float(rng.uniform(*s.contrast)),
        noise=float(rng.uniform(*s.noise)),
        blur=float(rng.uniform(*s.blur)),
        jpeg_quality=int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)),
    )


def build_world(preset: str | SynthPreset, num_ids: int, seed: int = 0) -> World:
    """Cameras, identities and the train / test identity split of a dataset."""
    preset = get_preset(preset)
    num_ids = _check_int("num_ids", num_ids, 1, 9999)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    n_test = int(round(num_ids * preset.test_fraction))
    if preset.test_fraction > 0:
        n_test = min(max(n_test, 1), num_ids - 1)
        if num_ids < 2:
            raise SynthError(
                f"num_ids must be >= 2 to have train and test identities, got {num_ids}"
            )
    locations = []
    for c in range(1, preset.num_cameras + 1):
        rng = _rng(seed, 1, c)
        kind = preset.locations[(c - 1) % len(preset.locations)]
        style = _camera_style(preset, rng)
        spread = 2 * math.pi if preset.views_per_camera > 1 else 0.0
        locations.append(
            make_location(
                c,
                kind,
                preset.views_per_camera,
                rng,
                preset.camera.height,
                preset.camera.distance,
                preset.camera.hfov_deg,
                style,
                seed=int(rng.integers(2**31)),
                view_spread=spread,
                palette_rng=_rng(seed, 1, 0) if preset.shared_site else None,
            )
        )
    perm = _rng(seed, 2).permutation(num_ids) + 1
    test_ids = tuple(sorted(int(p) for p in perm[:n_test]))
    test_set = set(test_ids)
    train_ids = tuple(p for p in range(1, num_ids + 1) if p not in test_set)
    persons: list[PersonModel] = []
    for pid in range(1, num_ids + 1):
        rng = _rng(seed, 3, pid)
        same = [q for q in range(1, pid) if (q in test_set) == (pid in test_set)]
        if same and rng.random() < preset.twins:
            src = persons[same[int(rng.integers(len(same)))] - 1]
            persons.append(make_twin(src, pid, rng, preset.clothing))
        else:
            persons.append(sample_person(pid, rng, preset.clothing))
    return World(
        preset=preset,
        seed=seed,
        num_ids=num_ids,
        locations=tuple(locations),
        persons=tuple(persons),
        train_ids=train_ids,
        test_ids=test_ids,
    )


def plan_jobs(world: World) -> list[ImageJob]:
    """Every image of the dataset, in a fixed order, with its subset."""
    p = world.preset
    test = set(world.test_ids)
    jobs: list[ImageJob] = []
    for pid in range(1, world.num_ids + 1):
        rng = _rng(world.seed, 4, pid)
        if p.cameras_per_id is None:
            cams = list(range(1, p.num_cameras + 1))
        else:
            n = int(rng.integers(p.cameras_per_id[0], p.cameras_per_id[1] + 1))
            cams = sorted(int(c) for c in rng.choice(p.num_cameras, size=n, replace=False) + 1)
        per_cam: dict[int, list[tuple[int, int]]] = {}
        for cam in cams:
            items = []
            for view in range(1, p.views_per_camera + 1):
                nk = int(
                    _rng(world.seed, 5, pid, cam, view).integers(
                        p.frames_per_view[0], p.frames_per_view[1] + 1
                    )
                )
                items += [(view, k) for k in range(nk)]
            per_cam[cam] = items
        if pid not in test:
            jobs += [ImageJob(pid, "train", c, v, k, 0) for c in cams for v, k in per_cam[c]]
            continue
        # one query per camera, keeping a cross-camera gallery match for every query
        queries: set[tuple[int, int, int]] = set()
        gallery_cams = set(cams)
        for cam in [int(c) for c in rng.permutation(cams)]:
            items = per_cam[cam]
            if len(items) >= 2:
                v, k = items[int(rng.integers(len(items)))]
                queries.add((cam, v, k))
            elif len(gallery_cams - {cam}) >= 1 and len(gallery_cams) > 2:
                queries.add((cam, *items[0]))
                gallery_cams.discard(cam)
        for cam in cams:
            for v, k in per_cam[cam]:
                sub = "query" if (cam, v, k) in queries else "gallery"
                jobs.append(ImageJob(pid, sub, cam, v, k, 0))
    n_gallery = sum(j.subset == "gallery" for j in jobs)
    n_distr = int(round(p.distractors * n_gallery))
    rng = _rng(world.seed, 7)
    for i in range(n_distr):
        cam = int(rng.integers(1, p.num_cameras + 1))
        view = int(rng.integers(1, p.views_per_camera + 1))
        jobs.append(ImageJob(0, "gallery", cam, view, i % 100, i))
    return jobs


def _hour(preset: SynthPreset, rng: np.random.Generator) -> float:
    w = np.array([h[2] for h in preset.hours], np.float64)
    a, b, _ = preset.hours[int(rng.choice(len(w), p=w / w.sum()))]
    return float(min(rng.uniform(a, b), 23.999))


def sample_spec(world: World, job: ImageJob) -> tuple[ImageSpec, int]:
    """The full :class:`ImageSpec` of ``job`` and its frame number (pure function)."""
    p = world.preset
    loc = world.locations[job.cam - 1]
    view = loc.views[job.view - 1]
    # the tracklet (pid, cam, view) shares weather, time, heading and start position
    trk = _rng(world.seed, 8, job.pid, job.cam, job.view, job.index)
    wnames = list(p.weather)
    ww = np.array([p.weather[k] for k in wnames], np.float64)
    weather = wnames[int(trk.choice(len(ww), p=ww / ww.sum()))]
    hour = _hour(p, trk)
    snow = float(trk.uniform(0.3, 0.6)) if (p.snow > 0 and trk.random() < p.snow) else 0.0
    light = make_lighting(weather, hour, loc.indoor, trk, winter=p.winter, snow=snow)
    if p.heading == "route":
        heading = loc.route_heading + float(trk.normal(0.0, 0.15))
    elif p.heading == "bidirectional":
        heading = (
            loc.route_heading
            + (math.pi if trk.random() < 0.5 else 0.0)
            + float(trk.normal(0.0, 0.3))
        )
    else:
        heading = float(trk.uniform(0.0, 2.0 * math.pi))
    rdir = np.array([math.cos(loc.route_heading), math.sin(loc.route_heading)])
    perp = np.array([-rdir[1], rdir[0]])
    # the ROI: a strip along the route, kept well in front of the camera
    reach = min(3.0 * loc.roi_radius, 0.35 * view.distance)
    start = rdir * trk.uniform(-reach, reach) + perp * trk.uniform(-1.0, 1.0) * loc.roi_radius
    frame0 = int(trk.integers(100, 900000))
    stride = int(trk.integers(4, 30))  # video frames between two crops of the tracklet
    hdir = np.array([math.cos(heading), math.sin(heading)])
    rng = _rng(world.seed, 6, job.pid, job.cam, job.view, job.k, job.index)
    pos = start + hdir * 0.3 * (job.k - 0.5 * (p.frames_per_view[1] - 1)) + rng.normal(0.0, 0.05, 2)
    frame = frame0 + job.k * stride
    gait = 1.0 if rng.random() >= p.standing else float(rng.uniform(0.0, 0.15))
    Hout, Wout = p.image_size
    render_height = Hout
    if rng.random() < p.low_res:
        render_height = int(rng.integers(p.low_res_height[0], p.low_res_height[1] + 1))
    margins = tuple(float(x) for x in rng.uniform(p.box_margin[0], p.box_margin[1], 4))
    person = world.persons[job.pid - 1] if job.pid > 0 else None
    occluders: tuple[Occluder, ...] = ()
    if person is not None and p.occluders and rng.random() < p.occlusion:
        kinds = [k for k in p.occluders if not (loc.indoor and k in ("car", "bush"))] or ["pole"]
        occluders = (_sample_occluder(kinds[int(rng.integers(len(kinds)))], rng, world),)
    spec = ImageSpec(
        person=person,
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        gait=gait,
        location=loc,
        view=view,
        light=light,
        position=(float(pos[0]), float(pos[1])),
        heading=heading,
        size=(Hout, Wout),
        render_height=render_height,
        margins=margins,
        box_aspect=p.box_aspect,
        occluders=occluders,
        frame_size=p.frame_size,
        seed=int(rng.integers(2**31)),
        lean=float(rng.normal(0.03, 0.02)),
    )
    return spec, frame


_CAR_COLOURS = (
    (0.8, 0.8, 0.8),
    (0.1, 0.1, 0.1),
    (0.45, 0.45, 0.47),
    (0.6, 0.05, 0.05),
    (0.1, 0.2, 0.45),
    (0.85, 0.85, 0.85),
    (0.3, 0.3, 0.32),
)


def _sample_occluder(kind: str, rng: np.random.Generator, world: World) -> Occluder:
    def lin(c):
        c = np.clip(np.asarray(c, np.float32), 0, 1)
        return tuple(
            float(x) for x in np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        )

    if kind == "pole":
        col = [(0.35, 0.36, 0.38), (0.12, 0.25, 0.15), (0.1, 0.1, 0.1), (0.6, 0.6, 0.6)][
            int(rng.integers(4))
        ]
        return Occluder(
            "pole", float(rng.uniform(-0.4, 0.4)), float(rng.uniform(0.07, 0.25)), 10.0, lin(col)
        )
    if kind == "car":
        col = _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))]
        return Occluder(
            "car",
            float(rng.uniform(-0.25, 0.25)),
            4.0,
            float(rng.uniform(0.85, 1.45)),
            lin(col),
            side=int(rng.choice([-1, 1])),
        )
    if kind == "bush":
        return Occluder(
            "bush",
            float(rng.uniform(-0.4, 0.4)),
            float(rng.uniform(0.8, 2.5)),
            float(rng.uniform(0.45, 1.0)),
            lin((0.2, 0.4 + 0.2 * rng.random(), 0.15)),
        )
    if kind == "railing":
        return Occluder(
            "railing",
            float(rng.uniform(-0.1, 0.1)),
            10.0,
            float(rng.uniform(0.85, 1.1)),
            lin((0.5, 0.5, 0.52)),
        )
    if kind == "bin":
        col = [(0.15, 0.35, 0.2), (0.2, 0.2, 0.22), (0.6, 0.45, 0.1), (0.2, 0.3, 0.6)][
            int(rng.integers(4))
        ]
        return Occluder(
            "bin",
            float(rng.uniform(-0.35, 0.35)),
            float(rng.uniform(0.35, 0.6)),
            float(rng.uniform(0.6, 1.0)),
            lin(col),
        )
    other = sample_person(0, rng, world.preset.clothing)
    return Occluder(
        "pedestrian",
        float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.65)),
        0.5,
        1.7,
        (0.5, 0.5, 0.5),
        depth=float(rng.uniform(0.8, 2.5)),
        other=(other, float(rng.uniform(0, 2 * math.pi))),
    )


def render_job(world: World, job: ImageJob) -> tuple[RenderResult, dict]:
    """Render one planned image; returns the result and its manifest row (path relative)."""
    spec, frame = sample_spec(world, job)
    res = render_image(spec)
    name = image_name(job.pid, job.cam, job.view, frame, job.k, world.preset.image_format)
    person = spec.person
    row = {
        "path": f"{SUBSET_DIRS[job.subset]}/{name}",
        "subset": job.subset,
        "pid": job.pid,
        "camid": job.cam,
        "viewpoint": job.view,
        "frame": frame,
        "k": job.k,
        "location": spec.location.kind,
        "indoor": int(spec.location.indoor),
        "weather": spec.light.weather,
        "hour": spec.light.hour,
        "azimuth": res.azimuth,
        "box_x": res.box[0],
        "box_y": res.box[1],
        "box_w": res.box[2],
        "box_h": res.box[3],
        "tight_x": res.tight[0],
        "tight_y": res.tight[1],
        "tight_w": res.tight[2],
        "tight_h": res.tight[3],
        "occlusion": res.occlusion,
        "distance": res.distance,
        "capture_height": res.render_height,
        "twin_of": person.twin_of if person else 0,
    }
    return res, row


def encode_image(img: np.ndarray, fmt: str, quality: int) -> bytes:
    """JPEG (4:2:0, no optimisation: byte-stable) or PNG bytes of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(img).save(
            buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False
        )
    else:
        Image.fromarray(img).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ----------------------------------------------------------------------------- workers
_WORLD: World | None = None
_JOBS: list[ImageJob] | None = None
_DIR: Path | None = None


def _init_worker(world: World, jobs: list[ImageJob], root: str) -> None:
    global _WORLD, _JOBS, _DIR
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _WORLD, _JOBS, _DIR = world, jobs, Path(root)


def _chunk_label_path(root: Path, chunk: int) -> Path:
    return root / "labels" / f"chunk_{chunk:06d}.csv"


def _run_chunk(chunk: int) -> int:
    assert _WORLD is not None and _JOBS is not None and _DIR is not None
    world, root = _WORLD, _DIR
    jobs = _JOBS[chunk * CHUNK : (chunk + 1) * CHUNK]
    rows = []
    for job in jobs:
        res, row = render_job(world, job)
        data = encode_image(
            res.image, world.preset.image_format, world.locations[job.cam - 1].style.jpeg_quality
        )
        atomic_write_bytes(root / row["path"], data, sync=False)
        rows.append(row)
    write_manifest(rows, _chunk_label_path(root, chunk))
    return len(rows)


def _plan_fingerprint(world: World) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "preset": _preset_dict(world.preset),
        "seed": world.seed,
        "num_ids": world.num_ids,
    }


def _preset_dict(preset: SynthPreset) -> dict:
    def conv(o):
        if dataclasses.is_dataclass(o):
            return {f.name: conv(getattr(o, f.name)) for f in dataclasses.fields(o)}
        if isinstance(o, (tuple, list)):
            return [conv(x) for x in o]
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        return o

    return conv(preset)


def _identity_rows(world: World) -> list[dict]:
    test = set(world.test_ids)
    rows = []
    for p in world.persons:
        d = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
        for k, v in list(d.items()):
            if isinstance(v, tuple):
                d[k] = "" if v is None else "#" + "".join(f"{int(round(x * 255)):02x}" for x in v)
            elif v is None:
                d[k] = ""
            elif isinstance(v, float):
                d[k] = f"{v:.3f}"
        d["split"] = "test" if p.pid in test else "train"
        d["description"] = p.describe()
        rows.append(d)
    return rows


def _check_out_dir(out_dir: str | os.PathLike) -> Path:
    """`out_dir` as a Path: a path with a folder name (not '', '.', '..' or '/'), not
    inside a file."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            f"out_dir must be a path (str or os.PathLike), got {type(out_dir).__name__} {out_dir!r}"
        )
    out = Path(out_dir)
    if out.name in ("", ".", "..") or out.resolve().parent == out.resolve():
        raise SynthError(
            f"out_dir must name the dataset folder to create, got {os.fspath(out_dir)!r}"
        )
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise SynthError(f"out_dir {out}: {parent} is a file, not a folder")
            break
    return out


def generate(
    preset: str | SynthPreset,
    out_dir: str | Path,
    num_ids: int,
    seed: int = 0,
    processes: int | None = None,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = False,
    **overrides,
) -> Path:
    """Generate a synthetic re-ID dataset and return its root folder.

    Args:
        preset: a preset name (``gspr``, ``mini-gspr``, ``market-like``, ``duke-like`` ...) or
            a :class:`SynthPreset`.
        out_dir: the dataset root to create (Market-1501 layout + ``manifest.csv``).
        num_ids: number of identities (split into train / test by ``preset.test_fraction``).
        seed: the seed; the same seed gives the same bytes for any ``processes``.
        processes: worker processes (default: all CPUs); 1 renders in this process.
        overwrite: replace an existing ``out_dir`` (only once the new one is complete).
        resume: continue a stopped run found in ``<out_dir>.partial`` (same plan required);
            False starts that folder afresh.
        progress: show a progress bar.
        **overrides: SynthPreset fields to replace, e.g. ``image_size=(128, 64)``.
    """
    # every argument is checked before anything is created on disk
    world = build_world(get_preset(preset, **overrides), num_ids, seed)
    if processes is None:
        processes = os.cpu_count() or 1
    processes = _check_int("processes", processes, 1, 256)
    out = _check_out_dir(out_dir)
    if out.exists() and not out.is_dir():
        raise SynthError(f"out_dir {out} exists and is not a folder")
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    fingerprint = _plan_fingerprint(world)
    partial = open_partial(
        out, fingerprint, resume=resume, plan_name="plan.json",
        mismatch=lambda p: SynthError(
            f"{p} holds an unfinished run of a different plan (preset, seed or num_ids);"
            f" delete it or pass resume=False (--no-resume) to start afresh"
        ),
    )
    (partial / "labels").mkdir(exist_ok=True)
    for d in SUBSET_DIRS.values():
        (partial / d).mkdir(exist_ok=True)
    jobs = plan_jobs(world)
    n_chunks = (len(jobs) + CHUNK - 1) // CHUNK
    todo = [c for c in range(n_chunks) if not _chunk_label_path(partial, c).is_file()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(jobs),
            initial=len(jobs) - sum(len(jobs[c * CHUNK : (c + 1) * CHUNK]) for c in todo),
            unit="img",
            desc=world.preset.name,
        )
    if processes == 1 or len(todo) <= 1:
        _init_worker(world, jobs, str(partial))
        for c in todo:
            n = _run_chunk(c)
            if bar:
                bar.update(n)
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(
            min(processes, len(todo)),
            initializer=_init_worker,
            initargs=(world, jobs, str(partial)),
        ) as pool:
            for n in pool.imap_unordered(_run_chunk, todo):
                if bar:
                    bar.update(n)
    if bar:
        bar.close()
    # gather labels in plan order, write the manifest and meta, then publish atomically
    rows: list[dict] = []
    for c in range(n_chunks):
        with open(_chunk_label_path(partial, c), newline="") as f:
            rows += list(csv.DictReader(f))
    order = {"train": 0, "query": 1, "gallery": 2}
    rows.sort(key=lambda r: (order[r["subset"]], r["path"]))
    write_manifest(rows, partial / "manifest.csv")
    id_rows = _identity_rows(world)
    with open(partial / "identities.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(id_rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(id_rows)
    counts = {s: sum(r["subset"] == s for r in rows) for s in SUBSET_DIRS}
    meta = {
        **fingerprint,
        "generator": "smcr.synth",
        "num_images": len(rows),
        "images": counts,
        "train_ids": len(world.train_ids),
        "test_ids": len(world.test_ids),
        "cameras": [
            {"camid": loc.index, "kind": loc.kind, "indoor": loc.indoor, "views": len(loc.views)}
            for loc in world.locations
        ],
    }
    (partial / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    shutil.rmtree(partial / "labels")
    publish_partial(partial, out, plan_name="plan.json")
    return out


@dataclass
class SynthData:
    """An in-memory dataset: images (N, H, W, 3) uint8 and one label row per image."""

    images: np.ndarray
    rows: list[dict]
    world: World

    @property
    def pids(self) -> np.ndarray:
        """(N,) identity of every image (0 = distractor)."""
        return np.array([r["pid"] for r in self.rows], np.int64)

    @property
    def camids(self) -> np.ndarray:
        """(N,) 1-based camera of every image (as in the file names)."""
        return np.array([r["camid"] for r in self.rows], np.int64)

    @property
    def subsets(self) -> np.ndarray:
        """(N,) 'train', 'query' or 'gallery'."""
        return np.array([r["subset"] for r in self.rows])

    def subset(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, pids, camids) of one subset: 'train', 'query' or 'gallery'."""
        if name not in SUBSET_DIRS:
            raise ValueError(f"subset must be one of {sorted(SUBSET_DIRS)}, got {name!r}")
        m = self.subsets == name
        return self.images[m], self.pids[m], self.camids[m]


def _render_rows(args) -> list[tuple[np.ndarray, dict]]:
    world, jobs, encode = args
    out = []
    for job in jobs:
        res, row = render_job(world, job)
        img = res.image
        if encode:
            q = world.locations[job.cam - 1].style.jpeg_quality
            img = np.asarray(
                Image.open(io.BytesIO(encode_image(img, world.preset.image_format, q)))
            )
        out.append((img, row))
    return out


def generate_in_memory(
    preset: str | SynthPreset,
    num_ids: int,
    seed: int = 0,
    processes: int = 1,
    subsets: tuple[str, ...] = ("train", "query", "gallery"),
    encode: bool = False,
    max_images: int | None = None,
    **overrides,
) -> SynthData:
    """Render a dataset into memory (no files): for tests, demos and quick experiments.

    ``encode=True`` passes every image through the same JPEG/PNG encoding as :func:`generate`
    so the pixels equal the decoded files. ``max_images`` keeps the first N planned images.
    """
    world = build_world(get_preset(preset, **overrides), num_ids, seed)
    if isinstance(subsets, str) or not isinstance(subsets, (tuple, list)):
        raise TypeError(
            f"subsets must be a tuple of subset names (e.g. ('train',)), got "
            f"{type(subsets).__name__} {subsets!r}"
        )
    for s in subsets:
        if s not in SUBSET_DIRS:
            raise ValueError(f"subsets must be drawn from {sorted(SUBSET_DIRS)}, got {s!r}")
    jobs = [j for j in plan_jobs(world) if j.subset in subsets]
    if max_images is not None:
        jobs = jobs[: _check_int("max_images", max_images, 1)]
    processes = _check_int("processes", processes, 1, 256)
    parts = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    if processes == 1 or len(parts) <= 1:
        results = [_render_rows((world, p, encode)) for p in parts]
    else:
        with mp.get_context("spawn").Pool(min(processes, len(parts))) as pool:
            results = pool.map(_render_rows, [(world, p, encode) for p in parts])
    flat = [x for part in results for x in part]
    H, W = world.preset.image_size
    images = np.stack([x[0] for x in flat]) if flat else np.zeros((0, H, W, 3), np.uint8)
    rows = [x[1] for x in flat]
    return SynthData(images=images, rows=rows, world=world)
