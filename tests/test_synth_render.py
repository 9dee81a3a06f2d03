"""Renderer and labeler geometry: determinism, boxes around the person, viewpoints, twins."""

import dataclasses
import math

import numpy as np
import pytest
from smcr.synth import build_world, get_preset, plan_jobs, render_job, sample_spec
from smcr.synth.person import ClothingStyle, sample_person
from smcr.synth.render import jitter_box, rasterize, render_image


def _jobs(preset, n, seed=0, **over):
    w = build_world(get_preset(preset, **over), 12, seed=seed)
    jobs = plan_jobs(w)
    pick = np.random.default_rng(seed).choice(len(jobs), min(n, len(jobs)), replace=False)
    return w, [jobs[i] for i in sorted(pick)]


def test_same_seed_same_bytes_other_seed_other_bytes():
    w, jobs = _jobs("gspr", 6, image_size=(64, 32))
    w2 = build_world(w.preset, 12, seed=0)
    w3 = build_world(w.preset, 12, seed=1)
    for j in jobs:
        a = render_job(w, j)[0].image
        b = render_job(w2, j)[0].image
        assert a.dtype == np.uint8 and a.shape == (64, 32, 3)
        assert a.tobytes() == b.tobytes()
    assert any(
        render_job(w, j)[0].image.tobytes() != render_job(w3, j)[0].image.tobytes() for j in jobs
    )


@pytest.mark.parametrize("preset", ["gspr", "mini-gspr", "market-like", "duke-like"])
def test_every_box_contains_its_person(preset):
    w, jobs = _jobs(preset, 14, seed=3, image_size=(96, 48))
    checked = 0
    for j in jobs:
        res, row = render_job(w, j)
        if row["pid"] == 0:
            continue
        bx, by, bw, bh = res.box
        tx, ty, tw, th = res.tight
        # the labelled box contains the tight box of the projected body ...
        assert bx <= tx + 1e-6 and by <= ty + 1e-6
        assert bx + bw >= tx + tw - 1e-6 and by + bh >= ty + th - 1e-6
        # ... and the rendered person lies inside it, filling the tight box to the pixel
        H, W = res.alpha.shape
        ys, xs = np.nonzero(res.alpha > 0.5)
        assert len(xs) > 0.05 * H * W, "the person is missing from its crop"
        ex0, ex1 = (tx - bx) / bw * W, (tx + tw - bx) / bw * W
        ey0, ey1 = (ty - by) / bh * H, (ty + th - by) / bh * H
        tol = 1.5 * H / res.render_height + 1.0  # one capture pixel (low-res captures)
        assert abs(xs.min() - ex0) < tol and abs(xs.max() + 1 - ex1) < tol, (row["path"], ex0, ex1)
        assert abs(ys.min() - ey0) < tol and abs(ys.max() + 1 - ey1) < tol, (row["path"], ey0, ey1)
        assert 0.0 <= res.occlusion <= 1.0
        checked += 1
    assert checked >= 10


def test_box_jitter_contains_tight_box_and_keeps_aspect():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0 = rng.uniform(0, 1000, 2)
        tight = (x0, y0, x0 + rng.uniform(20, 150), y0 + rng.uniform(100, 400))
        aspect = [None, 0.5, 0.4][int(rng.integers(3))]
        bx, by, bw, bh = jitter_box(tight, tuple(rng.uniform(0, 0.2, 4)), aspect, rng.uniform())
        assert bx <= tight[0] and by <= tight[1] and bx + bw >= tight[2] and by + bh >= tight[3]
        if aspect is not None:
            assert bw / bh == pytest.approx(aspect, rel=1e-9)


def test_rasterize_hand_case_sphere_area_and_depth_order():
    X = (np.arange(200, dtype=np.float32) + 0.5) * 0.01 - 1.0  # 1 cm pixels over [-1, 1]
    Y = X.copy()
    # one sphere of radius 0.5 m: anti-aliased coverage integrates to pi r^2
    a = np.array([[0.0, 0.0, 5.0]], np.float32)
    buf = rasterize(a, a, np.array([0.5], np.float32), np.array([0.5], np.float32), X, Y, 0.01)
    assert buf.alpha.sum() * 1e-4 == pytest.approx(math.pi * 0.25, rel=5e-3)
    # two overlapping spheres: the nearer one (smaller depth) owns the overlap
    a2 = np.array([[-0.2, 0.0, 5.0], [0.2, 0.0, 4.0]], np.float32)
    r = np.array([0.4, 0.4], np.float32)
    buf = rasterize(a2, a2, r, r, X, Y, 0.01)
    assert buf.prim[100, 100] == 1  # x = 0.005: inside both, sphere 1 is nearer
    assert buf.prim[100, 50] == 0  # x = -0.495: only sphere 0
    assert buf.prim[0, 0] == -1


def test_round_cone_silhouette_is_exact():
    # a cone lying along x from r=0.3 to r=0.1 over 1 m: widths at its ends and middle
    X = (np.arange(300, dtype=np.float32) + 0.5) * 0.01 - 1.0
    Y = X.copy()
    a = np.array([[-0.5, 0.0, 3.0]], np.float32)
    b = np.array([[0.5, 0.0, 3.0]], np.float32)
    buf = rasterize(a, b, np.array([0.3], np.float32), np.array([0.1], np.float32), X, Y, 0.01)
    col_mid = buf.alpha[:, 100].sum() * 0.01  # x = 0.005
    # tangent lines of the hull: half-width at x is (r(x) / cos) with sin = (r1 - r2) / h
    s = 0.2
    half = (0.3 + (0.1 - 0.3) * (0.005 + 0.5)) / math.sqrt(1 - s * s)
    assert col_mid == pytest.approx(2 * half, abs=0.02)
    assert buf.alpha[100, :20].sum() < 1e-6  # nothing left of the big end (x < -0.8)


def test_viewpoint_label_follows_the_camera_angle():
    w = build_world(get_preset("mini-gspr", image_size=(64, 32)), 6, seed=2)
    jobs = [j for j in plan_jobs(w) if j.cam == 1]
    az = {}
    for j in jobs:
        res, row = render_job(w, j)
        az.setdefault(j.view, []).append(row["azimuth"])
    for v, vals in az.items():
        vals = np.deg2rad(np.array(vals))
        spread = 1 - abs(np.mean(np.exp(1j * vals)))  # circular spread, 0 = identical
        assert spread < 0.1, (v, np.rad2deg(vals))
    means = [np.angle(np.mean(np.exp(1j * np.deg2rad(a)))) for a in az.values()]
    gaps = [
        abs(np.angle(np.exp(1j * (x - y)))) for i, x in enumerate(means) for y in means[i + 1 :]
    ]
    assert min(gaps) > math.radians(45)  # four viewpoints ~90 degrees apart


def test_back_view_shows_the_backpack_front_view_the_face():
    w = build_world(get_preset("mini-gspr", image_size=(128, 64)), 4, seed=0)
    job = plan_jobs(w)[0]
    spec, _ = sample_spec(w, job)
    rng = np.random.default_rng(0)
    p = sample_person(1, rng, ClothingStyle(backpack=1.0, hat=0.0, mask=0.0))
    p = dataclasses.replace(
        p,
        backpack=(0.95, 0.05, 0.05),
        upper=(0.9, 0.9, 0.9),
        upper2=(0.9, 0.9, 0.9),
        upper_pattern="plain",
        shoulder_bag=None,
        lower=(0.1, 0.1, 0.1),
        hair_style="short",
        skin=(0.95, 0.8, 0.7),
        hair=(0.05, 0.04, 0.04),
        glasses=False,
    )
    C = np.array(
        [
            spec.view.distance * math.cos(spec.view.azimuth),
            spec.view.distance * math.sin(spec.view.azimuth),
        ]
    )
    to_cam = math.atan2(C[1] - spec.position[1], C[0] - spec.position[0])
    style = dataclasses.replace(spec.location.style, noise=0.0)
    loc = dataclasses.replace(spec.location, style=style)
    red, head = {}, {}
    for name, heading in (("front", to_cam), ("back", to_cam + math.pi)):
        res = render_image(
            dataclasses.replace(spec, person=p, heading=heading, occluders=(), location=loc)
        )
        img = res.image.astype(int)
        m = res.alpha > 0.5
        redish = (img[..., 0] > img[..., 1] + 60) & (img[..., 0] > img[..., 2] + 60) & m
        red[name] = redish.sum() / m.sum()
        rows = np.flatnonzero(m.any(1))
        h = rows[-1] - rows[0]
        r0, r1 = rows[0] + h // 20, rows[0] + h // 9  # the face band below the hair line
        head[name] = img[r0:r1][m[r0:r1]].mean()  # face skin vs hair
        assert (
            (res.azimuth < 20 or res.azimuth > 340)
            if name == "front"
            else (160 < res.azimuth < 200)
        )
    assert red["back"] > 0.08 and red["back"] > 2 * red["front"]  # straps only, in front
    assert head["front"] > head["back"] + 40


def test_twins_are_similar_but_different():
    w = build_world(get_preset("mini-gspr", twins=0.6), 30, seed=4)
    twins = [p for p in w.persons if p.twin_of]
    assert len(twins) >= 5
    test_ids = set(w.test_ids)
    for t in twins:
        src = w.persons[t.twin_of - 1]
        assert (t.pid in test_ids) == (src.pid in test_ids)  # hard negatives in one split
        a, b = dataclasses.asdict(src), dataclasses.asdict(t)
        diff = [k for k in a if k not in ("pid", "twin_of", "skin") and a[k] != b[k]]
        same = [k for k in a if a[k] == b[k]]
        assert 1 <= len(diff) <= 4 and len(same) >= 15, diff


def test_distinct_identities_differ():
    w = build_world("mini-gspr", 40, seed=5)
    keys = {(p.upper_type, p.lower_type, p.upper, p.lower, p.hair_style) for p in w.persons}
    assert len(keys) >= 36
