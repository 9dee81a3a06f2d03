"""Scenes, cameras, weather and time of day.

A *location* is one camera of a dataset (the ``c`` in ``0001_c3s2_...``): a kind of place
(street, plaza, mall, parking lot, park, station ...), a procedural ground and backdrop and
a camera *style* (white balance, contrast, noise, blur, JPEG quality). Each location has
several *viewpoints* (the ``s``): camera positions around the location's region of interest
(ROI), each with its own azimuth, height, distance and lens.

World frame: x east, y north, z up, metres; the ROI centre is the origin and people walk on
z = 0. A backdrop (facade, shop fronts, trees, sea, hills, indoor wall ...) stands behind
the ROI, facing the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

WEATHERS = ("clear", "extra_sunny", "clouds", "overcast", "rain", "foggy", "thunder")

OUTDOOR_KINDS = (
    "street",
    "plaza",
    "campus",
    "park",
    "parking_lot",
    "beach",
    "mountain",
    "sidewalk",
    "station_platform",
)
INDOOR_KINDS = ("mall", "station_hall", "bank", "museum", "pub", "parking_garage")
LOCATION_KINDS = OUTDOOR_KINDS + INDOOR_KINDS

# ground kind and backdrop kind for each location kind (the backdrop may vary per viewpoint)
_KIND_LAYOUT = {
    "street": ("asphalt", ("facade", "shopfront")),
    "sidewalk": ("paving", ("shopfront", "facade")),
    "plaza": ("paving", ("facade", "trees")),
    "campus": ("brick", ("facade", "trees")),
    "park": ("grass", ("trees",)),
    "parking_lot": ("asphalt", ("cars", "facade")),
    "beach": ("sand", ("sea",)),
    "mountain": ("dirt", ("hills", "trees")),
    "station_platform": ("platform", ("facade", "pillars")),
    "mall": ("tiles", ("shopfront", "pillars")),
    "station_hall": ("tiles", ("pillars", "wall")),
    "bank": ("marble", ("wall", "pillars")),
    "museum": ("wood", ("wall",)),
    "pub": ("wood", ("wall",)),
    "parking_garage": ("concrete", ("cars", "pillars")),
}


@dataclass(frozen=True)
class CameraStyle:
    """How one camera renders colour: linear white-balance gains, exposure, tone and noise."""

    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure: float = 1.0
    saturation: float = 1.0
    contrast: float = 1.0
    noise: float = 0.01
    blur: float = 0.0
    jpeg_quality: int = 90


@dataclass(frozen=True)
class Viewpoint:
    """One camera position around a location's ROI (the ``s`` of a file name, 1-based)."""

    index: int
    azimuth: float  # radians, direction from the ROI centre to the camera
    height: float  # metres
    distance: float  # metres (horizontal, ROI centre to camera)
    hfov: float  # radians, horizontal field of view of a 1920-pixel-wide frame
    backdrop: str
    backdrop_distance: float
    seed: int


@dataclass(frozen=True)
class Location:
    """One camera of the dataset (the ``c`` of a file name, 1-based)."""

    index: int
    kind: str
    indoor: bool
    ground: str
    palette: tuple  # tuple of linear-RGB colours used by the ground and the backdrop
    route_heading: float  # radians: the direction people walk across the ROI
    roi_radius: float
    views: tuple[Viewpoint, ...]
    style: CameraStyle
    seed: int


@dataclass(frozen=True)
class Lighting:
    """Light of one image (linear RGB radiance units)."""

    weather: str
    hour: float
    sun_dir: tuple[float, float, float]  # world unit vector towards the sun
    sun: tuple[float, float, float]
    sky: tuple[float, float, float]
    bounce: tuple[float, float, float]
    fog_density: float
    fog: tuple[float, float, float]
    rain: float
    wet: float
    snow: float
    night: bool
    lamp: float  # strength of warm artificial light from above (night, indoor)
    flash: float  # lightning


def _lin(c) -> np.ndarray:
    c = np.asarray(c, dtype=np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


# ----------------------------------------------------------------------------- lighting
def sun_direction(hour: float, azimuth_offset: float, winter: bool = False) -> np.ndarray:
    """Unit vector towards the sun at ``hour`` (0-24); below the horizon at night."""
    day = (hour - 6.0) / 12.0  # 0 at 6:00, 1 at 18:00
    elev_max = math.radians(38.0 if winter else 68.0)
    elev = elev_max * math.sin(math.pi * day) if 0.0 <= day <= 1.0 else -0.2
    az = azimuth_offset + math.pi * (0.5 - day)  # east in the morning, west in the evening
    return np.array(
        [math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev)],
        dtype=np.float32,
    )


def make_lighting(
    weather: str,
    hour: float,
    indoor: bool,
    rng: np.random.Generator,
    winter: bool = False,
    snow: float = 0.0,
) -> Lighting:
    """Light for ``weather`` at ``hour``: sun direction, colour and strength, sky and bounce
    ambient, fog, rain and night lamps."""
    if weather not in WEATHERS:
        raise ValueError(f"weather must be one of {WEATHERS}, got {weather!r}")
    if not 0.0 <= hour < 24.0:
        raise ValueError(f"hour must be in [0, 24), got {hour}")
    sd = sun_direction(hour, float(rng.uniform(-0.6, 0.6)), winter)
    elev = math.asin(min(max(float(sd[2]), -1.0), 1.0))
    daylight = min(max(math.sin(elev) * 3.0 + 0.15, 0.0), 1.0)
    night = daylight < 0.05
    warm = min(max(1.0 - math.sin(max(elev, 0.0)) * 2.5, 0.0), 1.0)  # sunrise / sunset
    sun_col = np.array([1.0, 0.93 - 0.25 * warm, 0.85 - 0.5 * warm], np.float32)
    sky_col = np.array([0.55 + 0.3 * warm, 0.65, 0.85 - 0.25 * warm], np.float32)
    sun_k = {
        "clear": 1.0,
        "extra_sunny": 1.25,
        "clouds": 0.55,
        "overcast": 0.08,
        "rain": 0.04,
        "foggy": 0.12,
        "thunder": 0.02,
    }[weather]
    sky_k = {
        "clear": 0.28,
        "extra_sunny": 0.3,
        "clouds": 0.36,
        "overcast": 0.45,
        "rain": 0.32,
        "foggy": 0.45,
        "thunder": 0.18,
    }[weather]
    if weather in ("overcast", "rain", "foggy", "thunder"):
        sky_col = np.array([0.72, 0.74, 0.78], np.float32)
    sun = sun_col * 3.2 * sun_k * daylight
    sky = sky_col * sky_k * 3.2 * (0.03 + 0.97 * daylight)
    bounce = sky * 0.35 + sun * 0.05
    fog_density = {
        "foggy": float(rng.uniform(0.02, 0.06)),
        "rain": 0.012,
        "thunder": 0.02,
        "overcast": 0.004,
    }.get(weather, 0.001)
    fog = np.array([0.75, 0.77, 0.80], np.float32) * (0.08 + 1.6 * sky_k * daylight)
    rain = {"rain": float(rng.uniform(0.4, 1.0)), "thunder": float(rng.uniform(0.6, 1.0))}.get(
        weather, 0.0
    )
    wet = 1.0 if weather in ("rain", "thunder") else 0.0
    flash = float(rng.uniform(0.5, 1.5)) if weather == "thunder" and rng.random() < 0.25 else 0.0
    lamp = 0.0
    if night:
        lamp = float(rng.uniform(0.15, 0.9))
    elif daylight < 0.4:
        lamp = float(rng.uniform(0.0, 0.3))
    if indoor:
        # indoor: ceiling lights dominate; windows bring a little daylight
        sun = sun * 0.08
        sky = np.array([0.9, 0.9, 0.88], np.float32) * float(rng.uniform(0.45, 0.9)) + sky * 0.1
        bounce = sky * 0.4
        lamp = float(rng.uniform(0.6, 1.2))
        fog_density, rain, wet, flash = 0.0008, 0.0, 0.0, 0.0
        fog = sky * 0.8
    return Lighting(
        weather=weather,
        hour=float(hour),
        sun_dir=tuple(float(x) for x in sd),
        sun=tuple(float(x) for x in sun),
        sky=tuple(float(x) for x in sky),
        bounce=tuple(float(x) for x in bounce),
        fog_density=fog_density,
        fog=tuple(float(x) for x in fog),
        rain=rain,
        wet=wet,
        snow=0.0 if indoor else snow,
        night=night and not indoor,
        lamp=lamp,
        flash=flash,
    )


# ----------------------------------------------------------------------------- locations
def make_location(
    index: int,
    kind: str,
    num_views: int,
    rng: np.random.Generator,
    height: tuple[float, float],
    distance: tuple[float, float],
    hfov_deg: tuple[float, float],
    style: CameraStyle,
    seed: int,
    view_spread: float = 2.0 * math.pi,
    palette_rng: np.random.Generator | None = None,
) -> Location:
    """Draw one location (camera) of ``kind`` with ``num_views`` viewpoints spread over
    ``view_spread`` radians of azimuth around its ROI. ``palette_rng`` (a generator in the
    same state for every camera) makes the cameras share one site's colours."""
    if kind not in _KIND_LAYOUT:
        raise ValueError(f"location kind must be one of {sorted(_KIND_LAYOUT)}, got {kind!r}")
    ground, backdrops = _KIND_LAYOUT[kind]
    indoor = kind in INDOOR_KINDS
    h_lo, h_hi = height
    if indoor:
        h_lo, h_hi = min(h_lo, 2.6), min(h_hi, 4.5)
    az0 = float(rng.uniform(0, 2 * math.pi))
    route = float(rng.uniform(0, 2 * math.pi))
    views = []
    for v in range(num_views):
        az = az0 + view_spread * v / num_views + float(rng.normal(0, 0.08))
        views.append(
            Viewpoint(
                index=v + 1,
                azimuth=az,
                height=float(rng.uniform(h_lo, h_hi)),
                distance=float(rng.uniform(*distance)) * (0.7 if indoor else 1.0),
                hfov=math.radians(float(rng.uniform(*hfov_deg))),
                backdrop=backdrops[int(rng.integers(len(backdrops)))],
                backdrop_distance=float(
                    rng.uniform(4.0, 12.0) if indoor else rng.uniform(6.0, 30.0)
                ),
                seed=int(rng.integers(2**31)),
            )
        )
    prng = rng if palette_rng is None else palette_rng
    palette = tuple(tuple(float(x) for x in c) for c in _location_palette(kind, prng))
    return Location(
        index=index,
        kind=kind,
        indoor=indoor,
        ground=ground,
        palette=palette,
        route_heading=route,
        roi_radius=float(rng.uniform(0.5, 2.0)),
        views=tuple(views),
        style=style,
        seed=seed,
    )


def _location_palette(kind: str, rng: np.random.Generator) -> list:
    def j(c, a=0.08):
        c = np.asarray(c, np.float32) * (1.0 + rng.normal(0, a)) + rng.normal(0, a * 0.4, 3)
        return _lin(np.clip(c, 0.02, 0.98))

    walls = [
        (0.72, 0.66, 0.58),
        (0.62, 0.35, 0.28),
        (0.80, 0.78, 0.74),
        (0.55, 0.57, 0.60),
        (0.85, 0.80, 0.66),
        (0.45, 0.30, 0.25),
        (0.70, 0.74, 0.78),
    ]
    ground = {
        "asphalt": (0.30, 0.30, 0.31),
        "paving": (0.62, 0.60, 0.56),
        "brick": (0.58, 0.36, 0.30),
        "grass": (0.30, 0.48, 0.20),
        "sand": (0.84, 0.76, 0.58),
        "dirt": (0.48, 0.40, 0.30),
        "platform": (0.60, 0.60, 0.58),
        "tiles": (0.78, 0.76, 0.72),
        "marble": (0.86, 0.84, 0.80),
        "wood": (0.52, 0.36, 0.22),
        "concrete": (0.56, 0.56, 0.54),
    }[_KIND_LAYOUT[kind][0]]
    wall = walls[int(rng.integers(len(walls)))]
    accent = (rng.uniform(0.1, 0.95), rng.uniform(0.1, 0.95), rng.uniform(0.1, 0.95))
    return [
        j(ground),
        j(ground, 0.15),
        j(wall),
        j(wall, 0.2),
        j(accent, 0.0),
        j((0.25, 0.42, 0.22)),
    ]


# ----------------------------------------------------------------------------- textures
@lru_cache(maxsize=1)
def _noise_texture() -> np.ndarray:
    """A smooth, tileable 256x256 value-noise texture in [0, 1] (fixed, so bytes never change)."""
    rng = np.random.default_rng(20240611)
    tex = np.zeros((256, 256), np.float64)
    for octave, amp in ((8, 0.5), (16, 0.25), (32, 0.15), (64, 0.1)):
        g = rng.random((octave, octave))
        # bicubic-ish smooth upsampling with wrap: tile, then cosine interpolation
        xs = np.arange(256) * octave / 256.0
        i0 = np.floor(xs).astype(int)
        f = xs - i0
        f = f * f * (3 - 2 * f)
        i1 = (i0 + 1) % octave
        rows = g[i0] * (1 - f)[:, None] + g[i1] * f[:, None]
        tex += amp * (rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :])
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return tex.astype(np.float32)


def noise2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of the tileable noise texture at continuous texel coordinates."""
    tex = _noise_texture()
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    xi = x0.astype(np.int64) & 255
    yi = y0.astype(np.int64) & 255
    x1 = (xi + 1) & 255
    y1 = (yi + 1) & 255
    top = tex[yi, xi] * (1 - fx) + tex[yi, x1] * fx
    bot = tex[y1, xi] * (1 - fx) + tex[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def hash2(ix: np.ndarray, iy: np.ndarray, salt: int = 0) -> np.ndarray:
    """A deterministic hash of integer cell coordinates to [0, 1)."""
    h = (np.asarray(ix).astype(np.int64) * 73856093) ^ (np.asarray(iy).astype(np.int64) * 19349663)
    h = (h ^ (salt * 83492791)) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return ((h & 0xFFFF).astype(np.float32)) / 65536.0


def ground_albedo(kind: str, gx: np.ndarray, gy: np.ndarray, pal: list, salt: int) -> np.ndarray:
    """Albedo (N, 3) of the ground ``kind`` at world points (gx, gy)."""
    c0, c1 = pal[0], pal[1]
    n = noise2(gx * 9.0 + salt % 97, gy * 9.0)[:, None]
    if kind == "asphalt":
        col = c0 * (0.8 + 0.4 * n)
        line = (np.abs(np.mod(gx + salt % 7, 6.0) - 3.0) < 0.07) & (np.mod(gy, 4.0) < 2.5)
        col = np.where(line[:, None], np.float32(0.75), col)
    elif kind in ("paving", "platform", "tiles", "concrete", "marble", "brick"):
        size = {
            "paving": 0.5,
            "platform": 0.6,
            "tiles": 0.8,
            "concrete": 2.0,
            "marble": 1.0,
            "brick": 0.22,
        }[kind]
        ix = np.floor(gx / size)
        iy = np.floor(gy / (size * (0.5 if kind == "brick" else 1.0)))
        if kind == "brick":
            ix = np.floor(gx / size + 0.5 * np.mod(iy, 2))
        h = hash2(ix, iy, salt)[:, None]
        col = c0 * (1.0 - 0.25 * h) + c1 * 0.25 * h
        fx = np.mod(gx / size + (0.5 * np.mod(iy, 2) if kind == "brick" else 0.0), 1.0)
        fy = np.mod(gy / (size * (0.5 if kind == "brick" else 1.0)), 1.0)
        grout = (np.minimum(fx, 1 - fx) < 0.04) | (np.minimum(fy, 1 - fy) < 0.04)
        col = np.where(grout[:, None], col * 0.65, col * (0.9 + 0.2 * n))
        if kind == "marble":
            vein = np.abs(np.sin(gx * 3.0 + 6.0 * noise2(gx * 2.0, gy * 2.0 + 50))) < 0.06
            col = np.where(vein[:, None], col * 0.7, col)
        if kind == "platform":
            edge = np.abs(np.mod(gx, 12.0) - 6.0) < 0.15
            col = np.where(edge[:, None], _lin((0.85, 0.72, 0.10)), col)
    elif kind == "grass":
        fine = noise2(gx * 40.0, gy * 40.0 + 17)[:, None]
        col = c0 * (0.7 + 0.3 * n + 0.3 * fine)
        path = np.abs(np.mod(gx + salt % 11, 14.0) - 7.0) < 1.2
        col = np.where(path[:, None], _lin((0.62, 0.58, 0.50)) * (0.85 + 0.3 * n), col)
    elif kind == "wood":
        plank = np.floor(gx / 0.18)
        h = hash2(plank, np.floor(gy / 2.0 + hash2(plank, plank, 3) * 2.0), salt)[:, None]
        grain = noise2(gx * 4.0, gy * 60.0)[:, None]
        col = c0 * (0.75 + 0.3 * h + 0.2 * grain)
        seam = np.minimum(np.mod(gx / 0.18, 1.0), 1 - np.mod(gx / 0.18, 1.0)) < 0.05
        col = np.where(seam[:, None], col * 0.6, col)
    else:  # sand, dirt
        fine = noise2(gx * 30.0, gy * 30.0 + 5)[:, None]
        col = c0 * (0.8 + 0.25 * n + 0.15 * fine)
        if kind == "dirt":
            rock = noise2(gx * 6.0 + 100, gy * 6.0) > 0.72
            col = np.where(rock[:, None], _lin((0.5, 0.5, 0.48)) * (0.7 + 0.4 * fine), col)
    return col.astype(np.float32)


def backdrop_albedo(
    kind: str, s: np.ndarray, z: np.ndarray, pal: list, salt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (N, 3) and a 'sky' flag (N,) of the backdrop ``kind`` at plane coordinates
    (s along the plane, z up, metres). Sky pixels are lit as sky, not as a surface."""
    wall, wall2, accent, green = pal[2], pal[3], pal[4], pal[5]
    n = noise2(s * 4.0 + salt % 89, z * 4.0)[:, None]
    sky = np.zeros(s.shape, bool)
    if kind == "facade":
        top = 12.0 + 10.0 * hash2(np.floor(s / 15.0), np.zeros_like(s), salt)
        sky = z > top
        col = wall * (0.85 + 0.3 * n)
        fx = np.mod(s / 2.2, 1.0)
        fz = np.mod((z - 3.4) / 3.0, 1.0)
        win = (z > 3.4) & (fx > 0.25) & (fx < 0.75) & (fz > 0.2) & (fz < 0.8)
        glass = _lin((0.25, 0.3, 0.36)) * (
            0.7 + 0.6 * hash2(np.floor(s / 2.2), np.floor(z / 3.0), salt)[:, None]
        )
        col = np.where(win[:, None], glass, col)
        door = (z < 2.6) & (np.mod(s / 4.0, 1.0) > 0.3) & (np.mod(s / 4.0, 1.0) < 0.7)
        col = np.where(door[:, None], wall2 * 0.5, col)
    elif kind == "shopfront":
        shop = np.floor(s / 5.0)
        h = hash2(shop, shop, salt)[:, None]
        sign_col = _lin(
            np.stack([h[:, 0], hash2(shop, shop, salt + 1), hash2(shop, shop, salt + 2)], 1)
        )
        interior = (0.3 + 0.7 * sign_col) * (0.6 + 0.5 * n)
        col = wall * (0.85 + 0.3 * n)
        glass = (z < 2.6) & (np.mod(s / 5.0, 1.0) > 0.06) & (np.mod(s / 5.0, 1.0) < 0.94)
        col = np.where(glass[:, None], interior * 0.8, col)
        sign = (z > 2.75) & (z < 3.4) & (np.mod(s / 5.0, 1.0) > 0.1) & (np.mod(s / 5.0, 1.0) < 0.9)
        col = np.where(sign[:, None], sign_col * 1.3, col)
        sky = z > 9.0 + 6.0 * hash2(np.floor(s / 12.0), np.zeros_like(s), salt)
    elif kind == "trees":
        canopy_top = 4.0 + 5.0 * noise2(s * 0.8 + salt % 53, np.zeros_like(s) + 3.0)
        sky = z > canopy_top
        leaf = noise2(s * 6.0, z * 6.0 + 9.0)[:, None]
        col = green * (0.45 + 0.9 * leaf)
        trunk = (np.abs(np.mod(s / 4.5, 1.0) - 0.5) < 0.04) & (z < 3.0)
        col = np.where(trunk[:, None], _lin((0.3, 0.22, 0.15)), col)
        hedge = z < 0.9
        col = np.where(hedge[:, None], green * (0.5 + 0.6 * n), col)
    elif kind == "sea":
        sky = z > 1.2
        col = _lin((0.12, 0.35, 0.5)) * (0.8 + 0.4 * noise2(s * 2.0, z * 30.0)[:, None])
    elif kind == "hills":
        ridge = 3.0 + 9.0 * noise2(s * 0.3 + salt % 31, np.zeros_like(s) + 7.0)
        sky = z > ridge
        col = _lin((0.35, 0.38, 0.28)) * (0.6 + 0.6 * n)
    elif kind == "cars":
        col = wall * (0.8 + 0.3 * n)
        car = np.floor(s / 2.6)
        hc = hash2(car, car, salt)
        body = (z < 0.9 + 0.3 * hc) & (np.mod(s / 2.6, 1.0) > 0.06) & (np.mod(s / 2.6, 1.0) < 0.94)
        car_col = (
            _lin(np.stack([hc, hash2(car, car, salt + 5), hash2(car, car, salt + 9)], 1)) * 0.8
        )
        col = np.where(body[:, None], car_col, col)
        glass = (~body) & (z < 1.45) & (np.mod(s / 2.6, 1.0) > 0.2) & (np.mod(s / 2.6, 1.0) < 0.8)
        col = np.where(glass[:, None], _lin((0.1, 0.12, 0.15)), col)
        sky = z > 14.0
    elif kind == "pillars":
        col = wall * (0.85 + 0.3 * n)
        pil = np.abs(np.mod(s / 6.0, 1.0) - 0.5) < 0.07
        col = np.where(pil[:, None], wall2 * 1.1, col)
        sign = (z > 2.6) & (z < 3.0) & (np.mod(s / 9.0, 1.0) < 0.3)
        col = np.where(sign[:, None], accent, col)
    else:  # indoor wall with panels, a baseboard and pictures or a counter
        col = wall * (0.88 + 0.24 * n)
        panel = np.minimum(np.mod(s / 1.2, 1.0), 1 - np.mod(s / 1.2, 1.0)) < 0.02
        col = np.where(panel[:, None], col * 0.8, col)
        col = np.where((z < 0.15)[:, None], wall2 * 0.6, col)
        pic = (z > 1.3) & (z < 2.2) & (np.abs(np.mod(s / 3.5, 1.0) - 0.5) < 0.15)
        pic_col = _lin(
            np.stack(
                [
                    hash2(np.floor(s / 3.5), z * 0 + 1, salt),
                    hash2(np.floor(s / 3.5), z * 0 + 2, salt),
                    hash2(np.floor(s / 3.5), z * 0 + 3, salt),
                ],
                1,
            )
        )
        col = np.where(pic[:, None], pic_col * (0.6 + 0.4 * n), col)
        counter = (z < 1.05) & (np.mod(s / 10.0, 1.0) < 0.45)
        col = np.where(counter[:, None], _lin((0.3, 0.18, 0.1)) * (0.8 + 0.3 * n), col)
    return col.astype(np.float32), sky
