"""Dataset presets: GSPR, mini-GSPR and two real-world-like domains (summer / winter campus).

A preset is a frozen :class:`SynthPreset` dataclass; every default lives in the dataclass.
``get_preset(name, **overrides)`` returns a (possibly modified) copy, ``load_preset(path)``
reads one from YAML (``base: <name>`` plus overrides).

``market-like`` and ``duke-like`` differ the way Market-1501 and DukeMTMC-reID do: summer vs
winter, bright vs overcast, light short clothes vs dark heavy ones, 6 low cameras vs 8 high
ones, warm saturated blurry low-resolution cameras with fixed-aspect detector boxes vs cool
crisp ones with tight hand-drawn boxes, little vs much occlusion. They are the source and
target domains of the domain-adaptation demo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from .person import LOWER_TYPES, PATTERNS, UPPER_TYPES, ClothingStyle
from .scene import LOCATION_KINDS, WEATHERS


class PresetError(ValueError):
    """A preset name, file or field is not valid."""


@dataclass(frozen=True)
class CameraRange:
    """Ranges (lo, hi) of camera placement drawn per viewpoint."""

    height: tuple[float, float] = (2.5, 8.0)
    distance: tuple[float, float] = (6.0, 18.0)
    hfov_deg: tuple[float, float] = (45.0, 75.0)


@dataclass(frozen=True)
class StyleRange:
    """Ranges (lo, hi) of each camera's colour style, drawn once per camera."""

    wb_bias: tuple[float, float, float] = (1.0, 1.0, 1.0)
    wb_sigma: float = 0.04
    exposure: tuple[float, float] = (0.85, 1.15)
    saturation: tuple[float, float] = (0.85, 1.15)
    contrast: tuple[float, float] = (0.9, 1.1)
    noise: tuple[float, float] = (0.004, 0.015)
    blur: tuple[float, float] = (0.0, 0.3)
    jpeg_quality: tuple[int, int] = (85, 95)


@dataclass(frozen=True)
class SynthPreset:
    """Everything that defines a synthetic dataset except its size and seed."""

    name: str = "custom"
    description: str = ""
    num_cameras: int = 6
    views_per_camera: int = 1
    locations: tuple[str, ...] = ("street", "plaza", "campus", "park", "mall", "station_hall")
    """Location kinds, cycled over the cameras."""
    image_size: tuple[int, int] = (256, 128)
    """Output (height, width) of every crop."""
    frames_per_view: tuple[int, int] = (1, 1)
    """Images per (identity, camera, viewpoint): a short tracklet, drawn in [lo, hi]."""
    cameras_per_id: tuple[int, int] | None = None
    """Each identity is seen by a random [lo, hi] of the cameras; None = by all of them."""
    heading: str = "route"
    """'route': people walk along the location's route, so the viewpoint sets the angle;
    'bidirectional': along the route either way; 'random': any direction."""
    weather: dict[str, float] = field(default_factory=lambda: {"clear": 1.0})
    hours: tuple[tuple[float, float, float], ...] = ((9.0, 17.0, 1.0),)
    """(start, end, weight) ranges of the time of day, in hours."""
    winter: bool = False
    snow: float = 0.0
    """Probability that an outdoor image shows snow on the ground."""
    camera: CameraRange = field(default_factory=CameraRange)
    style: StyleRange = field(default_factory=StyleRange)
    clothing: ClothingStyle = field(default_factory=ClothingStyle)
    occlusion: float = 0.0
    """Probability that an image has an occluder in front of the person."""
    occluders: tuple[str, ...] = ("pole", "car", "bush", "railing", "pedestrian", "bin")
    low_res: float = 0.0
    """Probability that an image is captured at low resolution and upsampled."""
    low_res_height: tuple[int, int] = (28, 64)
    box_margin: tuple[float, float] = (0.0, 0.08)
    """Detector-like jitter: each side of the tight box grows by [lo, hi] x box height."""
    box_aspect: float | None = None
    """Fixed width/height of the box (a sliding-window detector), or None for tight boxes."""
    twins: float = 0.1
    """Fraction of identities that are 'similar but different' copies of another one."""
    test_fraction: float = 0.5
    distractors: float = 0.0
    """pid-0 distractor images (background crops) added to the gallery, per gallery image."""
    standing: float = 0.1
    """Probability of a standing (not walking) pose."""
    frame_size: tuple[int, int] = (1080, 1920)
    image_format: str = "jpg"
    shared_site: bool = False
    """All cameras watch one site (a campus): they share its colours, as in Market / Duke."""

    def __post_init__(self) -> None:
        def bad(field_name: str, expected: str, got) -> PresetError:
            return PresetError(
                f"preset {self.name!r}: {field_name} must be {expected}, got {got!r}"
            )

        def number(field_name: str, v, lo: float, hi: float, ints: bool = False) -> None:
            kind = "an int" if ints else "a number"
            if not _is_number(v, ints) or not lo <= v <= hi:
                raise bad(field_name, f"{kind} in [{lo}, {hi}]", v)

        def pair(field_name: str, v, lo: float, hi: float, ints: bool = False) -> None:
            _check_range(bad, field_name, v, lo, hi, ints)

        number("num_cameras", self.num_cameras, 1, 99, ints=True)
        number("views_per_camera", self.views_per_camera, 1, 99, ints=True)
        if not (
            isinstance(self.image_size, tuple)
            and len(self.image_size) == 2
            and all(_is_number(x, True) for x in self.image_size)
            and 16 <= self.image_size[0] <= 2048
            and 8 <= self.image_size[1] <= 2048
        ):
            raise bad(
                "image_size", "(height, width) ints, height >= 16, width >= 8", self.image_size
            )
        if not isinstance(self.locations, tuple) or not self.locations:
            raise bad("locations", "a non-empty tuple of location kinds", self.locations)
        for kind in self.locations:
            if kind not in LOCATION_KINDS:
                raise bad("locations", f"kinds from {LOCATION_KINDS}", kind)
        # k < 100 in the file names: at most 100 images per (identity, camera, viewpoint)
        pair("frames_per_view", self.frames_per_view, 1, 100, ints=True)
        if self.num_cameras < 2 and self.test_fraction > 0:
            raise bad(
                "num_cameras",
                ">= 2 when a test split is made (queries need another camera; single-camera "
                "data needs test_fraction=0)",
                self.num_cameras,
            )
        if self.cameras_per_id is not None:
            lo_cam = 2 if self.test_fraction > 0 else 1
            pair("cameras_per_id", self.cameras_per_id, lo_cam, self.num_cameras, ints=True)
        if self.heading not in ("route", "bidirectional", "random"):
            raise bad("heading", "'route', 'bidirectional' or 'random'", self.heading)
        _check_weights(bad, "weather", self.weather, WEATHERS)
        if not isinstance(self.hours, tuple) or not self.hours:
            raise bad("hours", "a non-empty tuple of (start, end, weight)", self.hours)
        for h in self.hours:
            if not (
                isinstance(h, tuple)
                and len(h) == 3
                and all(_is_number(x) for x in h)
                and 0 <= h[0] < h[1] <= 24
                and h[2] >= 0
            ):
                raise bad("hours", "(start, end, weight) with 0 <= start < end <= 24", self.hours)
        if sum(h[2] for h in self.hours) <= 0:
            raise bad("hours", "weights with a positive sum", self.hours)
        if not isinstance(self.winter, bool):
            raise bad("winter", "a bool", self.winter)
        if not isinstance(self.shared_site, bool):
            raise bad("shared_site", "a bool", self.shared_site)
        for name in ("occlusion", "low_res", "twins", "snow", "standing", "distractors"):
            number(name, getattr(self, name), 0.0, 1.0)
        if not _is_number(self.test_fraction) or not 0.0 <= self.test_fraction < 1.0:
            raise bad("test_fraction", "a number in [0, 1)", self.test_fraction)
        pair("low_res_height", self.low_res_height, 1, 4096, ints=True)
        pair("box_margin", self.box_margin, 0.0, 1.0)
        if self.box_aspect is not None and (
            not _is_number(self.box_aspect) or not 0.2 <= self.box_aspect <= 1.5
        ):
            raise bad("box_aspect", "None or a width/height in [0.2, 1.5]", self.box_aspect)
        if not (
            isinstance(self.frame_size, tuple)
            and len(self.frame_size) == 2
            and all(_is_number(x, True) and 16 <= x <= 16384 for x in self.frame_size)
        ):
            raise bad("frame_size", "(height, width) ints in [16, 16384]", self.frame_size)
        if self.image_format not in ("jpg", "png"):
            raise bad("image_format", "'jpg' or 'png'", self.image_format)
        if not isinstance(self.occluders, tuple):
            raise bad("occluders", "a tuple of occluder kinds", self.occluders)
        for occ in self.occluders:
            if occ not in ("pole", "car", "bush", "railing", "pedestrian", "bin"):
                raise bad("occluders", "kinds from pole, car, bush, railing, pedestrian, bin", occ)
        _check_camera(bad, self.camera)
        _check_style(bad, self.style)
        _check_clothing(bad, self.clothing)

    @property
    def num_views(self) -> int:
        """Cameras x viewpoints."""
        return self.num_cameras * self.views_per_camera


def _is_number(v, ints: bool = False) -> bool:
    """A finite int (plain int with `ints`) or float; bools, strings and NaN are not."""
    if isinstance(v, bool):
        return False
    if ints:
        return isinstance(v, int)
    return isinstance(v, (int, float)) and math.isfinite(v)


def _check_range(bad, name: str, v, lo: float, hi: float, ints: bool = False) -> None:
    if not (
        isinstance(v, tuple)
        and len(v) == 2
        and all(_is_number(x, ints) for x in v)
        and lo <= v[0] <= v[1] <= hi
    ):
        kind = "ints" if ints else "numbers"
        raise bad(name, f"a (lo, hi) pair of {kind} with {lo} <= lo <= hi <= {hi}", v)


def _check_weights(bad, name: str, v, keys: tuple[str, ...], need: tuple[str, ...] = ()) -> None:
    """A dict over `keys` with finite non-negative weights; those of `need` (default: all
    of them) must have a positive sum."""
    if not isinstance(v, dict) or not v or any(k not in keys for k in v):
        raise bad(name, f"a non-empty dict over {keys}", v)
    if any(not _is_number(w) or w < 0 for w in v.values()):
        raise bad(name, "finite non-negative weights", v)
    if sum(w for k, w in v.items() if not need or k in need) <= 0:
        what = f"a positive weight on one of {need}" if need else "weights with a positive sum"
        raise bad(name, what, v)


def _check_camera(bad, camera) -> None:
    if not isinstance(camera, CameraRange):
        raise bad("camera", "a CameraRange (or a dict of its fields)", camera)
    _check_range(bad, "camera.height", camera.height, 0.1, 100.0)
    _check_range(bad, "camera.distance", camera.distance, 0.5, 1000.0)
    _check_range(bad, "camera.hfov_deg", camera.hfov_deg, 1.0, 179.0)


def _check_style(bad, style) -> None:
    if not isinstance(style, StyleRange):
        raise bad("style", "a StyleRange (or a dict of its fields)", style)
    wb = style.wb_bias
    if not (
        isinstance(wb, tuple) and len(wb) == 3 and all(_is_number(x) and 0 < x <= 10 for x in wb)
    ):
        raise bad("style.wb_bias", "three numbers in (0, 10]", wb)
    if not _is_number(style.wb_sigma) or not 0 <= style.wb_sigma <= 1:
        raise bad("style.wb_sigma", "a number in [0, 1]", style.wb_sigma)
    for name, hi in (("exposure", 10.0), ("saturation", 10.0), ("contrast", 10.0)):
        _check_range(bad, f"style.{name}", getattr(style, name), 0.0, hi)
    _check_range(bad, "style.noise", style.noise, 0.0, 1.0)
    _check_range(bad, "style.blur", style.blur, 0.0, 100.0)
    _check_range(bad, "style.jpeg_quality", style.jpeg_quality, 1, 100, ints=True)


def _check_clothing(bad, clothing) -> None:
    if not isinstance(clothing, ClothingStyle):
        raise bad("clothing", "a ClothingStyle (or a dict of its fields)", clothing)
    # men never draw a dress, nor (almost) a skirt: another kind must be possible
    _check_weights(
        bad,
        "clothing.upper_types",
        clothing.upper_types,
        UPPER_TYPES,
        tuple(k for k in UPPER_TYPES if k != "dress"),
    )
    _check_weights(
        bad,
        "clothing.lower_types",
        clothing.lower_types,
        LOWER_TYPES,
        tuple(k for k in LOWER_TYPES if k != "long_skirt"),
    )
    _check_weights(bad, "clothing.patterns", clothing.patterns, PATTERNS)
    for name in ("bright_fraction", "backpack", "shoulder_bag", "hat", "mask", "glasses", "scarf"):
        v = getattr(clothing, name)
        if not _is_number(v) or not 0 <= v <= 1:
            raise bad(f"clothing.{name}", "a probability in [0, 1]", v)
    if not _is_number(clothing.lightness) or not -1 <= clothing.lightness <= 1:
        raise bad("clothing.lightness", "a number in [-1, 1]", clothing.lightness)


_ALL_WEATHER = {
    "clear": 0.21,
    "extra_sunny": 0.13,
    "clouds": 0.2,
    "overcast": 0.14,
    "rain": 0.12,
    "foggy": 0.1,
    "thunder": 0.1,
}

PRESETS: dict[str, SynthPreset] = {
    "gspr": SynthPreset(
        name="gspr",
        description="GSPR-like: 26 cameras x 12 viewpoints, indoor and outdoor, all weathers and "
        "times of day, occlusion, low resolution, similar-but-different people.",
        num_cameras=26,
        views_per_camera=12,
        locations=(
            "street",
            "bank",
            "plaza",
            "beach",
            "museum",
            "sidewalk",
            "parking_lot",
            "mountain",
            "pub",
            "campus",
            "park",
            "mall",
            "station_platform",
            "station_hall",
            "parking_garage",
            "street",
            "plaza",
            "sidewalk",
            "park",
            "beach",
            "campus",
            "mall",
            "street",
            "mountain",
            "bank",
            "station_platform",
        ),
        weather=_ALL_WEATHER,
        hours=(
            (0.0, 6.0, 0.1),
            (6.0, 9.0, 0.12),
            (9.0, 18.0, 0.6),
            (18.0, 21.0, 0.1),
            (21.0, 24.0, 0.08),
        ),
        camera=CameraRange(height=(2.0, 10.0), distance=(5.0, 24.0), hfov_deg=(40.0, 80.0)),
        style=StyleRange(
            wb_sigma=0.06, noise=(0.004, 0.02), blur=(0.0, 0.5), jpeg_quality=(80, 95)
        ),
        occlusion=0.2,
        low_res=0.25,
        box_margin=(0.0, 0.1),
        twins=0.12,
    ),
    "mini-gspr": SynthPreset(
        name="mini-gspr",
        description="mini-GSPR-like: 13 cameras (9 outdoor, 4 indoor) x 4 viewpoints, daytime "
        "and sunny only, no occlusion, high resolution.",
        num_cameras=13,
        views_per_camera=4,
        locations=(
            "bank",
            "parking_lot",
            "sidewalk",
            "mountain",
            "plaza",
            "mall",
            "park",
            "beach",
            "museum",
            "campus",
            "street",
            "station_hall",
            "station_platform",
        ),
        weather={"clear": 0.5, "extra_sunny": 0.5},
        hours=((9.0, 17.0, 1.0),),
        camera=CameraRange(height=(2.0, 7.0), distance=(5.0, 15.0), hfov_deg=(40.0, 65.0)),
        style=StyleRange(
            wb_sigma=0.05, noise=(0.003, 0.008), blur=(0.0, 0.15), jpeg_quality=(92, 96)
        ),
        occlusion=0.0,
        low_res=0.0,
        box_margin=(0.0, 0.05),
        twins=0.12,
    ),
    "market-like": SynthPreset(
        name="market-like",
        description="Summer campus (Market-1501-like): 6 low cameras, bright sun, light "
        "colourful clothes, warm saturated blurry cameras, fixed-aspect detector boxes, 128x64.",
        num_cameras=6,
        views_per_camera=1,
        locations=("campus", "plaza", "sidewalk", "campus", "plaza", "sidewalk"),
        shared_site=True,
        image_size=(128, 64),
        frames_per_view=(2, 6),
        cameras_per_id=(2, 6),
        heading="bidirectional",
        weather={"clear": 0.45, "extra_sunny": 0.4, "clouds": 0.15},
        hours=((8.0, 19.0, 1.0),),
        camera=CameraRange(height=(2.2, 4.5), distance=(6.0, 14.0), hfov_deg=(50.0, 75.0)),
        style=StyleRange(
            wb_bias=(1.1, 1.0, 0.84),
            wb_sigma=0.06,
            exposure=(1.0, 1.35),
            saturation=(1.1, 1.4),
            contrast=(1.0, 1.2),
            noise=(0.006, 0.02),
            blur=(0.3, 0.8),
            jpeg_quality=(70, 85),
        ),
        clothing=ClothingStyle(
            upper_types={
                "tank": 0.12,
                "tshirt": 0.5,
                "shirt": 0.18,
                "hoodie": 0.02,
                "jacket": 0.02,
                "coat": 0.0,
                "dress": 0.16,
            },
            lower_types={
                "trousers": 0.2,
                "jeans": 0.2,
                "shorts": 0.38,
                "skirt": 0.16,
                "long_skirt": 0.06,
            },
            patterns={
                "plain": 0.45,
                "stripes": 0.18,
                "checks": 0.07,
                "logo": 0.22,
                "two_tone": 0.08,
            },
            bright_fraction=0.6,
            lightness=0.45,
            backpack=0.22,
            shoulder_bag=0.2,
            hat=0.1,
            mask=0.0,
            glasses=0.15,
            scarf=0.0,
        ),
        occlusion=0.08,
        occluders=("pole", "bin", "pedestrian"),
        low_res=0.4,
        low_res_height=(40, 80),
        box_margin=(0.03, 0.16),
        box_aspect=0.5,
        twins=0.08,
        distractors=0.03,
    ),
    "duke-like": SynthPreset(
        name="duke-like",
        description="Winter campus (DukeMTMC-reID-like): 8 high cameras, overcast and snow, "
        "dark heavy clothes, cool crisp cameras, tight boxes, much occlusion, 256x128.",
        num_cameras=8,
        views_per_camera=1,
        locations=(
            "campus",
            "campus",
            "street",
            "parking_lot",
            "plaza",
            "sidewalk",
            "campus",
            "park",
        ),
        shared_site=True,
        image_size=(256, 128),
        frames_per_view=(2, 8),
        cameras_per_id=(2, 5),
        heading="bidirectional",
        weather={"overcast": 0.5, "clouds": 0.3, "foggy": 0.08, "clear": 0.12},
        hours=((8.0, 17.0, 1.0),),
        winter=True,
        snow=0.5,
        camera=CameraRange(height=(5.0, 10.0), distance=(7.0, 18.0), hfov_deg=(45.0, 65.0)),
        style=StyleRange(
            wb_bias=(0.9, 1.0, 1.12),
            wb_sigma=0.04,
            exposure=(0.8, 1.0),
            saturation=(0.6, 0.85),
            contrast=(0.85, 1.0),
            noise=(0.003, 0.01),
            blur=(0.0, 0.2),
            jpeg_quality=(88, 95),
        ),
        clothing=ClothingStyle(
            upper_types={
                "tank": 0.0,
                "tshirt": 0.02,
                "shirt": 0.06,
                "hoodie": 0.2,
                "jacket": 0.37,
                "coat": 0.35,
                "dress": 0.0,
            },
            lower_types={
                "trousers": 0.42,
                "jeans": 0.5,
                "shorts": 0.0,
                "skirt": 0.02,
                "long_skirt": 0.06,
            },
            patterns={
                "plain": 0.75,
                "stripes": 0.05,
                "checks": 0.08,
                "logo": 0.05,
                "two_tone": 0.07,
            },
            bright_fraction=0.12,
            lightness=-0.45,
            backpack=0.45,
            shoulder_bag=0.12,
            hat=0.3,
            mask=0.05,
            glasses=0.15,
            scarf=0.25,
        ),
        occlusion=0.3,
        occluders=("car", "pole", "pedestrian", "bush", "railing"),
        low_res=0.08,
        box_margin=(0.0, 0.04),
        box_aspect=None,
        twins=0.12,
    ),
}
# aliases in the spirit of the examples
PRESETS["summer-campus"] = dataclasses.replace(PRESETS["market-like"], name="summer-campus")
PRESETS["winter-campus"] = dataclasses.replace(PRESETS["duke-like"], name="winter-campus")


def preset_names() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(PRESETS)


def get_preset(preset: str | SynthPreset, **overrides) -> SynthPreset:
    """The preset called ``preset`` (or ``preset`` itself), with fields replaced by
    ``overrides`` (e.g. ``image_size=(128, 64)``, ``num_cameras=4``). Nested dataclasses
    take dicts (``style={"noise": (0, 0)}``); a smaller ``num_cameras`` also caps
    ``cameras_per_id`` unless that is given too."""
    if isinstance(preset, SynthPreset):
        base = preset
    elif isinstance(preset, str):
        if preset not in PRESETS:
            raise PresetError(f"preset must be one of {preset_names()}, got {preset!r}")
        base = PRESETS[preset]
    else:
        raise TypeError(f"preset must be a name or a SynthPreset, got {type(preset).__name__}")
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(SynthPreset)}
    for k in overrides:
        if k not in names:
            raise PresetError(f"unknown preset field {k!r}; fields are {sorted(names)}")
    nested = {"camera": CameraRange, "style": StyleRange, "clothing": ClothingStyle}
    fixed = {}
    for k, v in overrides.items():
        if k in nested and isinstance(v, dict):
            known = {f.name for f in dataclasses.fields(nested[k])}
            unknown = sorted(str(kk) for kk in v if kk not in known)
            if unknown:
                raise PresetError(f"unknown {k} field(s) {unknown}; {k} fields are {sorted(known)}")
            v = dataclasses.replace(
                getattr(base, k),
                **{kk: tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()},
            )
        elif k in (
            "image_size",
            "frames_per_view",
            "cameras_per_id",
            "low_res_height",
            "box_margin",
            "frame_size",
            "locations",
            "occluders",
        ) and isinstance(v, list):
            v = tuple(v)
        elif k == "hours" and isinstance(v, list):
            v = tuple(tuple(x) for x in v)
        fixed[k] = v
    n_cam = fixed.get("num_cameras")
    if isinstance(n_cam, int) and "cameras_per_id" not in fixed and base.cameras_per_id:
        lo, hi = base.cameras_per_id  # follow a smaller camera count
        fixed["cameras_per_id"] = (min(lo, n_cam), min(hi, n_cam))
    return dataclasses.replace(base, **fixed)


def load_preset(path: str | Path) -> SynthPreset:
    """Read a preset from a YAML file: ``base: <preset name>`` (default ``mini-gspr``) and
    any SynthPreset fields to override."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PresetError(f"preset file {path} does not exist (expected a YAML file)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PresetError(f"preset file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise PresetError(f"preset file {path} must hold a mapping, got {type(data).__name__}")
    base = data.pop("base", "mini-gspr")
    data.setdefault("name", path.stem)
    try:
        return get_preset(base, **data)
    except PresetError as e:
        raise PresetError(f"{path}: {e}") from e
