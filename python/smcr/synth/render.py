"""The renderer: a vectorised NumPy ray caster for round-cone bodies in procedural scenes.

One image is one detection crop. Its pixels are the frame pixels inside the (jittered) box,
sampled at the output resolution, so the crop *is* the box resized to the output size.

* Background: every crop pixel is a perspective ray of the location's camera, intersected
  with the ground plane, the backdrop plane (and an indoor ceiling), textured procedurally,
  lit by the sun (with the person's cast shadow), the sky and night lamps, fogged by distance.
* Person: weak perspective about the person's centre (exact silhouettes of every round cone
  under orthographic projection along the camera-to-person ray). Each cone is rasterised
  only over its own bounding window: an exact 2-D signed distance to the cone's silhouette
  gives anti-aliased coverage; a per-pixel depth test picks the nearest surface; normals come
  from the swept sphere; a shader evaluates garments, patterns, hair and face in the body
  frame; Lambert sun + hemispheric sky + lamps.
* Occluders (poles, cars, bushes, railings, bins, other pedestrians) in front of the person;
  the labeler gets the visible fraction.
* Camera: rain streaks, lightning, auto exposure, white balance, tone curve, saturation,
  contrast, blur, sensor noise; low-resolution captures are upsampled to the output size.

Everything is a pure function of the :class:`ImageSpec`, so the same spec gives the same
bytes in any process.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from .person import (
    PAT_CHECKS,
    PAT_HEAD,
    PAT_JEANS,
    PAT_LOGO,
    PAT_STRIPES,
    PAT_TWO_TONE,
    STRAP_BACKPACK,
    Body,
    PersonModel,
    build_body,
)
from .scene import (
    CameraStyle,
    Lighting,
    Location,
    Viewpoint,
    _lin,
    backdrop_albedo,
    ground_albedo,
    hash2,
    noise2,
)

UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Occluder:
    """Something between the camera and the person.

    x: horizontal centre relative to the person's centre (metres, person-view frame, + right);
    width: metres; height: metres above the person's feet (top edge); colour: linear RGB;
    side: for cars, which side the car comes from (-1 / +1); other: for pedestrians, the
    person model and walking phase; depth: metres in front of the person.
    """

    kind: str
    x: float
    width: float
    height: float
    colour: tuple[float, float, float]
    side: int = 1
    depth: float = 1.0
    other: tuple[PersonModel, float] | None = None


@dataclass(frozen=True)
class ImageSpec:
    """Every parameter of one image; :func:`render_image` is a pure function of it."""

    person: PersonModel | None  # None for a distractor (background only)
    phase: float
    gait: float
    location: Location
    view: Viewpoint
    light: Lighting
    position: tuple[float, float]
    heading: float
    size: tuple[int, int]
    render_height: int
    margins: tuple[float, float, float, float]  # top, bottom, left, right (x box height)
    box_aspect: float | None
    occluders: tuple[Occluder, ...] = ()
    frame_size: tuple[int, int] = (1080, 1920)
    seed: int = 0
    lean: float = 0.0


@dataclass
class RenderResult:
    """A rendered crop and its labels.

    image: (H, W, 3) uint8; alpha: (H, W) float32 person coverage before occlusion;
    visible: (H, W) float32 person coverage after occlusion; box / tight: (x, y, w, h) in
    frame pixels (tight = around the projected body); azimuth: degrees, 0 = the camera sees
    the person's front, 90 = the person's right side; occlusion: hidden fraction of the
    person; distance: metres from the camera; render_height: pixels of the capture before
    upsampling.
    """

    image: np.ndarray
    alpha: np.ndarray
    visible: np.ndarray
    box: tuple[float, float, float, float]
    tight: tuple[float, float, float, float]
    azimuth: float
    occlusion: float
    distance: float
    render_height: int
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- geometry
def _normalize(v: np.ndarray) -> np.ndarray:
    return v / math.sqrt(float(v @ v))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


def camera_pose(view: Viewpoint) -> tuple[np.ndarray, np.ndarray, float]:
    """Camera centre C (3,), world-to-camera rotation R (3, 3) with rows (right, down,
    forward), and the focal length in pixels of a 1920-pixel-wide frame."""
    C = np.array(
        [
            view.distance * math.cos(view.azimuth),
            view.distance * math.sin(view.azimuth),
            view.height,
        ]
    )
    f = _normalize(np.array([0.0, 0.0, 0.9]) - C)
    r = _normalize(_cross(f, UP))
    d = _cross(f, r)
    focal = 960.0 / math.tan(view.hfov / 2.0)
    return C, np.stack([r, d, f]), focal


def _look_rotation(forward: np.ndarray) -> np.ndarray:
    f = _normalize(forward)
    r = _normalize(_cross(f, UP))
    return np.stack([r, _cross(f, r), f])


def _body_rotation(heading: float) -> np.ndarray:
    """Body-to-world rotation: columns = body x (right), y (forward), z (up) in the world."""
    c, s = math.cos(heading), math.sin(heading)
    return np.array([[s, c, 0.0], [-c, s, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class _PersonView:
    M: np.ndarray  # body -> person-view rotation
    o: np.ndarray  # person-view position of the body origin (feet)
    a: np.ndarray  # (K, 3) cone ends in person view
    b: np.ndarray
    body: Body
    u_c: float  # frame position of the person centre
    v_c: float
    s: float  # frame pixels per metre
    dist: float
    R_p: np.ndarray
    scale: float = 1.0  # >1 for a body drawn nearer than its nominal place (occluders)


def _person_view(
    body: Body, height: float, position, heading, C, R, focal, frame_size, offset=(0.0, 0.0, 0.0)
) -> _PersonView:
    P0 = np.array([position[0], position[1], 0.0]) + np.asarray(offset)
    Pc = P0 + np.array([0.0, 0.0, 0.5 * height])
    R_p = _look_rotation(Pc - C)
    R_b = _body_rotation(heading)
    M = R_p @ R_b
    o = R_p @ (P0 - Pc)
    pc = R @ (Pc - C)
    hf, wf = frame_size
    u_c = wf / 2.0 + focal * pc[0] / pc[2] * (wf / 1920.0)
    v_c = hf / 2.0 + focal * pc[1] / pc[2] * (wf / 1920.0)
    dist = float(np.linalg.norm(Pc - C))
    s = focal * (wf / 1920.0) / dist
    a = body.a @ M.T + o
    b = body.b @ M.T + o
    return _PersonView(
        M=M,
        o=o,
        a=a.astype(np.float32),
        b=b.astype(np.float32),
        body=body,
        u_c=u_c,
        v_c=v_c,
        s=s,
        dist=dist,
        R_p=R_p,
    )


def tight_box(pv: _PersonView) -> tuple[float, float, float, float]:
    """Exact (x0, y0, x1, y1) frame box around the projected body (the union of the cones'
    silhouettes: the extremes of a linearly-varying radius lie at the cone ends)."""
    ra, rb = pv.body.ra, pv.body.rb
    x0 = min((pv.a[:, 0] - ra).min(), (pv.b[:, 0] - rb).min())
    x1 = max((pv.a[:, 0] + ra).max(), (pv.b[:, 0] + rb).max())
    y0 = min((pv.a[:, 1] - ra).min(), (pv.b[:, 1] - rb).min())
    y1 = max((pv.a[:, 1] + ra).max(), (pv.b[:, 1] + rb).max())
    return (pv.u_c + pv.s * x0, pv.v_c + pv.s * y0, pv.u_c + pv.s * x1, pv.v_c + pv.s * y1)


def jitter_box(tight, margins, aspect, rng_unit: float = 0.5) -> tuple[float, float, float, float]:
    """Grow the tight (x0, y0, x1, y1) box by the margins (x its height), then, for a fixed
    ``aspect`` (width / height), grow the short side; the result always contains ``tight``."""
    x0, y0, x1, y1 = tight
    h = y1 - y0
    top, bottom, left, right = margins
    x0, x1, y0, y1 = x0 - left * h * 0.5, x1 + right * h * 0.5, y0 - top * h, y1 + bottom * h
    if aspect is not None:
        w, h = x1 - x0, y1 - y0
        if w < aspect * h:
            extra = aspect * h - w
            x0 -= extra * rng_unit
            x1 += extra * (1.0 - rng_unit)
        else:
            extra = w / aspect - h
            y0 -= extra * 0.5
            y1 += extra * 0.5
    return (x0, y0, x1 - x0, y1 - y0)


# ----------------------------------------------------------------------------- rasteriser
@dataclass
class _Buffers:
    alpha: np.ndarray  # (H, W) coverage of the union of the cones
    prim: np.ndarray  # (H, W) nearest cone, -1 = none
    t: np.ndarray  # (H, W) its axis parameter


def _cone_t(px, py, ex, ey, r1, r2):
    """Axis parameter of the sphere of a round cone responsible for pixel offsets (px, py)
    from end a: exact for the 2-D silhouette (the 'uneven capsule' distance)."""
    h = math.hypot(ex, ey)
    if h > 1e-9 and abs(r1 - r2) < h:
        ux, uy = ex / h, ey / h
        sb = (r1 - r2) / h
        k = sb / math.sqrt(1.0 - sb * sb)
        along = px * ux + py * uy
        perp = np.abs(px * uy - py * ux)
        t = (along - perp * k) * (1.0 / h)
        np.clip(t, 0.0, 1.0, out=t)
        return t
    # one end's disc contains the other: the bigger end decides
    return np.full(
        np.broadcast_shapes(np.shape(px), np.shape(py)), 0.0 if r1 >= r2 else 1.0, np.float32
    )


def rasterize(a, b, ra, rb, X, Y, fp) -> _Buffers:
    """Rasterise round cones seen along +z (orthographic) on the pixel grid X (W,), Y (H,).

    a, b: (K, 3) end points (x right, y down, z depth); ra, rb: (K,) radii; fp: pixel
    footprint (same units) used for the anti-aliasing ramp. Returns the coverage, the nearest
    cone per pixel (-1 = none) and its axis parameter t. A cone claims a pixel it covers by at
    least half and is nearest at; a pixel covered only by edges takes the first such cone.
    """
    H, W = Y.shape[0], X.shape[0]
    alpha = np.zeros((H, W), np.float32)
    prim = np.full((H, W), -1, np.int32)
    tb = np.zeros((H, W), np.float32)
    zb = np.full((H, W), np.inf, np.float32)
    x0 = float(X[0])
    dx = float(X[1] - X[0]) if W > 1 else 1.0
    y0 = float(Y[0])
    dy = float(Y[1] - Y[0]) if H > 1 else 1.0
    inv_fp = 1.0 / fp
    A = a.tolist()
    B = b.tolist()
    RA = ra.tolist()
    RB = rb.tolist()
    for k in range(len(A)):
        ax, ay, az = A[k]
        bx, by, bz = B[k]
        r1, r2 = RA[k], RB[k]
        rmax = max(r1, r2) + fp
        j0 = max(int((min(ax, bx) - rmax - x0) / dx), 0)
        j1 = min(int((max(ax, bx) + rmax - x0) / dx) + 2, W)
        i0 = max(int((min(ay, by) - rmax - y0) / dy), 0)
        i1 = min(int((max(ay, by) + rmax - y0) / dy) + 2, H)
        if j0 >= j1 or i0 >= i1:
            continue
        px = X[j0:j1][None, :] - np.float32(ax)  # (1, w)
        py = Y[i0:i1][:, None] - np.float32(ay)  # (h, 1)
        ex, ey = bx - ax, by - ay
        t = _cone_t(px, py, ex, ey, r1, r2)
        qx = px - t * np.float32(ex)
        qy = py - t * np.float32(ey)
        r = t * np.float32(r2 - r1) + np.float32(r1)
        d2 = qx * qx + qy * qy
        cov = (r - np.sqrt(d2)) * np.float32(inv_fp) + np.float32(0.5)
        np.clip(cov, 0.0, 1.0, out=cov)
        win = (slice(i0, i1), slice(j0, j1))
        aw = alpha[win]
        np.maximum(aw, cov, out=aw)
        z = t * np.float32(bz - az) + np.float32(az) - np.sqrt(np.maximum(r * r - d2, 0.0))
        zw = zb[win]
        pw = prim[win]
        strong = (cov >= 0.5) & (z < zw)
        claim = strong | ((cov > 0.0) & (pw < 0))
        np.copyto(zw, z, where=strong)
        np.copyto(pw, k, where=claim)
        np.copyto(tb[win], t, where=claim)
    return _Buffers(alpha=alpha, prim=prim, t=tb)


def _surface(pv: _PersonView, k, t, xs, ys):
    """Normal (N, 3) and depth (N,) in the person view of cone k at parameter t under the
    pixels (xs, ys): the point of the cone's swept sphere seen at that pixel."""
    a, b = pv.a[k], pv.b[k]
    ra, rb = pv.body.ra[k], pv.body.rb[k]
    c = a + t[:, None] * (b - a)
    r = ra + t * (rb - ra)
    qx, qy = xs - c[:, 0], ys - c[:, 1]
    d2 = qx * qx + qy * qy
    dist = np.sqrt(d2)
    dz = np.sqrt(np.maximum(r * r - d2, 0.0))
    sc = np.minimum(1.0, r / np.maximum(dist, 1e-9)) / r
    n = np.stack([qx * sc, qy * sc, -dz / r], 1).astype(np.float32)
    return n, (c[:, 2] - dz).astype(np.float32)


def _shade_person(
    pv: _PersonView, buf: _Buffers, X, Y, light: Lighting, lamp_vec, sun_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Radiance (N, 3) of the covered pixels and their flat indices."""
    body = pv.body
    idx = np.flatnonzero(buf.prim.ravel() >= 0)
    if idx.size == 0:
        return np.zeros((0, 3), np.float32), idx
    H, W = buf.prim.shape
    iy, ix = np.divmod(idx, W)
    k = buf.prim.ravel()[idx]
    t = buf.t.ravel()[idx]
    n_pv, z = _surface(pv, k, t, X[ix], Y[iy])
    p_pv = np.stack([X[ix], Y[iy], z], 1).astype(np.float32)
    p_body = ((p_pv - pv.o) / pv.scale) @ pv.M  # (N, 3) body frame: x right, y forward, z up
    n_body = n_pv @ pv.M
    mat = np.where(t < body.split[k], body.mat_lo[k], body.mat_hi[k])
    col = body.colour[mat].copy()
    col2 = body.colour2[mat]
    pat = body.pattern[mat]
    sc = np.maximum(body.scale[mat], 1e-3)
    Hgt = body.params["height"]
    bx, by, bz = p_body[:, 0], p_body[:, 1], p_body[:, 2]

    sel = pat == PAT_STRIPES
    if sel.any():
        on = np.mod(bz[sel] / sc[sel], 1.0) < 0.45
        col[sel] = np.where(on[:, None], col2[sel], col[sel])
    sel = pat == PAT_CHECKS
    if sel.any():
        arc = np.arctan2(bx[sel], by[sel]) * 0.13
        a1 = np.mod(bz[sel] / sc[sel], 1.0) < 0.3
        a2 = np.mod(arc / sc[sel], 1.0) < 0.3
        mix = (a1.astype(np.float32) + a2.astype(np.float32))[:, None] * 0.5
        col[sel] = col[sel] * (1.0 - mix) + col2[sel] * mix
    sel = pat == PAT_LOGO
    if sel.any():
        lx = bx[sel] / (0.05 * Hgt)
        lz = (bz[sel] - 0.70 * Hgt) / (0.045 * Hgt)
        on = (by[sel] > 0.0) & (n_body[sel, 1] > 0.25) & (lx * lx + lz * lz < 1.0)
        inner = on & (np.abs(lz) < 0.35)
        c2 = col2[sel]
        col[sel] = np.where(
            on[:, None], np.where(inner[:, None], col[sel] * 0.5 + 0.5, c2), col[sel]
        )
    sel = pat == PAT_TWO_TONE
    if sel.any():
        on = bz[sel] > 0.71 * Hgt
        col[sel] = np.where(on[:, None], col2[sel], col[sel])
    sel = pat == PAT_JEANS
    if sel.any():
        col[sel] = col[sel] * (0.85 + 0.3 * noise2(bx[sel] * 40.0 + 3.0, bz[sel] * 8.0))[:, None]
    strap = body.params["strap"]
    if strap:
        sel = mat == body.params["upper_mat"]
        if sel.any():
            if strap == STRAP_BACKPACK:
                on = (
                    (np.abs(np.abs(bx[sel]) - 0.065 * Hgt) < 0.014 * Hgt)
                    & (by[sel] > 0.0)
                    & (bz[sel] > 0.62 * Hgt)
                )
            else:
                side = body.params["bag_side"]
                on = np.abs(side * bx[sel] + (bz[sel] - 0.66 * Hgt) * 0.85) < 0.014 * Hgt
            col[sel] = np.where(on[:, None], body.params["strap_colour"], col[sel])
    sel = pat == PAT_HEAD
    if sel.any():
        col[sel] = _head_colours(body, p_body[sel], col[sel])

    # lighting
    L = np.asarray(light.sun_dir, np.float32)
    L_pv = (pv.R_p @ L).astype(np.float32)
    U_pv = (pv.R_p @ UP).astype(np.float32)
    ndl = np.clip(n_pv @ L_pv, 0.0, None)[:, None]
    ndu = (n_pv @ U_pv)[:, None]
    sun = np.asarray(light.sun, np.float32) * (sun_scale if L[2] > 0.02 else 0.0)
    irr = (
        sun * ndl
        + np.asarray(light.sky, np.float32) * (0.62 + 0.38 * ndu)
        + np.asarray(light.bounce, np.float32) * (0.5 - 0.5 * ndu)
    )
    if light.lamp > 0:
        irr = irr + lamp_vec * (0.55 + 0.45 * ndu)
    # soft ambient occlusion: body parts facing away from the camera and low on the body
    ao = 0.8 + 0.2 * np.clip(bz / (0.5 * Hgt), 0.0, 1.0)[:, None]
    return (col * irr * ao).astype(np.float32), idx


def _head_colours(body: Body, p: np.ndarray, skin: np.ndarray) -> np.ndarray:
    d = p - body.head_centre
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    P = body.params
    style = P["hair_style"]  # bald, buzz, short, medium, long, ponytail, bun
    hairline = 0.42 - 0.12 * np.clip(dy, 0, 1)
    if style == 0:
        hair = np.zeros_like(dz, bool)
    elif style == 1:
        hair = (dz > 0.45) | ((dy < -0.4) & (dz > 0.05))
    elif style == 2:
        hair = (dz > hairline) | ((dy < -0.25) & (dz > -0.25)) | ((np.abs(dx) > 0.85) & (dz > 0.1))
    else:
        hair = (
            (dz > hairline - 0.05)
            | ((dy < 0.05) & (dz > -0.75))
            | ((np.abs(dx) > 0.7) & (dz > -0.5))
        )
    col = skin.copy()
    eye = (dy > 0.72) & (np.abs(np.abs(dx) - 0.33) < 0.12) & (dz > 0.02) & (dz < 0.16)
    col = np.where(eye[:, None], np.float32(0.02), col)
    mouth = (dy > 0.8) & (np.abs(dx) < 0.2) & (dz > -0.42) & (dz < -0.33)
    col = np.where(mouth[:, None], skin * np.array([0.55, 0.35, 0.35], np.float32), col)
    if P["glasses"]:
        gl = (dy > 0.55) & (dz > -0.02) & (dz < 0.2) & (np.abs(dx) < 0.6)
        col = np.where(gl[:, None], np.float32(0.015), col)
    if P["mask"] is not None:
        mk = (dy > 0.3) & (dz < -0.1) & (dz > -0.8)
        col = np.where(mk[:, None], P["mask"], col)
    col = np.where(hair[:, None], P["hair"], col)
    if P["hat"] is not None:
        hat = dz > (0.3 if P["hat_type"] == "cap" else 0.1)
        col = np.where(hat[:, None], P["hat"], col)
    return col


# ----------------------------------------------------------------------------- background
_DAPPLE = {
    "park": 0.42,
    "campus": 0.5,
    "plaza": 0.62,
    "street": 0.55,
    "sidewalk": 0.55,
    "parking_lot": 0.66,
    "mountain": 0.5,
    "station_platform": 0.6,
}


def _dapple(kind: str, gx: np.ndarray, gy: np.ndarray, seed: int) -> np.ndarray:
    """Sun visibility (N,) on the ground under trees and buildings: a moving pattern of
    cast shadows (the offset changes with every image)."""
    thr = _DAPPLE.get(kind)
    if thr is None:
        return np.ones(gx.shape, np.float32)
    ox, oy = (seed % 997) * 0.37, (seed % 991) * 0.53
    n = noise2(gx * 0.6 + ox, gy * 0.6 + oy)
    return (0.15 + 0.85 * np.clip((thr - n) / 0.04, 0.0, 1.0)).astype(np.float32)


def _crowd(alb, skyf, bs, bz, seed: int, s0: float):
    """Paint a few distant passers-by on the backdrop (clutter that differs per image)."""
    rng = np.random.default_rng([seed, 99])
    n = int(rng.integers(0, 5))
    for _ in range(n):
        sc = s0 + float(rng.uniform(-9.0, 9.0))
        h = float(rng.uniform(1.55, 1.9))
        top = _lin(rng.uniform(0.05, 0.95, 3))
        legs = _lin(rng.uniform(0.05, 0.5, 3))
        skin = _lin(np.array([0.8, 0.6, 0.45]) * rng.uniform(0.4, 1.1))
        ds = np.abs(bs - sc)
        body = (ds < 0.2 * h / 1.75) & (bz < 0.82 * h) & (bz > 0.47 * h)
        leg = (ds < 0.14 * h / 1.75) & (bz <= 0.47 * h) & (bz >= 0.0)
        head = (ds**2 + (bz - 0.9 * h) ** 2) < (0.075 * h) ** 2
        alb = np.where(body[:, None], top, alb)
        alb = np.where(leg[:, None], legs, alb)
        alb = np.where(head[:, None], skin, alb)
        skyf = skyf & ~(body | leg | head)
    return alb, skyf


def _background(
    spec: ImageSpec,
    C,
    R,
    focal,
    u,
    v,
    need: np.ndarray,
    pv: _PersonView | None,
    person_height,
    lamp_pos,
    lamp_vec,
):
    """Radiance (H, W, 3) and distance (H, W) of the scene behind the person, computed only
    where ``need`` (H, W) is True (pixels the person does not fully cover)."""
    loc, view, light = spec.location, spec.view, spec.light
    hf, wf = spec.frame_size
    Hh, Ww = need.shape
    rad = np.zeros((Hh * Ww, 3), np.float32)
    dist = np.full(Hh * Ww, 1e4, np.float32)
    idx = np.flatnonzero(need.ravel())
    if idx.size == 0:
        return rad.reshape(Hh, Ww, 3), dist.reshape(Hh, Ww)
    ii, jj = np.divmod(idx, Ww)
    k = wf / 1920.0
    a = ((u - wf / 2.0) / (focal * k)).astype(np.float32)  # (W,)
    bq = ((v - hf / 2.0) / (focal * k)).astype(np.float32)  # (H,)
    R32 = R.astype(np.float32)
    d = a[jj][:, None] * R32[0] + bq[ii][:, None] * R32[1] + R32[2]  # (N, 3) ray directions
    d /= np.sqrt((d * d).sum(1, keepdims=True))
    dz = d[:, 2]
    nb = np.array([math.cos(view.azimuth), math.sin(view.azimuth), 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(dz < -1e-6, np.float32(-C[2]) / dz, np.inf)
        dn = d @ nb.astype(np.float32)
        tbk = np.where(dn < -1e-6, np.float32(-view.backdrop_distance - C @ nb) / dn, np.inf)
        if loc.indoor:
            ceil_h = 3.2 + 1.5 * hash2(np.array(view.seed), np.array(1), 0).item()
            tc = np.where(dz > 1e-6, np.float32(ceil_h - C[2]) / dz, np.inf)
        else:
            tc = np.full_like(tg, np.inf)
    t = np.minimum(np.minimum(tg, tbk), tc)
    is_ground = (tg <= tbk) & (tg <= tc) & np.isfinite(tg)
    is_back = ~is_ground & (tbk <= tc) & np.isfinite(tbk)
    is_ceil = ~is_ground & ~is_back & np.isfinite(tc)
    pal = [np.asarray(c, np.float32) for c in loc.palette]
    col_all = np.zeros((idx.size, 3), np.float32)
    sun_dir = np.asarray(light.sun_dir, np.float32)
    sun = np.asarray(light.sun, np.float32) * (1.0 if sun_dir[2] > 0.02 else 0.0)
    sky = np.asarray(light.sky, np.float32)
    salt = view.seed % 10007
    tf = np.where(np.isfinite(t), t, 0.0).astype(np.float32)
    P = C.astype(np.float32) + d * tf[:, None]  # (N, 3) hit points
    lamp_c = lamp_vec

    if is_ground.any():
        gx = P[is_ground, 0]
        gy = P[is_ground, 1]
        alb = ground_albedo(loc.ground, gx, gy, pal, salt)
        if light.snow > 0:
            patch = noise2(gx * 1.5 + 40.0, gy * 1.5) < light.snow
            alb = np.where(patch[:, None], np.float32(0.8) * (0.9 + 0.1 * alb), alb)
        if light.wet > 0:
            alb = alb * np.float32(1.0 - 0.35 * light.wet)
        sun_vis = np.ones(gx.shape, np.float32)
        ao = np.ones(gx.shape, np.float32)
        if pv is not None:
            px, py = spec.position
            rx, ry = gx - np.float32(px), gy - np.float32(py)
            # cast shadow: a soft capsule from the feet away from the sun
            if sun_dir[2] > 0.05:
                ln = min(
                    person_height * math.sqrt(max(1.0 - sun_dir[2] ** 2, 0.0)) / sun_dir[2],
                    3.0 * person_height,
                )
                hd = -sun_dir[:2] / max(float(np.linalg.norm(sun_dir[:2])), 1e-6)
                tt = np.clip((rx * hd[0] + ry * hd[1]) / max(ln, 1e-6), 0.0, 1.0)
                ddx, ddy = rx - tt * (ln * hd[0]), ry - tt * (ln * hd[1])
                dd = np.sqrt(ddx * ddx + ddy * ddy)
                width = 0.17 * person_height / 1.7 * (1.0 - 0.35 * tt)
                sun_vis = np.clip((dd - width) * np.float32(1 / 0.06) + 0.5, 0.0, 1.0)
            ao = 1.0 - 0.55 * np.exp(-(rx * rx + ry * ry) * np.float32(1 / 0.09))
        if not loc.indoor:
            sun_vis = sun_vis * _dapple(loc.kind, gx, gy, spec.seed)
        irr = sun[None, :] * (sun_dir[2] * sun_vis)[:, None] + sky[None, :] * ao[:, None]
        if light.lamp > 0:
            lx, ly = gx - np.float32(lamp_pos[0]), gy - np.float32(lamp_pos[1])
            irr = irr + lamp_c[None, :] * (np.exp(-(lx * lx + ly * ly) / 40.0) * ao)[:, None]
        col = alb * irr
        if light.wet > 0:
            col = col + np.float32(0.12 * light.wet) * sky[None, :]
        col_all[is_ground] = col
    if is_back.any():
        s_t = np.array([-math.sin(view.azimuth), math.cos(view.azimuth), 0.0])
        bs = (P[is_back] @ s_t.astype(np.float32)).astype(np.float32)
        bzz = P[is_back, 2]
        alb, skyf = backdrop_albedo(view.backdrop, bs, bzz, pal, salt)
        pc = np.array([spec.position[0], spec.position[1], 0.9])
        tt0 = (-view.backdrop_distance - C @ nb) / min(float((pc - C) @ nb), -1e-6)
        alb, skyf = _crowd(alb, skyf, bs, bzz, spec.seed, float((C + tt0 * (pc - C)) @ s_t))
        ndl = max(float(nb @ sun_dir), 0.0)
        irr = sun * ndl * 0.9 + sky * 0.75 + (lamp_c * 0.4 if light.lamp > 0 else 0.0)
        col = alb * irr[None, :]
        if loc.indoor:
            skyf = np.zeros_like(skyf)
        if skyf.any():
            horizon = np.clip(bzz[skyf] / 40.0, 0.0, 1.0)[:, None]
            col[skyf] = sky[None, :] * (1.3 - 0.4 * horizon) + sun[None, :] * 0.15
            tb = t[is_back]
            tb[skyf] = 1e4
            t[is_back] = tb
        col_all[is_back] = col
    if is_ceil.any():
        cc = np.asarray(pal[3], np.float32) * 0.6 + 0.3
        col_all[is_ceil] = cc * (sky * 0.6 + lamp_c * 0.8)[None, :]
    rad[idx] = col_all
    dist[idx] = np.where(np.isfinite(t), t, 1e4)
    return rad.reshape(Hh, Ww, 3), dist.reshape(Hh, Ww)


# ----------------------------------------------------------------------------- occluders
def _occluders(spec: ImageSpec, pv: _PersonView, X, Y, fp, light: Lighting, lamp_vec):
    """Radiance (H, W, 3) and coverage (H, W) of everything in front of the person."""
    H, W = Y.shape[0], X.shape[0]
    rad = np.zeros((H, W, 3), np.float32)
    cov = np.zeros((H, W), np.float32)
    if not spec.occluders:
        return rad, cov
    y_feet = float(max(pv.a[:, 1].max(), pv.b[:, 1].max()))
    sky = np.asarray(light.sky, np.float32)
    sun = np.asarray(light.sun, np.float32) * max(float(light.sun_dir[2]), 0.0)
    L_pv = pv.R_p @ np.asarray(light.sun_dir)
    base_irr = sky * 0.8 + sun * 0.6 + (lamp_vec * 0.6 if light.lamp > 0 else 0.0)
    Xg = X[None, :]
    Yg = Y[:, None]
    for occ in spec.occluders:
        colour = np.asarray(occ.colour, np.float32)
        top = y_feet - occ.height
        if occ.kind == "pedestrian" and occ.other is not None:
            other, phase = occ.other
            body = build_body(other, phase, 1.0)
            scale = pv.dist / max(pv.dist - occ.depth, 1.0)
            a = (body.a @ pv.M.T + pv.o) * scale
            b = (body.b @ pv.M.T + pv.o) * scale
            shift = np.array([occ.x, occ.depth * 0.25, -occ.depth], np.float32)
            sbody = dataclasses.replace(body, ra=body.ra * scale, rb=body.rb * scale)
            buf = rasterize(a + shift, b + shift, sbody.ra, sbody.rb, X, Y, fp)
            opv = _PersonView(
                M=pv.M,
                o=pv.o * scale + shift,
                a=a + shift,
                b=b + shift,
                body=sbody,
                u_c=pv.u_c,
                v_c=pv.v_c,
                s=pv.s,
                dist=pv.dist - occ.depth,
                R_p=pv.R_p,
                scale=scale,
            )
            pr, idx = _shade_person(opv, buf, X, Y, light, lamp_vec)
            orad = np.zeros((H * W, 3), np.float32)
            orad[idx] = pr
            c = buf.alpha
            rad = rad * (1 - c[..., None]) + orad.reshape(H, W, 3) * c[..., None]
            cov = np.maximum(cov, c)
            continue
        if occ.kind == "pole":
            dxp = np.abs(Xg - occ.x)
            c = np.clip(0.5 + (occ.width / 2 - dxp) / fp, 0.0, 1.0) * np.ones_like(Yg)
            shade = np.sqrt(np.clip(1.0 - (dxp / (occ.width / 2)) ** 2, 0.0, 1.0))
            side = np.clip((Xg - occ.x) / (occ.width / 2) * float(L_pv[0]), -1, 1)
            irr = base_irr[None, None, :] * (0.5 + 0.5 * shade)[..., None] + (
                sun[None, None, :] * 0.6 * np.clip(side + 0.3, 0, 1)[..., None]
            )
            col = colour * np.broadcast_to(irr, (H, W, 3))
        elif occ.kind in ("car", "bush", "bin", "railing"):
            if occ.kind == "car":
                edge = occ.x
                inside_x = (Xg - edge) * occ.side  # > 0 inside the car
                c = np.clip(0.5 + inside_x / fp, 0.0, 1.0) * np.clip(0.5 + (Yg - top) / fp, 0, 1)
                glass = (Yg < top + occ.height * 0.38) & (inside_x > 0.25)
                hl = np.abs(Yg - (top + occ.height * 0.45)) < 0.03
                col = np.broadcast_to(colour * base_irr * 1.1, (H, W, 3)).copy()
                col[np.broadcast_to(glass, (H, W))] = sky * 0.35 + 0.02
                col[np.broadcast_to(hl & ~glass, (H, W))] *= 1.8
            elif occ.kind == "bush":
                wobble = 0.12 * (noise2(X * 12.0 + occ.x * 7.0, np.zeros_like(X) + 5.0) - 0.5)
                c = np.clip(0.5 + (Yg - (top + wobble[None, :])) / fp, 0.0, 1.0)
                c = c * np.clip(0.5 + (occ.width / 2 - np.abs(Xg - occ.x)) / fp, 0.0, 1.0)
                leaf = noise2(Xg * 30.0 + 11.0, Yg * 30.0)
                col = colour * base_irr * (0.5 + 0.8 * leaf)[..., None]
            elif occ.kind == "bin":
                c = np.clip(0.5 + (occ.width / 2 - np.abs(Xg - occ.x)) / fp, 0.0, 1.0) * np.clip(
                    0.5 + (Yg - top) / fp, 0.0, 1.0
                )
                shade = np.sqrt(np.clip(1.0 - ((Xg - occ.x) / (occ.width / 2)) ** 2, 0.0, 1.0))
                col = colour * base_irr * (0.55 + 0.45 * shade)[..., None]
                col = np.broadcast_to(col, (H, W, 3))
            else:  # railing: two rails and balusters
                rail = (np.abs(Yg - top) < 0.025) | (np.abs(Yg - (top + occ.height * 0.5)) < 0.02)
                bal = (np.abs(np.mod(Xg - occ.x, 0.14) - 0.07) < 0.012) & (Yg > top)
                c = (rail | bal).astype(np.float32) * np.ones((H, W), np.float32)
                col = np.broadcast_to(colour * base_irr * 1.2, (H, W, 3))
            c = np.broadcast_to(c, (H, W)).astype(np.float32)
        else:
            continue
        rad = rad * (1 - c[..., None]) + np.asarray(col, np.float32) * c[..., None]
        cov = np.maximum(cov, c)
    return rad, cov


# ----------------------------------------------------------------------------- camera
def _camera(
    rad: np.ndarray,
    style: CameraStyle,
    light: Lighting,
    rng: np.random.Generator,
) -> np.ndarray:
    """Linear radiance (H, W, 3) -> sRGB uint8: auto exposure, white balance, tone curve,
    gamma, saturation, contrast, optics blur, sensor noise."""
    lum = rad[::2, ::2] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    mean_log = float(np.exp(np.log(lum + np.float32(1e-4)).mean()))
    gain = min(max(0.22 / max(mean_log, 1e-4), 0.3), 6.0) ** 0.75 * style.exposure
    x = rad * (gain * np.asarray(style.wb, np.float32))
    x = x * (1.0 + x * np.float32(1 / 9.0)) / (1.0 + x)  # extended Reinhard
    np.clip(x, 0.0, 1.0, out=x)
    x **= np.float32(1.0 / 2.2)
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = grey + (x - grey) * np.float32(style.saturation)
    x = (x - 0.5) * np.float32(style.contrast) + np.float32(0.5)
    x *= np.float32(255.0)
    x += np.float32(0.5)
    np.clip(x, 0.0, 255.0, out=x)
    img = x.astype(np.uint8)
    if style.blur > 0.05:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(style.blur)))
    noise = style.noise * (1.0 + 1.5 * float(gain > 3.0))
    if noise > 0:
        n = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise * 255.0)
        n += img
        np.clip(n, 0.0, 255.0, out=n)
        img = (n + np.float32(0.5)).astype(np.uint8)
    return img


def _rain(H: int, W: int, amount: float, seed: int) -> np.ndarray:
    """Streak coverage (H, W) for rain of strength ``amount``."""
    i = np.arange(H, dtype=np.float32)[:, None]
    j = np.arange(W, dtype=np.float32)[None, :]
    slant = 0.12 + 0.1 * ((seed % 7) / 7.0)
    period = max(3.0, W / 22.0)
    col = np.floor((j + slant * i) / period)
    off = hash2(col, col * 0 + 1, seed % 1009) * H
    length = H * 0.12
    ln = np.mod(i + off, H * 0.45) < length
    keep = hash2(col, col * 0 + 2, seed % 1013) < 0.55 * amount
    frac = np.mod((j + slant * i) / period, 1.0)
    thin = np.clip(1.0 - np.abs(frac - 0.5) * period / 0.7, 0.0, 1.0)
    return (ln & keep) * thin * 0.35 * amount


# ----------------------------------------------------------------------------- entry point
def render_image(spec: ImageSpec) -> RenderResult:
    """Render one crop; a pure function of ``spec``."""
    rng = np.random.default_rng(spec.seed)
    C, R, focal = camera_pose(spec.view)
    hf, wf = spec.frame_size
    Hout, Wout = spec.size
    person = spec.person
    light = spec.light
    lamp_vec = np.array([1.0, 0.78, 0.5], np.float32) * light.lamp * 0.9
    lamp_pos = (
        spec.position[0] + 2.0 * math.cos(spec.seed % 360),
        spec.position[1] + 2.0 * math.sin(spec.seed % 360),
    )
    if person is not None:
        body = build_body(person, spec.phase, spec.gait, spec.lean)
        pv = _person_view(
            body, person.height, spec.position, spec.heading, C, R, focal, spec.frame_size
        )
        tb = tight_box(pv)
        height = person.height
    else:  # distractor: an empty box where a person could stand
        body = None
        height = 1.7
        ghost = PersonModel(
            pid=0,
            height=height,
            build=1.0,
            shoulder=1.0,
            hip=1.0,
            skin=(0.5,) * 3,
            hair_style="short",
            hair=(0.1,) * 3,
            upper_type="tshirt",
            sleeve=1,
            upper=(0.5,) * 3,
            upper2=(0.5,) * 3,
            upper_pattern="plain",
            pattern_scale=1.0,
            lower_type="trousers",
            lower=(0.5,) * 3,
            lower2=(0.5,) * 3,
            lower_pattern="plain",
            shoes=(0.1,) * 3,
        )
        pv = _person_view(
            build_body(ghost, 0.0, 0.0),
            height,
            spec.position,
            spec.heading,
            C,
            R,
            focal,
            spec.frame_size,
        )
        tb = tight_box(pv)
    box = jitter_box(tb, spec.margins, spec.box_aspect, rng_unit=float(rng.uniform(0.3, 0.7)))
    bx, by, bw, bh = box
    Hr = int(min(Hout, max(16, spec.render_height, 1)))
    Hr = min(Hr, max(16, int(round(bh))))  # never finer than the frame itself
    Wr = max(8, int(round(Hr * Wout / Hout)))
    # pixel centres in frame coordinates and in the person-view frame (metres)
    u = bx + (np.arange(Wr, dtype=np.float64) + 0.5) * bw / Wr
    v = by + (np.arange(Hr, dtype=np.float64) + 0.5) * bh / Hr
    X = ((u - pv.u_c) / pv.s).astype(np.float32)
    Y = ((v - pv.v_c) / pv.s).astype(np.float32)
    fp = float(math.sqrt((bw / Wr) * (bh / Hr)) / pv.s)

    alpha = np.zeros((Hr, Wr), np.float32)
    if body is not None:
        buf = rasterize(pv.a, pv.b, body.ra, body.rb, X, Y, fp)
        alpha = buf.alpha
    need = alpha < 0.999
    bg, depth = _background(
        spec,
        C,
        R,
        focal,
        u,
        v,
        need,
        pv if person is not None else None,
        height,
        lamp_pos,
        lamp_vec,
    )
    rad = bg
    if body is not None:
        sun_scale = 1.0
        if not spec.location.indoor:
            sun_scale = float(
                _dapple(
                    spec.location.kind,
                    np.array([spec.position[0]]),
                    np.array([spec.position[1]]),
                    spec.seed,
                )[0]
            )
        pr, idx = _shade_person(pv, buf, X, Y, light, lamp_vec, sun_scale)
        prad = np.zeros((Hr * Wr, 3), np.float32)
        prad[idx] = pr
        rad = bg * (1.0 - alpha[..., None]) + prad.reshape(Hr, Wr, 3) * alpha[..., None]
        depth = np.where(alpha > 0.5, np.float32(pv.dist), depth)
    orad, ocov = _occluders(spec, pv, X, Y, fp, light, lamp_vec)
    if ocov.any():
        rad = rad * (1.0 - ocov[..., None]) + orad * ocov[..., None]
        depth = np.where(ocov > 0.5, pv.dist - 1.0, depth)
    visible = alpha * (1.0 - ocov)
    occlusion = float(1.0 - visible.sum() / alpha.sum()) if alpha.sum() > 0 else 0.0
    # atmosphere
    if light.fog_density > 0:
        tr = np.exp(-light.fog_density * depth)[..., None]
        rad = rad * tr + np.asarray(light.fog, np.float32) * (1.0 - tr)
    if light.flash > 0:
        rad = rad * (1.0 + light.flash * np.array([0.9, 0.95, 1.2], np.float32))
    if light.rain > 0:
        streak = _rain(Hr, Wr, light.rain, spec.seed)[..., None]
        rad = rad * (1.0 - streak) + streak * (np.asarray(light.sky, np.float32) * 1.6 + 0.05)
    img8 = _camera(rad.astype(np.float32), spec.location.style, light, rng)
    if (Hr, Wr) != (Hout, Wout):
        img8 = np.asarray(Image.fromarray(img8).resize((Wout, Hout), Image.BILINEAR))
        alpha = np.asarray(Image.fromarray(alpha).resize((Wout, Hout), Image.BILINEAR))
        visible = np.asarray(
            Image.fromarray(visible.astype(np.float32)).resize((Wout, Hout), Image.BILINEAR)
        )
    # the viewpoint as the person sees the camera: 0 = front, 90 = right side
    cam_dir = _body_rotation(spec.heading).T @ _normalize(C - np.array([*spec.position, 0.0]))
    azimuth = math.degrees(math.atan2(cam_dir[0], cam_dir[1])) % 360.0
    return RenderResult(
        image=img8,
        alpha=np.ascontiguousarray(alpha, np.float32),
        visible=np.ascontiguousarray(visible, np.float32),
        box=box,
        tight=(tb[0], tb[1], tb[2] - tb[0], tb[3] - tb[1]),
        azimuth=azimuth,
        occlusion=occlusion if person is not None else 0.0,
        distance=pv.dist,
        render_height=Hr,
    )
