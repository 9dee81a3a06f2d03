"""Person models: seeded identity attributes and the articulated 3-D body built from them.

An identity is a :class:`PersonModel` (body shape, skin, hair, garments, patterns, shoes,
accessories, gait). :func:`build_body` turns it into a set of *round cones* (capsules whose
radius changes linearly along the axis) in the body frame, posed at a walking phase:

    body frame: x = the person's right, y = forward (the way the person faces), z = up, metres,
    feet on z = 0.

Every primitive carries two material slots and a split parameter along its axis, so a
sleeve, a shorts hem or a sock line is a cut along one limb. Patterns (stripes, checks,
logo, bag straps, hair, face) are evaluated by the renderer on the hit point in the body
frame, so the front shows the face and the logo, the back the backpack and the hair, and
the side the profile.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

# ----------------------------------------------------------------------------- palettes
# sRGB colours in [0, 1]. Garment palettes are weighted per domain by ClothingStyle.

NEUTRAL = {
    "black": (0.09, 0.09, 0.10),
    "charcoal": (0.22, 0.22, 0.24),
    "grey": (0.50, 0.50, 0.50),
    "light_grey": (0.74, 0.74, 0.73),
    "white": (0.92, 0.92, 0.90),
    "navy": (0.12, 0.16, 0.32),
    "denim": (0.24, 0.33, 0.51),
    "light_denim": (0.47, 0.57, 0.71),
    "khaki": (0.70, 0.63, 0.47),
    "beige": (0.84, 0.78, 0.66),
    "brown": (0.39, 0.27, 0.18),
    "olive": (0.37, 0.39, 0.22),
    "dark_green": (0.12, 0.27, 0.18),
    "burgundy": (0.43, 0.10, 0.16),
}
BRIGHT = {
    "red": (0.78, 0.14, 0.16),
    "orange": (0.90, 0.47, 0.12),
    "yellow": (0.92, 0.80, 0.20),
    "green": (0.24, 0.63, 0.27),
    "teal": (0.12, 0.55, 0.55),
    "sky_blue": (0.39, 0.67, 0.88),
    "royal_blue": (0.16, 0.27, 0.75),
    "purple": (0.43, 0.24, 0.59),
    "pink": (0.92, 0.55, 0.67),
    "magenta": (0.78, 0.20, 0.51),
    "mint": (0.63, 0.86, 0.75),
    "lavender": (0.71, 0.63, 0.84),
    "coral": (0.95, 0.50, 0.42),
}
SKIN_TONES = np.array(
    [
        (0.96, 0.80, 0.69),
        (0.92, 0.74, 0.60),
        (0.85, 0.65, 0.52),
        (0.76, 0.57, 0.44),
        (0.63, 0.45, 0.33),
        (0.50, 0.34, 0.24),
        (0.38, 0.25, 0.18),
        (0.27, 0.18, 0.13),
    ],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [
        (0.05, 0.04, 0.04),  # black
        (0.16, 0.10, 0.07),  # dark brown
        (0.30, 0.19, 0.11),  # brown
        (0.50, 0.35, 0.20),  # light brown
        (0.80, 0.67, 0.42),  # blond
        (0.50, 0.20, 0.10),  # auburn
        (0.62, 0.62, 0.60),  # grey
        (0.85, 0.84, 0.80),  # white
    ],
    dtype=np.float32,
)
HAIR_COLOUR_WEIGHTS = np.array([0.34, 0.24, 0.14, 0.08, 0.08, 0.04, 0.05, 0.03])

HAIR_STYLES = ("bald", "buzz", "short", "medium", "long", "ponytail", "bun")
UPPER_TYPES = ("tank", "tshirt", "shirt", "hoodie", "jacket", "coat", "dress")
LOWER_TYPES = ("trousers", "jeans", "shorts", "skirt", "long_skirt")
PATTERNS = ("plain", "stripes", "checks", "logo", "two_tone")
SHOE_COLOURS = ("black", "white", "brown", "grey", "navy", "red", "beige")


@dataclass(frozen=True)
class ClothingStyle:
    """Distribution of identities' appearance for a domain (season, fashion, palette).

    Weights need not sum to one; they are normalised when sampled.
    """

    upper_types: dict[str, float] = field(
        default_factory=lambda: {
            "tank": 0.05,
            "tshirt": 0.30,
            "shirt": 0.15,
            "hoodie": 0.12,
            "jacket": 0.18,
            "coat": 0.10,
            "dress": 0.10,
        }
    )
    lower_types: dict[str, float] = field(
        default_factory=lambda: {
            "trousers": 0.35,
            "jeans": 0.30,
            "shorts": 0.15,
            "skirt": 0.12,
            "long_skirt": 0.08,
        }
    )
    patterns: dict[str, float] = field(
        default_factory=lambda: {
            "plain": 0.50,
            "stripes": 0.14,
            "checks": 0.10,
            "logo": 0.18,
            "two_tone": 0.08,
        }
    )
    bright_fraction: float = 0.40
    """Probability that a garment colour comes from the bright palette, not the neutral one."""
    lightness: float = 0.0
    """Shift of garment lightness in [-1, 1]: negative = darker (winter), positive = lighter."""
    backpack: float = 0.25
    shoulder_bag: float = 0.15
    hat: float = 0.12
    mask: float = 0.06
    glasses: float = 0.15
    scarf: float = 0.03


@dataclass(frozen=True)
class PersonModel:
    """One identity: every attribute that makes its appearance. Colours are sRGB in [0, 1]."""

    pid: int
    height: float
    build: float
    shoulder: float
    hip: float
    skin: tuple[float, float, float]
    hair_style: str
    hair: tuple[float, float, float]
    upper_type: str
    sleeve: int  # 0 none, 1 short, 2 long
    upper: tuple[float, float, float]
    upper2: tuple[float, float, float]
    upper_pattern: str
    pattern_scale: float
    lower_type: str
    lower: tuple[float, float, float]
    lower2: tuple[float, float, float]
    lower_pattern: str
    shoes: tuple[float, float, float]
    backpack: tuple[float, float, float] | None = None
    shoulder_bag: tuple[float, float, float] | None = None
    bag_side: int = 1
    hat: tuple[float, float, float] | None = None
    hat_type: str = "cap"
    mask: tuple[float, float, float] | None = None
    glasses: bool = False
    scarf: tuple[float, float, float] | None = None
    stride: float = 1.0
    arm_swing: float = 1.0
    twin_of: int = 0

    def describe(self) -> str:
        """A short human-readable description (for manifests and debugging)."""
        acc = [
            n
            for n, v in (
                ("backpack", self.backpack),
                ("bag", self.shoulder_bag),
                ("hat", self.hat),
                ("mask", self.mask),
                ("scarf", self.scarf),
            )
            if v is not None
        ]
        if self.glasses:
            acc.append("glasses")
        return (
            f"{self.upper_type}/{self.upper_pattern} {self.lower_type}/{self.lower_pattern} "
            f"hair={self.hair_style} h={self.height:.2f}" + (" +" + ",".join(acc) if acc else "")
        )


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    w = np.array([weights[k] for k in keys], dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError(f"weights must have a positive sum, got {weights}")
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _clamp(x, lo: float, hi: float) -> float:
    return float(min(max(float(x), lo), hi))


def _jitter_colour(rng: np.random.Generator, c, amount: float = 0.06, shift: float = 0.0):
    c = np.asarray(c, dtype=np.float64)
    c = c * (1.0 + rng.normal(0.0, amount)) + rng.normal(0.0, amount * 0.5, 3)
    if shift:
        c = c + shift * (1.0 - c) if shift > 0 else c * (1.0 + shift)
    return tuple(float(x) for x in np.clip(c, 0.02, 0.98))


def _garment_colour(rng: np.random.Generator, style: ClothingStyle):
    pal = BRIGHT if rng.random() < style.bright_fraction else NEUTRAL
    name = list(pal)[int(rng.integers(len(pal)))]
    return _jitter_colour(rng, pal[name], shift=0.6 * style.lightness)


def sample_person(pid: int, rng: np.random.Generator, style: ClothingStyle) -> PersonModel:
    """Draw one identity's attributes from ``style`` with ``rng`` (deterministic per rng state)."""
    female = rng.random() < 0.5
    height = _clamp(rng.normal(1.64 if female else 1.76, 0.07), 1.45, 1.98)
    build = _clamp(rng.normal(1.0, 0.09), 0.8, 1.3)
    shoulder = _clamp(rng.normal(0.93 if female else 1.04, 0.05), 0.8, 1.2)
    hip = _clamp(rng.normal(1.06 if female else 0.97, 0.04), 0.85, 1.2)
    skin = _jitter_colour(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 0.03)
    hs_w = (
        {
            "bald": 0.0,
            "buzz": 0.02,
            "short": 0.18,
            "medium": 0.25,
            "long": 0.3,
            "ponytail": 0.17,
            "bun": 0.08,
        }
        if female
        else {
            "bald": 0.08,
            "buzz": 0.22,
            "short": 0.5,
            "medium": 0.14,
            "long": 0.03,
            "ponytail": 0.03,
            "bun": 0.0,
        }
    )
    hair_style = _choice(rng, hs_w)
    hair = _jitter_colour(
        rng, HAIR_COLOURS[int(rng.choice(len(HAIR_COLOURS), p=HAIR_COLOUR_WEIGHTS))], 0.04
    )
    upper_w = dict(style.upper_types)
    lower_w = dict(style.lower_types)
    if not female:
        upper_w["dress"] = 0.0
        lower_w["skirt"] = lower_w.get("skirt", 0) * 0.02
        lower_w["long_skirt"] = 0.0
    upper_type = _choice(rng, upper_w)
    if upper_type == "dress":
        lower_type = "skirt" if rng.random() < 0.6 else "long_skirt"
    else:
        lower_type = _choice(rng, lower_w)
    sleeve = {"tank": 0, "tshirt": 1, "dress": int(rng.integers(0, 3))}.get(upper_type, 2)
    if upper_type == "shirt" and rng.random() < 0.35:
        sleeve = 1
    upper = _garment_colour(rng, style)
    upper2 = _garment_colour(rng, style)
    upper_pattern = _choice(rng, style.patterns)
    if upper_type == "dress":
        lower, lower2, lower_pattern = upper, upper2, upper_pattern
        if lower_pattern == "logo":
            lower_pattern = "plain"
    else:
        lower = _garment_colour(
            rng, dataclasses.replace(style, bright_fraction=style.bright_fraction * 0.4)
        )
        if lower_type in ("jeans",):
            lower = _jitter_colour(
                rng, NEUTRAL[["denim", "light_denim", "navy", "black"][int(rng.integers(4))]], 0.05
            )
        lower2 = _garment_colour(rng, style)
        lower_pattern = (
            "plain" if rng.random() < 0.85 else ("stripes" if rng.random() < 0.5 else "checks")
        )
    shoes = _jitter_colour(rng, _named_shoe(rng), 0.04)
    backpack = _garment_colour(rng, style) if rng.random() < style.backpack else None
    shoulder_bag = (
        _garment_colour(rng, style)
        if backpack is None and rng.random() < style.shoulder_bag
        else None
    )
    hat = _garment_colour(rng, style) if rng.random() < style.hat else None
    hat_type = "cap" if rng.random() < 0.6 else "beanie"
    mask = (
        (tuple(float(x) for x in (0.92, 0.93, 0.95)) if rng.random() < 0.6 else (0.55, 0.7, 0.85))
        if rng.random() < style.mask
        else None
    )
    glasses = bool(rng.random() < style.glasses)
    scarf = _garment_colour(rng, style) if rng.random() < style.scarf else None
    return PersonModel(
        pid=pid,
        height=height,
        build=build,
        shoulder=shoulder,
        hip=hip,
        skin=skin,
        hair_style=hair_style,
        hair=hair,
        upper_type=upper_type,
        sleeve=sleeve,
        upper=upper,
        upper2=upper2,
        upper_pattern=upper_pattern,
        pattern_scale=float(rng.uniform(0.6, 1.6)),
        lower_type=lower_type,
        lower=lower,
        lower2=lower2,
        lower_pattern=lower_pattern,
        shoes=shoes,
        backpack=backpack,
        shoulder_bag=shoulder_bag,
        bag_side=int(rng.choice([-1, 1])),
        hat=hat,
        hat_type=hat_type,
        mask=mask,
        glasses=glasses,
        scarf=scarf,
        stride=float(rng.uniform(0.75, 1.2)),
        arm_swing=float(rng.uniform(0.5, 1.3)),
    )


def _named_shoe(rng: np.random.Generator):
    name = SHOE_COLOURS[
        int(rng.choice(len(SHOE_COLOURS), p=[0.34, 0.26, 0.14, 0.1, 0.06, 0.04, 0.06]))
    ]
    return {**NEUTRAL, **BRIGHT}[name]


def make_twin(
    source: PersonModel, pid: int, rng: np.random.Generator, style: ClothingStyle
) -> PersonModel:
    """A *similar but different* identity (the paper's hard negative): ``source`` with one or
    two attributes changed (shoes, bag, hair, a garment shade, the pattern or the hat)."""
    changes: dict = {"pid": pid, "twin_of": source.pid}
    options = ["shoes", "bag", "hair", "lower", "pattern", "hat", "height", "upper_shade"]
    for what in rng.choice(options, size=int(rng.integers(1, 3)), replace=False):
        if what == "shoes":
            changes["shoes"] = _jitter_colour(rng, _named_shoe(rng), 0.04)
        elif what == "bag":
            if source.backpack is not None:
                changes["backpack"] = None if rng.random() < 0.5 else _garment_colour(rng, style)
            else:
                changes["backpack"] = _garment_colour(rng, style)
                changes["shoulder_bag"] = None
        elif what == "hair":
            changes["hair_style"] = HAIR_STYLES[int(rng.integers(1, len(HAIR_STYLES)))]
            changes["hair"] = _jitter_colour(
                rng, HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))]
            )
        elif what == "lower" and source.upper_type != "dress":
            changes["lower"] = _garment_colour(rng, style)
        elif what == "pattern":
            changes["upper_pattern"] = "plain" if source.upper_pattern != "plain" else "logo"
        elif what == "hat":
            changes["hat"] = None if source.hat is not None else _garment_colour(rng, style)
        elif what == "height":
            changes["height"] = float(
                np.clip(source.height + rng.choice([-1, 1]) * 0.12, 1.45, 1.98)
            )
        elif what == "upper_shade":
            c = np.asarray(source.upper)
            changes["upper"] = tuple(
                float(x) for x in np.clip(c * rng.choice([0.6, 1.5]), 0.02, 0.98)
            )
    changes["skin"] = _jitter_colour(rng, source.skin, 0.02)
    return dataclasses.replace(source, **changes)


# ----------------------------------------------------------------------------- materials
# Pattern codes understood by the renderer's shader.
PAT_PLAIN, PAT_STRIPES, PAT_CHECKS, PAT_LOGO, PAT_TWO_TONE, PAT_HEAD, PAT_JEANS = range(7)
_PATTERN_CODE = {
    "plain": PAT_PLAIN,
    "stripes": PAT_STRIPES,
    "checks": PAT_CHECKS,
    "logo": PAT_LOGO,
    "two_tone": PAT_TWO_TONE,
}

# Strap overlay codes for the upper garment.
STRAP_NONE, STRAP_BACKPACK, STRAP_DIAGONAL = 0, 1, 2


@dataclass
class Body:
    """A posed body: K round cones and a material table, in the body frame (metres).

    a, b: (K, 3) end points; ra, rb: (K,) radii; mat_lo, mat_hi: (K,) material index used
    below / above ``split`` (K,) along the axis parameter t in [0, 1];
    colour: (M, 3) linear RGB; colour2: (M, 3) second colour; pattern: (M,) pattern codes;
    scale: (M,) pattern period (metres); head_centre: (3,); params: person-level shader
    parameters (hair style, strap mode ...).
    """

    a: np.ndarray
    b: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    mat_lo: np.ndarray
    mat_hi: np.ndarray
    split: np.ndarray
    colour: np.ndarray
    colour2: np.ndarray
    pattern: np.ndarray
    scale: np.ndarray
    head_centre: np.ndarray
    head_radius: float
    params: dict


def srgb_to_linear(c) -> np.ndarray:
    """sRGB in [0, 1] -> linear RGB (float32), the space the renderer shades in."""
    c = np.asarray(c, dtype=np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


class _Builder:
    def __init__(self) -> None:
        self.prims: list[tuple] = []
        self.mats: list[tuple] = []
        self._mat_index: dict = {}

    def mat(self, colour, colour2=None, pattern=PAT_PLAIN, scale=0.1) -> int:
        key = (tuple(colour), tuple(colour2) if colour2 is not None else None, pattern, scale)
        if key not in self._mat_index:
            self._mat_index[key] = len(self.mats)
            self.mats.append((colour, colour2 if colour2 is not None else colour, pattern, scale))
        return self._mat_index[key]

    def cone(self, a, b, ra, rb, lo, hi=None, split=2.0) -> None:
        self.prims.append((a, b, ra, rb, lo, lo if hi is None else hi, split))


def _rot_x(v: np.ndarray, ang: float) -> np.ndarray:
    """Rotate a direction about the body x axis (positive = swing forward, towards +y)."""
    c, s = math.cos(ang), math.sin(ang)
    return np.array([v[0], v[1] * c - v[2] * s, v[1] * s + v[2] * c])


def build_body(p: PersonModel, phase: float, gait: float = 1.0, lean: float = 0.0) -> Body:
    """Pose ``p`` at walking ``phase`` (radians); ``gait`` in [0, 1] scales the stride
    (0 = standing). Returns the round cones and materials in the body frame."""
    H = p.height
    bw = p.build
    B = _Builder()
    skin = B.mat(p.skin)
    hair_m = B.mat(p.hair)
    up_pat = _PATTERN_CODE[p.upper_pattern]
    upper = B.mat(p.upper, p.upper2, up_pat, 0.05 * p.pattern_scale)
    sleeve_m = B.mat(
        p.upper2 if p.upper_pattern == "two_tone" else p.upper,
        p.upper2,
        PAT_STRIPES if p.upper_pattern == "stripes" else PAT_PLAIN,
        0.05 * p.pattern_scale,
    )
    lo_pat = {"plain": PAT_PLAIN, "stripes": PAT_STRIPES, "checks": PAT_CHECKS}.get(
        p.lower_pattern, PAT_PLAIN
    )
    if p.lower_type == "jeans" and lo_pat == PAT_PLAIN:
        lo_pat = PAT_JEANS
    lower = B.mat(p.lower, p.lower2, lo_pat, 0.06 * p.pattern_scale)
    shoes = B.mat(p.shoes)
    head_m = B.mat(p.skin, p.hair, PAT_HEAD, 0.0)

    # --- gait angles
    st = 0.42 * p.stride * gait
    hip_l = st * math.sin(phase)
    hip_r = st * math.sin(phase + math.pi)
    knee_l = 0.08 + gait * 0.75 * max(0.0, math.sin(phase + 1.2)) ** 2
    knee_r = 0.08 + gait * 0.75 * max(0.0, math.sin(phase + math.pi + 1.2)) ** 2
    arm = 0.38 * p.arm_swing * gait
    sh_l = -arm * math.sin(phase)  # left arm swings with the right leg
    sh_r = -arm * math.sin(phase + math.pi)

    down = np.array([0.0, 0.0, -1.0])
    thigh_len, shin_len = 0.245 * H, 0.245 * H
    hip_z = 0.515 * H
    hx = 0.052 * H * p.hip * (0.5 + 0.5 * bw)

    def leg(side: float, a_hip: float, a_knee: float):
        hip = np.array([side * hx, 0.0, hip_z])
        d1 = _rot_x(down, a_hip)
        knee = hip + thigh_len * d1
        d2 = _rot_x(down, a_hip - a_knee)
        ankle = knee + shin_len * d2
        return hip, knee, ankle

    legs = [leg(-1.0, hip_l, knee_l), leg(1.0, hip_r, knee_r)]
    # keep the lower ankle on the ground (foot height ~0.045 H)
    lift = 0.042 * H - min(legs[0][2][2], legs[1][2][2])
    bob = np.array([0.0, 0.0, lift])
    legs = [tuple(j + bob for j in lg) for lg in legs]
    z0 = hip_z + lift  # pelvis height after the bob
    lean_v = np.array([0.0, math.sin(lean), 0.0])

    def up(z: float, x: float = 0.0, y: float = 0.0) -> np.ndarray:
        """A trunk point at height z above the pelvis joint, tilted by the lean."""
        return np.array([x, y, z0]) + (z - hip_z) * (np.array([0.0, 0.0, 1.0]) + lean_v)

    # --- trunk: two overlapping round cones per level (wide from the front, narrow from the side)
    r_waist = 0.056 * H * bw
    r_chest = 0.060 * H * bw
    sx_w = 0.040 * H * p.hip * bw
    sx_c = 0.050 * H * p.shoulder * bw
    for side in (-1.0, 1.0):
        B.cone(
            up(0.50 * H, side * sx_w * 1.05),
            up(0.575 * H, side * sx_w),
            r_waist * 1.02 * p.hip,
            r_waist,
            lower,
        )
        B.cone(
            up(0.575 * H, side * sx_w), up(0.785 * H, side * sx_c), r_waist, r_chest * 0.95, upper
        )
    sh_y = 0.805 * H
    sx_s = 0.112 * H * p.shoulder * (0.6 + 0.4 * bw)
    B.cone(up(sh_y, -sx_s * 0.82), up(sh_y, sx_s * 0.82), 0.038 * H * bw, 0.038 * H * bw, upper)
    # neck & head
    neck_m = B.mat(p.scarf) if p.scarf is not None else skin
    B.cone(
        up(0.80 * H),
        up(0.875 * H, y=0.005 * H),
        0.026 * H * (1.5 if p.scarf else 1.0),
        0.024 * H,
        neck_m,
    )
    head_c = up(0.925 * H, y=0.008 * H)
    head_r = 0.060 * H
    B.cone(
        head_c - np.array([0.0, -0.004 * H, 0.018 * H]),
        head_c + np.array([0.0, 0.0, 0.010 * H]),
        head_r * 0.92,
        head_r * 0.97,
        head_m,
    )
    if p.hair_style in ("long", "medium"):
        ln = 0.13 * H if p.hair_style == "long" else 0.05 * H
        B.cone(
            head_c + np.array([0.0, -0.016 * H, 0.0]),
            head_c + np.array([0.0, -0.03 * H, -ln]),
            head_r * 0.9,
            head_r * (0.75 if p.hair_style == "long" else 0.85),
            hair_m,
        )
    elif p.hair_style == "ponytail":
        B.cone(
            head_c + np.array([0.0, -0.055 * H, 0.01 * H]),
            head_c + np.array([0.0, -0.075 * H, -0.09 * H]),
            0.018 * H,
            0.012 * H,
            hair_m,
        )
    elif p.hair_style == "bun":
        B.cone(
            head_c + np.array([0.0, -0.04 * H, 0.035 * H]),
            head_c + np.array([0.0, -0.045 * H, 0.04 * H]),
            0.026 * H,
            0.026 * H,
            hair_m,
        )
    if p.hat is not None:
        hat_m = B.mat(p.hat)
        if p.hat_type == "cap":
            B.cone(
                head_c + np.array([0.0, 0.045 * H, 0.03 * H]),
                head_c + np.array([0.0, 0.085 * H, 0.026 * H]),
                0.012 * H,
                0.008 * H,
                hat_m,
            )
        else:
            B.cone(
                head_c + np.array([0.0, 0.0, 0.03 * H]),
                head_c + np.array([0.0, 0.0, 0.045 * H]),
                head_r * 0.95,
                head_r * 0.8,
                hat_m,
            )

    # --- arms
    ua_len, fa_len = 0.175 * H, 0.150 * H
    for side, a_sh in ((-1.0, sh_l), (1.0, sh_r)):
        sh = up(sh_y, side * sx_s)
        d1 = _rot_x(np.array([side * 0.13, 0.0, -1.0]) / math.hypot(0.13, 1.0), a_sh)
        elbow = sh + ua_len * d1
        d2 = _rot_x(
            np.array([side * 0.05, 0.0, -1.0]) / math.hypot(0.05, 1.0),
            a_sh + 0.25 + 0.3 * gait * max(0.0, -a_sh),
        )
        wrist = elbow + fa_len * d2
        hand = wrist + 0.075 * H * d2
        r_ua = 0.029 * H * bw * (1.15 if p.upper_type in ("coat", "jacket", "hoodie") else 1.0)
        r_fa = 0.022 * H * bw * (1.15 if p.upper_type in ("coat", "jacket", "hoodie") else 1.0)
        if p.sleeve == 2:
            B.cone(sh, elbow, r_ua, r_ua * 0.85, sleeve_m)
            B.cone(elbow, wrist, r_fa, r_fa * 0.85, sleeve_m)
        elif p.sleeve == 1:
            B.cone(sh, elbow, r_ua, r_ua * 0.85, sleeve_m, skin, 0.45)
            B.cone(elbow, wrist, r_fa * 0.9, r_fa * 0.75, skin)
        else:
            B.cone(sh, elbow, r_ua * 0.9, r_ua * 0.8, skin)
            B.cone(elbow, wrist, r_fa * 0.9, r_fa * 0.75, skin)
        B.cone(wrist, hand, 0.017 * H, 0.014 * H, skin)

    # --- legs, lower garment, shoes
    r_th, r_kn, r_an = 0.050 * H * bw * p.hip, 0.034 * H * bw, 0.023 * H * bw
    for hip, knee, ankle in legs:
        if p.lower_type in ("trousers", "jeans"):
            B.cone(hip, knee, r_th, r_kn, lower)
            B.cone(knee, ankle, r_kn * 0.95, r_an * 1.15, lower)
        elif p.lower_type == "shorts":
            B.cone(hip, knee, r_th, r_kn, lower, skin, 0.55)
            B.cone(knee, ankle, r_kn * 0.9, r_an, skin)
        else:  # skirts: bare (or tights) legs under a cone
            leg_m = skin if p.lower_type == "skirt" else lower
            B.cone(hip, knee, r_th * 0.85, r_kn * 0.9, leg_m)
            B.cone(knee, ankle, r_kn * 0.85, r_an, leg_m)
        heel = ankle + np.array([0.0, -0.02 * H, -0.025 * H])
        fwd = knee - ankle
        toe_dir = np.array([0.0, 1.0, 0.0]) if fwd[1] > -0.2 else np.array([0.0, 0.9, 0.3])
        toe = heel + 0.14 * H * toe_dir / np.linalg.norm(toe_dir)
        B.cone(heel, toe, 0.024 * H, 0.021 * H, shoes)
    if p.lower_type in ("skirt", "long_skirt"):
        ln = 0.24 * H if p.lower_type == "skirt" else 0.42 * H
        top = up(0.56 * H)
        B.cone(
            top,
            top - np.array([0.0, 0.0, ln]),
            0.085 * H * p.hip * bw,
            (0.105 if p.lower_type == "skirt" else 0.095) * H * p.hip * (0.75 + 0.25 * gait),
            lower,
        )
    if p.upper_type == "coat":
        top = up(0.58 * H)
        B.cone(
            top,
            top - np.array([0.0, 0.0, 0.22 * H]),
            0.088 * H * bw * p.hip,
            0.10 * H * bw * p.hip,
            upper,
        )
    elif p.upper_type in ("jacket", "hoodie"):
        top = up(0.58 * H)
        B.cone(
            top,
            top - np.array([0.0, 0.0, 0.06 * H]),
            0.083 * H * bw * p.hip,
            0.086 * H * bw * p.hip,
            upper,
        )
    if p.upper_type == "hoodie":
        hood = B.mat(p.upper)
        B.cone(up(0.82 * H, y=-0.045 * H), up(0.86 * H, y=-0.05 * H), 0.045 * H, 0.04 * H, hood)

    # --- accessories
    strap = STRAP_NONE
    strap_colour = np.zeros(3, np.float32)
    if p.backpack is not None:
        bp = B.mat(p.backpack, tuple(0.6 * np.asarray(p.backpack)), PAT_PLAIN, 0.1)
        back_y = -(r_chest + 0.045 * H) * 1.0
        for side in (-1.0, 1.0):
            B.cone(
                up(0.62 * H, side * 0.025 * H, back_y),
                up(0.77 * H, side * 0.022 * H, back_y),
                0.05 * H,
                0.046 * H,
                bp,
            )
        strap, strap_colour = STRAP_BACKPACK, srgb_to_linear(np.asarray(p.backpack) * 0.7)
    elif p.shoulder_bag is not None:
        bag = B.mat(p.shoulder_bag)
        s = float(p.bag_side)
        side_x = s * (sx_w + r_waist + 0.025 * H)
        B.cone(
            up(0.50 * H, side_x, -0.01 * H),
            up(0.57 * H, side_x, -0.005 * H),
            0.035 * H,
            0.032 * H,
            bag,
        )
        strap, strap_colour = STRAP_DIAGONAL, srgb_to_linear(np.asarray(p.shoulder_bag) * 0.8)

    prims = B.prims
    a = np.array([q[0] for q in prims], dtype=np.float32)
    b = np.array([q[1] for q in prims], dtype=np.float32)
    mats = B.mats
    colour = srgb_to_linear(np.array([m[0] for m in mats], dtype=np.float32))
    colour2 = srgb_to_linear(np.array([m[1] for m in mats], dtype=np.float32))
    hair_lin = srgb_to_linear(np.asarray(p.hair, dtype=np.float32))
    params = {
        "hair_style": HAIR_STYLES.index(p.hair_style),
        "hair": hair_lin,
        "hat": None if p.hat is None else srgb_to_linear(p.hat),
        "hat_type": p.hat_type,
        "mask": None if p.mask is None else srgb_to_linear(p.mask),
        "glasses": p.glasses,
        "strap": strap,
        "strap_colour": strap_colour,
        "bag_side": p.bag_side,
        "logo": srgb_to_linear(np.asarray(p.upper2)),
        "upper_mat": upper,
        "height": H,
    }
    return Body(
        a=a,
        b=b,
        ra=np.array([q[2] for q in prims], dtype=np.float32),
        rb=np.array([q[3] for q in prims], dtype=np.float32),
        mat_lo=np.array([q[4] for q in prims], dtype=np.int32),
        mat_hi=np.array([q[5] for q in prims], dtype=np.int32),
        split=np.array([q[6] for q in prims], dtype=np.float32),
        colour=colour,
        colour2=colour2,
        pattern=np.array([m[2] for m in mats], dtype=np.int32),
        scale=np.array([m[3] for m in mats], dtype=np.float32),
        head_centre=head_c.astype(np.float32),
        head_radius=float(head_r),
        params=params,
    )
