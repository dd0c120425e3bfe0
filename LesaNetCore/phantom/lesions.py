"""Lesions whose look follows their labels: where they sit, what they are, how they appear.

A lesion is drawn as (bodypart, type, attributes) first; its size, HU, margin and inner structure then follow
the attributes (a cyst is 0-20 HU and smooth, a calcified nodule has a > 300 HU core, a spiculated one has
rays, a lytic bone lesion replaces marrow by soft tissue), and its centre is placed inside the label-map
region of its body part. Look-alikes are kept close on purpose (cyst ~10 HU vs hypodense metastasis ~25-40 HU
below liver; adjacent lobes; liver vs right kidney), so the labels are learnable but not trivial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import anatomy as an

# bodypart -> (label codes where the centre may lie | a lymph node station, body level range t)
_SITES: dict[str, tuple[tuple[int, ...] | str, tuple[float, float]]] = {
    "right upper lobe": ((an.RUL,), (0.03, 0.3)),
    "right mid lung": ((an.RML,), (0.22, 0.42)),
    "right lower lobe": ((an.RLL,), (0.15, 0.45)),
    "left upper lung": ((an.LUL,), (0.03, 0.38)),
    "left lower lobe": ((an.LLL,), (0.15, 0.46)),
    "pleura": (an.LUNG_LABELS, (0.08, 0.42)),
    "chest wall": ((an.MUSCLE,), (0.05, 0.4)),
    "liver": ((an.LIVER,), (0.36, 0.54)),
    "spleen": ((an.SPLEEN,), (0.38, 0.46)),
    "right kidney": ((an.KIDNEY_R,), (0.48, 0.6)),
    "left kidney": ((an.KIDNEY_L,), (0.47, 0.6)),
    "adrenal gland": ((an.ADRENAL,), (0.43, 0.46)),
    "pancreas": ((an.PANCREAS,), (0.46, 0.5)),
    "mediastinum lymph node": ("mediastinum", (0.1, 0.26)),
    "abdomen lymph node": ("abdomen", (0.52, 0.66)),
    "retroperitoneum lymph node": ("retroperitoneum", (0.5, 0.66)),
    "pelvis lymph node": ("pelvis", (0.87, 0.95)),
    "iliac lymph node": ("iliac", (0.7, 0.84)),
    "spine": ((an.SPINE,), (0.05, 0.7)),
    "rib": ((an.RIB,), (0.05, 0.45)),
    "pelvic bone": ((an.PELVIC_BONE,), (0.7, 0.98)),
    "soft tissue": ((an.FAT, an.MUSCLE), (0.45, 0.95)),
}
_LUNG = ("right upper lobe", "right mid lung", "right lower lobe", "left upper lung", "left lower lobe")
_NODES = ("mediastinum lymph node", "abdomen lymph node", "retroperitoneum lymph node", "pelvis lymph node",
          "iliac lymph node")
_BONES = ("spine", "rib", "pelvic bone")
_ORGANS = ("liver", "spleen", "right kidney", "left kidney", "adrenal gland", "pancreas")

# bodypart group -> [(type, weight)]
_TYPES = {
    "lung": [("lung nodule", 0.45), ("metastasis", 0.25), ("lung mass", 0.15), ("nodule", 0.15)],
    "pleura": [("nodule", 0.4), ("mass", 0.3), ("metastasis", 0.3)],
    "chest wall": [("mass", 0.5), ("nodule", 0.3), ("metastasis", 0.2)],
    "liver": [("cyst", 0.3), ("metastasis", 0.3), ("hemangioma", 0.15), ("liver mass", 0.15), ("nodule", 0.1)],
    "spleen": [("cyst", 0.35), ("nodule", 0.3), ("metastasis", 0.35)],
    "kidney": [("kidney cyst", 0.5), ("mass", 0.3), ("nodule", 0.1), ("metastasis", 0.1)],
    "adrenal gland": [("nodule", 0.5), ("mass", 0.3), ("metastasis", 0.2)],
    "pancreas": [("mass", 0.45), ("cyst", 0.35), ("metastasis", 0.2)],
    "node": [("lymphadenopathy", 0.85), ("metastasis", 0.15)],
    "bone": [("metastasis", 0.7), ("nodule", 0.15), ("mass", 0.15)],
    "soft tissue": [("mass", 0.5), ("nodule", 0.35), ("metastasis", 0.15)],
}
# type -> (median long diameter mm, log-normal sigma)
_SIZE = {
    "lung nodule": (9, 0.5), "nodule": (12, 0.5), "metastasis": (17, 0.55), "lung mass": (45, 0.3),
    "mass": (42, 0.35), "liver mass": (55, 0.3), "cyst": (15, 0.6), "kidney cyst": (20, 0.55),
    "hemangioma": (20, 0.5), "lymphadenopathy": (20, 0.35),
}
TINY_MM = 6.0
LARGE_MM = 40.0


def site_group(bodypart: str) -> str:
    if bodypart in _LUNG:
        return "lung"
    if bodypart in _NODES:
        return "node"
    if bodypart in _BONES:
        return "bone"
    if bodypart in ("right kidney", "left kidney"):
        return "kidney"
    return bodypart


def site_range(bodypart: str) -> tuple[float, float]:
    """Body level range (t) where lesions of this body part are placed."""
    return _SITES[bodypart][1]


@dataclass(frozen=True)
class LesionSpec:
    """One lesion: its truth and the 3-D shape and intensities drawn from it (LPS mm, HU)."""

    bodypart: str
    type: str
    attributes: tuple[str, ...]
    center: tuple[float, float, float]
    radii: tuple[float, float, float]   # in-plane semi-axes a, b and the z semi-axis
    angle: float
    hu: float
    rim_hu: float | None                # enhancing or hyperdense rim
    core: tuple[float, float] | None    # (fraction of the radius, HU): calcification, cavity or necrosis
    texture: float                      # heterogeneity amplitude (HU)
    lobulation: tuple[float, int, float]
    spikes: tuple[float, int, float]
    seed: int

    @property
    def diameter_mm(self) -> float:
        return 2.0 * max(self.radii[0], self.radii[1])

    @property
    def labels(self) -> list[str]:
        return [self.bodypart, self.type, *self.attributes]


def _pick(rng: np.random.Generator, weighted: list[tuple[str, float]]) -> str:
    names = [w[0] for w in weighted]
    p = np.array([w[1] for w in weighted])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def background_hu(bodypart: str, contrast: float) -> float:
    """HU of the tissue a lesion replaces: what hypo/hyperattenuation is relative to."""
    group = site_group(bodypart)
    return {
        "lung": -860.0, "pleura": -860.0, "liver": 60 + 45 * contrast, "spleen": 50 + 60 * contrast,
        "kidney": 30 + 100 * contrast, "adrenal gland": 30 + 25 * contrast, "pancreas": 45 + 45 * contrast,
        "node": -90.0, "bone": 230.0, "chest wall": 45.0, "soft tissue": -60.0,
    }[group]


def sample_lesion(body: an.PatientAnatomy, rng: np.random.Generator, bodypart: str, contrast: float,
                  t_range: tuple[float, float] | None = None) -> LesionSpec:
    """Draws a lesion of ``bodypart``: type, attributes, size, look, and a centre inside that body part."""
    group = site_group(bodypart)
    kind = _pick(rng, _TYPES[group])
    median, sigma = _SIZE[kind]
    diameter = float(np.clip(median * math.exp(rng.normal(0, sigma)), 3.5, 95.0))
    if group == "node":
        diameter = max(diameter, 12.0)
    if group in ("adrenal gland", "spine", "rib", "bone"):
        diameter = min(diameter, 35.0)
    attrs: set[str] = set()
    bg = background_hu(bodypart, contrast)
    hu, rim, core, texture = 40.0, None, None, 4.0
    lobulation, spikes = (0.0, 0, 0.0), (0.0, 0, 0.0)
    chance = rng.random
    if kind in ("cyst", "kidney cyst"):
        hu = rng.uniform(2, 16)
        attrs.add("hypoattenuation")
        texture = 1.0
    elif group == "bone":
        if chance() < 0.55:
            attrs.add("sclerotic")
            hu = rng.uniform(750, 1150)
        else:
            attrs.add("lytic")
            hu = rng.uniform(20, 60)
    elif group in ("lung", "pleura"):
        hu = rng.uniform(25, 50)
        if chance() < 0.18 and diameter > 7:
            attrs.add("cavitary")
            core = (rng.uniform(0.35, 0.6), -950.0)
        elif chance() < 0.5:
            attrs.add("solid")
        if "cavitary" not in attrs and chance() < 0.15:
            attrs.add("calcified")
            core = (rng.uniform(0.3, 0.6), rng.uniform(350, 900))
        if chance() < (0.35 if kind in ("lung mass", "lung nodule") else 0.1):
            attrs.add("spiculated")
            spikes = (rng.uniform(0.3, 0.5), int(rng.integers(7, 13)), rng.uniform(0, 6.28))
    elif kind == "hemangioma":
        attrs.update({"hyperattenuation", "enhancing"})
        hu = bg + rng.uniform(25, 60)
        rim = bg + rng.uniform(70, 120)
    elif group == "node":
        hu = rng.uniform(30, 45) + 10 * contrast
        if chance() < 0.2:
            attrs.add("heterogeneous")
            core = (rng.uniform(0.35, 0.55), rng.uniform(5, 20))
        elif chance() < 0.12:
            attrs.add("calcified")
            core = (rng.uniform(0.25, 0.45), rng.uniform(350, 700))
        if chance() < 0.15:
            attrs.add("enhancing")
            rim = hu + rng.uniform(50, 90)
    else:
        # Solid-organ and soft-tissue nodules, masses and metastases: hypo- or hyperattenuating.
        hypo = chance() < (0.8 if kind == "metastasis" else 0.6)
        if group in ("chest wall", "soft tissue"):
            hu = rng.uniform(30, 50)
        elif hypo:
            attrs.add("hypoattenuation")
            hu = bg - rng.uniform(22, 50)
        else:
            attrs.add("hyperattenuation")
            hu = bg + rng.uniform(25, 60)
        if chance() < 0.3:
            attrs.add("enhancing")
            rim = hu + rng.uniform(60, 110)
        if chance() < 0.08:
            attrs.add("calcified")
            core = (rng.uniform(0.25, 0.45), rng.uniform(350, 800))
    if kind in ("liver mass", "mass", "lung mass") or (kind == "metastasis" and diameter > 30):
        if chance() < 0.6:
            attrs.add("heterogeneous")
    if "heterogeneous" in attrs:
        texture = rng.uniform(25, 40)
    if chance() < (0.3 if diameter > 15 else 0.1) and "spiculated" not in attrs and kind not in ("cyst", "kidney cyst"):
        attrs.add("lobular")
        lobulation = (rng.uniform(0.12, 0.2), int(rng.integers(3, 6)), rng.uniform(0, 6.28))
    if diameter <= TINY_MM:
        attrs.add("tiny")
    elif diameter >= LARGE_MM:
        attrs.add("large")
    elong = rng.uniform(0.7, 1.0)
    a, b = diameter / 2.0, diameter / 2.0 * elong
    c = diameter / 2.0 * rng.uniform(0.7, 1.05)
    center = place_lesion(body, rng, bodypart, min(a, b), t_range)
    ordered = tuple(x for x in _ATTRIBUTE_ORDER if x in attrs)
    return LesionSpec(bodypart, kind, ordered, center, (a, b, c), float(rng.uniform(0, math.pi)), float(hu),
                      None if rim is None else float(rim), core, float(texture), lobulation, spikes,
                      int(rng.integers(2**31)))


_ATTRIBUTE_ORDER = ("large", "tiny", "hypoattenuation", "hyperattenuation", "enhancing", "heterogeneous", "solid",
                    "calcified", "cavitary", "spiculated", "lobular", "sclerotic", "lytic")


def place_lesion(body: an.PatientAnatomy, rng: np.random.Generator, bodypart: str, radius: float,
                 t_range: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """A centre (LPS mm) inside ``bodypart``, preferring points at least half the radius from its border."""
    where, (t0, t1) = _SITES[bodypart]
    if t_range is not None:
        t0, t1 = max(t0, t_range[0]), min(t1, t_range[1])
        if t0 >= t1:
            t0, t1 = _SITES[bodypart][1]
    if isinstance(where, str):
        x, y, t = an.station_point(where, rng, body.spine_y)
        t = float(np.clip(t, t0, t1))
        return float(x), float(y), body.z_of(t)
    step = 3.0
    grid = np.arange(-200.0, 200.0 + step, step)
    fallback = None
    for _attempt in range(12):
        t = rng.uniform(t0, t1)
        z = body.z_of(t)
        _, label = an.render_anatomy(body, grid, grid, z)
        inside = np.isin(label, where)
        if bodypart == "pleura":
            # Pleural lesions sit on the lung surface next to the chest wall.
            wall = np.isin(label, (an.MUSCLE, an.RIB, an.FAT))
            near = np.zeros_like(wall)
            near[1:, :] |= wall[:-1, :]
            near[:-1, :] |= wall[1:, :]
            near[:, 1:] |= wall[:, :-1]
            near[:, :-1] |= wall[:, 1:]
            inside &= near
        elif bodypart == "chest wall":
            inside &= np.abs(grid)[:, None] < body.spine_y  # the anterior and lateral wall, not the back muscles
        rows, cols = np.nonzero(inside)
        if rows.size == 0:
            continue
        margin = int(round(0.5 * radius / step))
        for _try in range(20):
            k = int(rng.integers(rows.size))
            r, cidx = rows[k], cols[k]
            if fallback is None:
                fallback = (grid[cidx], grid[r], z)
            if bodypart == "pleura" or margin == 0:
                return float(grid[cidx]), float(grid[r]), float(z)
            probe = [(r + dr, cidx + dc) for dr, dc in ((margin, 0), (-margin, 0), (0, margin), (0, -margin))]
            if all(0 <= pr < grid.size and 0 <= pc < grid.size and inside[pr, pc] for pr, pc in probe):
                jitter = rng.uniform(-step / 2, step / 2, size=2)
                return float(grid[cidx] + jitter[0]), float(grid[r] + jitter[1]), float(z)
    if fallback is None:
        raise RuntimeError(f"could not place a {bodypart} lesion in this patient")
    return tuple(float(v) for v in fallback)


def paint_lesion(hu: np.ndarray, x: np.ndarray, y: np.ndarray, z: float, lesion: LesionSpec):
    """Blends the lesion's cross-section at height ``z`` into ``hu`` (in place).

    Returns:
        ``(window, weight)``: the (row, column) slices the lesion touches and its partial-volume weight there
        (0..1), or ``None`` when the slice misses the lesion.
    """
    cx, cy, cz = lesion.center
    a, b, c = lesion.radii
    k = 1.0 - ((z - cz) / c) ** 2
    if k <= 0.02:
        return None
    scale = math.sqrt(k)
    reach = max(a, b) * scale * (1.0 + lesion.lobulation[0] + lesion.spikes[0]) + 2.0
    i0, i1 = np.searchsorted(x, cx - reach), np.searchsorted(x, cx + reach, side="right")
    j0, j1 = np.searchsorted(y, cy - reach), np.searchsorted(y, cy + reach, side="right")
    if i0 >= i1 or j0 >= j1:
        return None
    win = (slice(j0, j1), slice(i0, i1))
    dx = x[i0:i1][None, :] - cx
    dy = y[j0:j1][:, None] - cy
    rho = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    local = theta - lesion.angle
    radius = scale * a * b / np.sqrt((b * np.cos(local)) ** 2 + (a * np.sin(local)) ** 2)
    amp, n, phase = lesion.lobulation
    if amp:
        radius = radius * (1.0 + amp * np.sin(n * theta + phase))
    amp, n, phase = lesion.spikes
    if amp:
        radius = radius * (1.0 + amp * np.clip(np.cos(n * theta + phase), 0, 1) ** 30)
    pixel = float(x[1] - x[0]) if x.size > 1 else 1.0
    weight = np.clip((radius - rho) / pixel + 0.5, 0.0, 1.0).astype(np.float32)
    if not weight.any():
        return None
    value = np.full(weight.shape, lesion.hu, dtype=np.float32)
    rel = rho / np.maximum(radius, 1e-3)
    if lesion.texture > 2:
        rng = np.random.default_rng(lesion.seed)
        freqs = rng.uniform(0.15, 0.5, size=(4, 3))
        phases = rng.uniform(0, 6.28, size=4)
        field = sum(np.sin(fx * dx + fy * dy + fz * (z - cz) + ph) for (fx, fy, fz), ph in zip(freqs, phases, strict=True))
        value += (lesion.texture / 4.0) * field.astype(np.float32)  # the sum of 4 sines spans +-4
    if lesion.rim_hu is not None:
        value = np.where(rel > 0.72, np.float32(lesion.rim_hu), value)
    if lesion.core is not None:
        frac, core_hu = lesion.core
        value = np.where(rel < frac, np.float32(core_hu), value)
    region = hu[win]
    region += weight * (value - region)
    return win, weight


def recist(mask: np.ndarray) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """RECIST long and short axes of a 2-D mask, in (column, row) pixel coordinates.

    The long axis joins the two farthest mask pixels; the short axis is the longest chord perpendicular to it,
    as radiologists measure in DeepLesion.

    Returns:
        ``((x1, y1, x2, y2), (x3, y3, x4, y4))``, 0-based.
    """
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("empty lesion mask")
    pts = np.stack([cols, rows], axis=1).astype(np.float64)
    if pts.shape[0] == 1:
        p = pts[0]
        return (p[0], p[1], p[0], p[1]), (p[0], p[1], p[0], p[1])
    # Candidate extremes: boundary-ish subset keeps the pairwise search small.
    sub = pts if pts.shape[0] <= 600 else pts[_hull_candidates(pts)]
    d2 = ((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    p1, p2 = sub[i], sub[j]
    axis = p2 - p1
    length = np.linalg.norm(axis)
    if length == 0:
        return (p1[0], p1[1], p2[0], p2[1]), (p1[0], p1[1], p2[0], p2[1])
    u = axis / length
    v = np.array([-u[1], u[0]])
    along = np.round((pts - p1) @ u).astype(int)
    across = (pts - p1) @ v
    best, short = -1.0, (p1[0], p1[1], p1[0], p1[1])
    for bin_ in np.unique(along):
        sel = along == bin_
        lo, hi = np.argmin(np.where(sel, across, np.inf)), np.argmax(np.where(sel, across, -np.inf))
        width = across[hi] - across[lo]
        if width > best:
            best = width
            short = (pts[lo][0], pts[lo][1], pts[hi][0], pts[hi][1])
    return (p1[0], p1[1], p2[0], p2[1]), short


def _hull_candidates(pts: np.ndarray) -> np.ndarray:
    """Indices of points extreme along 64 directions: they contain the farthest pair of a convex-ish shape."""
    angles = np.linspace(0, np.pi, 64, endpoint=False)
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    proj = pts @ dirs.T
    return np.unique(np.concatenate([np.argmin(proj, axis=0), np.argmax(proj, axis=0)]))
