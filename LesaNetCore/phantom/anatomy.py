"""A parametric patient body, chest to pelvis, rendered one axial slice at a time.

The body is described in LPS millimetres: x runs from the patient's right to left, y from anterior to
posterior, z upwards; ``t`` in [0, 1] is the body level from the lung apex (0) to the bottom of the pelvis (1)
so organ extents read like an anatomy atlas. :func:`render_anatomy` paints the slice at height ``z`` on any
regular grid (a 256 x 256 image, or a 5 x 5 probe used to place a lesion) and returns both HU and a label
map; the label map is what lesion placement and the tests use to say "this point lies in the liver".
Painting is back to front (body, cavity, organs, lungs, mediastinum, bones), each shape on its bounding
window only, because slice rendering dominates the synthesis time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

# Label map codes. Lesion sites refer to these; LABEL_NAMES makes the maps readable in tests and notebooks.
OUTSIDE, FAT, MUSCLE, VISCERA, BOWEL, SPINE, RIB, PELVIC_BONE, OTHER_BONE = range(9)
RUL, RML, RLL, LUL, LLL = range(9, 14)
MEDIASTINUM, HEART, VESSEL, AIRWAY, LIVER, SPLEEN, KIDNEY_R, KIDNEY_L = range(14, 22)
ADRENAL, PANCREAS, STOMACH, BLADDER, GALLBLADDER, NODE, CANAL, DISC, SACRUM = range(22, 31)
LUNG_LABELS = (RUL, RML, RLL, LUL, LLL)
_SOFT = (FAT, MUSCLE, VISCERA)
LABEL_NAMES = {
    OUTSIDE: "outside", FAT: "fat", MUSCLE: "muscle", VISCERA: "visceral fat", BOWEL: "bowel", SPINE: "spine",
    RIB: "rib", PELVIC_BONE: "pelvic bone", OTHER_BONE: "other bone", RUL: "right upper lobe",
    RML: "right mid lung", RLL: "right lower lobe", LUL: "left upper lung", LLL: "left lower lobe",
    MEDIASTINUM: "mediastinum", HEART: "heart", VESSEL: "vessel", AIRWAY: "airway", LIVER: "liver",
    SPLEEN: "spleen", KIDNEY_R: "right kidney", KIDNEY_L: "left kidney", ADRENAL: "adrenal gland",
    PANCREAS: "pancreas", STOMACH: "stomach", BLADDER: "bladder", GALLBLADDER: "gallbladder",
    NODE: "lymph node", CANAL: "spinal canal", DISC: "intervertebral disc", SACRUM: "sacrum",
}

# Body levels (t) of the main landmarks; per-patient jitter is added in PatientAnatomy.
LUNG_BASE_T = 0.44
LIVER_T = (0.31, 0.56)
SPLEEN_T = (0.35, 0.48)
KIDNEY_T = (0.45, 0.62)
ADRENAL_T = (0.42, 0.47)
PANCREAS_T = (0.45, 0.51)
AORTIC_BIFURCATION_T = 0.68
BLADDER_T = (0.84, 1.02)


@dataclass(frozen=True)
class PatientAnatomy:
    """Body size, organ placement and the point clouds of vessels and bowel of one synthetic patient."""

    length: float            # mm from lung apex (t=0) to the bottom of the pelvis (t=1)
    z_apex: float            # LPS z of the lung apex
    half_width: tuple        # body half-width at _BODY_T levels
    half_depth: tuple        # body half-depth at _BODY_T levels
    fat: float               # subcutaneous fat thickness
    muscle: float            # body-wall muscle thickness
    spine_y: float           # y of the vertebral body centre
    organ_scale: float
    dome: float              # diaphragm dome height in t
    kidney_shift: float      # right kidney lies lower by this much (t)
    vessels: np.ndarray = field(repr=False)   # (n, 4) lung vessel points x, y, z, radius
    bowel: np.ndarray = field(repr=False)     # (n, 5) bowel points x, y, z, radius, content HU
    nodes: np.ndarray = field(repr=False)     # (n, 4) normal lymph nodes x, y, z, radius

    def z_of(self, t: float) -> float:
        return self.z_apex - t * self.length

    def t_of(self, z: float) -> float:
        return (self.z_apex - z) / self.length

    def width_at(self, t: float) -> tuple[float, float]:
        return float(np.interp(t, _BODY_T, self.half_width)), float(np.interp(t, _BODY_T, self.half_depth))


_BODY_T = (-0.1, 0.05, 0.25, 0.42, 0.6, 0.78, 0.92, 1.1)


def make_patient(rng: np.random.Generator, sex: str = "M") -> PatientAnatomy:
    """Draws one patient: sizes vary ~10% and fat 8-35 mm, so window, FOV and organ look vary across patients."""
    scale = rng.uniform(0.9, 1.08) * (1.0 if sex == "M" else 0.94)
    hip = 1.0 if sex == "M" else 1.06
    half_width = tuple(scale * w for w in (118, 135, 158, 160, 152, 158 * hip, 165 * hip, 160 * hip))
    half_depth = tuple(scale * d for d in (85, 95, 112, 118, 112, 108, 110, 105))
    fat = rng.uniform(8, 35)
    half_width = tuple(w + fat * 0.6 for w in half_width)
    half_depth = tuple(d + fat * 0.6 for d in half_depth)
    length = rng.uniform(560, 640) * scale
    patient = dict(
        length=length, z_apex=rng.uniform(-50, 150), half_width=half_width, half_depth=half_depth,
        fat=fat, muscle=rng.uniform(7, 13), spine_y=half_depth[3] * 0.45, organ_scale=scale,
        dome=rng.uniform(0.05, 0.08), kidney_shift=rng.uniform(0.0, 0.03),
    )
    z_apex, spine_y = patient["z_apex"], patient["spine_y"]
    patient["vessels"] = _lung_vessels(rng, z_apex, length)
    patient["bowel"] = _bowel_loops(rng, z_apex, length, spine_y)
    patient["nodes"] = _normal_nodes(rng, z_apex, length, spine_y)
    return PatientAnatomy(**patient)


def _lung_vessels(rng: np.random.Generator, z_apex: float, length: float) -> np.ndarray:
    """Branching-looking vessel segments from each hilum outwards, sampled every 2 mm."""
    out = []
    for side in (-1.0, 1.0):
        n = 70
        hilum = np.array([side * 45.0, 5.0, z_apex - 0.26 * length])
        direction = rng.normal(size=(n, 3)) * np.array([1.0, 1.3, 2.2]) + np.array([side * 1.0, 0.0, 0.0])
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        start = hilum + rng.normal(scale=8.0, size=(n, 3))
        seg_len = rng.uniform(60, 170, size=n)
        r0 = rng.uniform(2.5, 5.0, size=n)
        s = np.arange(0.0, 170.0, 2.0)[None, :]
        keep = s < seg_len[:, None]
        bend = np.stack([np.sin(s / 30.0), np.cos(s / 40.0), np.zeros_like(s)], axis=-1) * 4.0
        p = start[:, None, :] + direction[:, None, :] * s[..., None] + bend
        r = np.maximum(0.8, r0[:, None] * (1.0 - s / (seg_len[:, None] * 1.2)))
        out.append(np.concatenate([p, r[..., None]], axis=-1)[keep])
    return np.concatenate(out).astype(np.float64)


def _bowel_loops(rng: np.random.Generator, z_apex: float, length: float, spine_y: float) -> np.ndarray:
    """Random-walk loops filling the mid and lower abdomen and the pelvis; fluid, air or stool content."""
    n, steps = 16, 60
    p = np.stack([rng.uniform(-90, 90, n), rng.uniform(-70, spine_y - 25, n),
                  z_apex - rng.uniform(0.5, 0.88, n) * length], axis=1)
    radius = rng.uniform(8, 14, n)
    content = rng.choice([15.0, 25.0, -950.0, -300.0], size=n, p=[0.45, 0.2, 0.2, 0.15])
    kicks = rng.normal(size=(steps, n, 3))
    step = rng.normal(size=(n, 3))
    lo = np.array([-110.0, -85.0, z_apex - 0.9 * length])
    hi = np.array([110.0, spine_y - 20.0, z_apex - 0.5 * length])
    out = np.empty((steps, n, 5))
    for k in range(steps):
        step = 0.7 * step + 0.3 * kicks[k]
        step /= np.linalg.norm(step, axis=1, keepdims=True) + 1e-9
        p = np.clip(p + step * 4.0, lo, hi)
        out[k, :, :3] = p
        out[k, :, 3] = radius
        out[k, :, 4] = content
    return out.transpose(1, 0, 2).reshape(-1, 5)


def _normal_nodes(rng: np.random.Generator, z_apex: float, length: float, spine_y: float) -> np.ndarray:
    """Small normal nodes near the stations where enlarged ones appear, so size, not presence, marks disease."""
    nodes = []
    for _ in range(24):
        station = NODE_STATIONS[int(rng.integers(len(NODE_STATIONS)))]
        x, y, t = station_point(station, rng, spine_y)
        nodes.append((x, y, z_apex - t * length, rng.uniform(2.5, 4.5)))
    return np.asarray(nodes, dtype=np.float64)


# Lymph node stations: name -> (x range, y range relative to the spine centre or absolute, t range).
NODE_STATIONS = ("mediastinum", "abdomen", "retroperitoneum", "iliac", "pelvis")


def station_point(station: str, rng: np.random.Generator, spine_y: float) -> tuple[float, float, float]:
    """A plausible position (x, y, t) of a node at a station, next to the vessels that define it."""
    if station == "mediastinum":
        choices = [(-18.0, -5.0, 0.12, 0.19), (0.0, 12.0, 0.21, 0.26), (22.0, -8.0, 0.15, 0.2),
                   (5.0, -30.0, 0.1, 0.18)]
        x, y, t0, t1 = choices[int(rng.integers(len(choices)))]
        return x + rng.uniform(-5, 5), y + rng.uniform(-5, 5), rng.uniform(t0, t1)
    if station == "retroperitoneum":
        x = rng.choice([-38.0, 2.0, 36.0]) + rng.uniform(-4, 4)
        return x, spine_y - 32 + rng.uniform(-6, 6), rng.uniform(0.5, 0.66)
    if station == "abdomen":
        return rng.uniform(-35, 35), rng.uniform(-55, -20), rng.uniform(0.52, 0.66)
    if station == "iliac":
        t = rng.uniform(0.7, 0.84)
        side = rng.choice([-1.0, 1.0])
        return side * (_iliac_x(t) + rng.uniform(10, 16)), _iliac_y(t, spine_y) + rng.uniform(-8, 8), t
    side = rng.choice([-1.0, 1.0])
    return side * rng.uniform(42, 54), rng.uniform(0, 25), rng.uniform(0.87, 0.95)


def _iliac_x(t: float) -> float:
    return 12.0 + min(max(0.0, t - AORTIC_BIFURCATION_T), 0.15) * 300.0


def _iliac_y(t: float, spine_y: float) -> float:
    return spine_y - 30.0 - max(0.0, t - AORTIC_BIFURCATION_T) * 250.0


@functools.lru_cache(maxsize=64)
def _lut(labels: tuple[int, ...]) -> np.ndarray:
    """Membership table over label codes: ``_lut(codes)[label_map]`` is a fast ``np.isin``."""
    table = np.zeros(256, dtype=bool)
    table[list(labels)] = True
    return table


@functools.lru_cache(maxsize=256)
def _disk_offsets(r2: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels within sqrt(r2 / 4) pixels of a centre (radius in half pixels)."""
    r = math.sqrt(r2) / 2.0
    n = int(math.ceil(r))
    dy, dx = np.mgrid[-n:n + 1, -n:n + 1]
    keep = dy * dy + dx * dx <= r * r + 1e-9
    return dy[keep], dx[keep]


class _Canvas:
    """HU and label images on a regular grid, painted shape by shape on bounding windows."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.hu = np.full((y.size, x.size), -1000.0, dtype=np.float32)
        self.label = np.zeros((y.size, x.size), dtype=np.uint8)

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        i0, i1 = np.searchsorted(self.x, x0), np.searchsorted(self.x, x1, side="right")
        j0, j1 = np.searchsorted(self.y, y0), np.searchsorted(self.y, y1, side="right")
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(j0, j1), slice(i0, i1)

    def ellipse_mask(self, cx: float, cy: float, a: float, b: float, angle: float = 0.0):
        """Window and boolean mask of an ellipse with semi-axes a (along angle) and b."""
        if a <= 0 or b <= 0:
            return None, None
        r = max(a, b)
        win = self.window(cx - r, cx + r, cy - r, cy + r)
        if win is None:
            return None, None
        dx = self.x[win[1]][None, :] - cx
        dy = self.y[win[0]][:, None] - cy
        if angle:
            c, s = math.cos(angle), math.sin(angle)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        return win, (dx / a) ** 2 + (dy / b) ** 2 <= 1.0

    def paint(self, win, mask, hu: float, label: int, where: tuple[int, ...] | None = None) -> None:
        if win is None:
            return
        if where is not None:
            mask = mask & _lut(where)[self.label[win]]
        self.hu[win][mask] = hu
        self.label[win][mask] = label

    def ellipse(self, cx, cy, a, b, hu, label, angle=0.0, where=None) -> None:
        win, mask = self.ellipse_mask(cx, cy, a, b, angle)
        self.paint(win, mask, hu, label, where)

    def disks(self, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, hu, label: int | None, where) -> None:
        """Many small disks at once (vessels, bowel, nodes): pixel stamps grouped by radius."""
        if cx.size == 0:
            return
        step_x = self.x[1] - self.x[0] if self.x.size > 1 else 1.0
        step_y = self.y[1] - self.y[0] if self.y.size > 1 else 1.0
        ci = np.rint((cx - self.x[0]) / step_x).astype(np.int64)
        cj = np.rint((cy - self.y[0]) / step_y).astype(np.int64)
        r2 = np.maximum(1, np.rint((2.0 * r / step_x) ** 2)).astype(np.int64)
        hu = np.broadcast_to(np.asarray(hu, dtype=np.float32), cx.shape)
        lut = _lut(where)
        ny, nx = self.label.shape
        for value in np.unique(r2):
            sel = r2 == value
            dy, dx = _disk_offsets(int(value))
            jj = (cj[sel][:, None] + dy[None, :]).ravel()
            ii = (ci[sel][:, None] + dx[None, :]).ravel()
            vv = np.repeat(hu[sel], dy.size)
            ok = (jj >= 0) & (jj < ny) & (ii >= 0) & (ii < nx)
            jj, ii, vv = jj[ok], ii[ok], vv[ok]
            ok = lut[self.label[jj, ii]]
            self.hu[jj[ok], ii[ok]] = vv[ok]
            if label is not None:
                self.label[jj[ok], ii[ok]] = label

    def bone(self, cx, cy, a, b, label, angle=0.0, cortex=2.0, marrow_hu=220.0, cortex_hu=750.0) -> None:
        """Cortex ring around marrow, the look of every bone in the phantom."""
        self.ellipse(cx, cy, a, b, cortex_hu, label, angle)
        self.ellipse(cx, cy, a - cortex, b - cortex, marrow_hu, label, angle)


def _envelope(t: float, t0: float, t1: float) -> float:
    """Cross-section scale of an ellipsoid-like organ spanning t0..t1 (0 outside)."""
    if t <= t0 or t >= t1:
        return 0.0
    u = (2.0 * t - t0 - t1) / (t1 - t0)
    return math.sqrt(max(0.0, 1.0 - u * u))


def render_anatomy(body: PatientAnatomy, x: np.ndarray, y: np.ndarray, z: float,
                   contrast: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Paints the noise-free axial slice at height ``z`` on the grid ``x`` (columns) by ``y`` (rows).

    Args:
        body: the patient.
        x: ascending LPS x of the columns (mm).
        y: ascending LPS y of the rows (mm).
        z: LPS z of the slice (mm).
        contrast: 0 for a plain scan, 1 for a strong portal-venous phase; scales organ and vessel enhancement.

    Returns:
        ``(hu, label)``: float32 HU and uint8 label map (codes in :data:`LABEL_NAMES`), shape (len(y), len(x)).
    """
    cv = _Canvas(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    t = body.t_of(z)
    if t < -0.08 or t > 1.08:
        return cv.hu, cv.label
    s = body.organ_scale
    f = contrast
    aw, bw = body.width_at(t)
    # Body outline, subcutaneous fat, wall muscle, then the cavity background.
    cv.ellipse(0.0, 0.0, aw, bw, -100.0, FAT)
    inner_a, inner_b = aw - body.fat, bw - body.fat * 0.8
    cv.ellipse(0.0, 0.0, inner_a, inner_b, 45.0, MUSCLE)
    cav_a, cav_b = inner_a - body.muscle, inner_b - body.muscle
    chest = t < LUNG_BASE_T + 0.04
    cv.ellipse(0.0, 0.0, cav_a, cav_b, -90.0, VISCERA)
    sy = body.spine_y
    _paint_abdomen(cv, body, t, z, s, f, sy)
    if t > 0.62:
        _paint_pelvis(cv, body, t, s, f, sy)
    if chest:
        _paint_chest(cv, body, t, z, s, f, sy, cav_a, cav_b)
    _paint_spine(cv, body, t, z, s, sy)
    if t < 0.52:
        _paint_ribs(cv, body, t, z, inner_a, inner_b)
    _paint_points(cv, body.nodes, z, 35.0 + 15 * f, NODE, (VISCERA, MEDIASTINUM, FAT))
    return cv.hu, cv.label


def _paint_points(cv: _Canvas, points: np.ndarray, z: float, hu, label: int | None, where) -> None:
    """Spheres given as (x, y, z, r[, hu]) rows: each cut by the slice gives a disk."""
    dz = points[:, 2] - z
    sel = np.abs(dz) < points[:, 3]
    if not sel.any():
        return
    rows = points[sel]
    r = np.sqrt(np.maximum(0.25, rows[:, 3] ** 2 - dz[sel] ** 2))
    cv.disks(rows[:, 0], rows[:, 1], r, rows[:, 4] if hu is None else hu, label, where)


def _paint_abdomen(cv: _Canvas, body, t, z, s, f, sy) -> None:
    if 0.48 < t < 0.95:
        _paint_points(cv, body.bowel, z, None, BOWEL, (VISCERA,))
    # Psoas muscles along the lumbar spine into the pelvis.
    if 0.5 < t < 0.95:
        r = 8 + 20 * min(1.0, (t - 0.5) / 0.25)
        for side in (-1, 1):
            cv.ellipse(side * (30 + 30 * max(0.0, t - 0.6)), sy - 5 + 30 * max(0.0, t - 0.7), r, r * 0.9, 50.0, MUSCLE)
    e = _envelope(t, LIVER_T[0], LIVER_T[1])
    if e:
        liver_hu = 60.0 + 45 * f
        cv.ellipse(-62 * s, 5 * s, 88 * s * e ** 0.5, 82 * s * e ** 0.5, liver_hu, LIVER, angle=0.3)
        if t < 0.44:
            cv.ellipse(5 * s, -45 * s, 60 * s * e, 32 * s * e, liver_hu, LIVER, angle=-0.2)
        # Hepatic and portal veins: enhanced branching dots.
        for k in range(6):
            ang = k * 1.05 + t * 9
            cv.ellipse(-55 * s + 35 * math.cos(ang), 5 * s + 30 * math.sin(ang), 4, 4, liver_hu + 40 * f + 10, LIVER,
                       where=(LIVER,))
        gb = _envelope(t, 0.47, 0.56)
        if gb:
            cv.ellipse(-25 * s, -35 * s, 16 * gb, 12 * gb, 10.0, GALLBLADDER, where=(LIVER, VISCERA))
    e = _envelope(t, *SPLEEN_T)
    if e:
        cv.ellipse(78 * s, 45 * s, 48 * s * e, 28 * s * e, 50.0 + 60 * f, SPLEEN, angle=-0.9)
    e = _envelope(t, 0.36, 0.48)
    if e:
        cv.ellipse(45 * s, -25 * s, 45 * s * e, 35 * s * e, 40.0 + 30 * f, STOMACH, angle=0.4)
        cv.ellipse(45 * s, -25 * s, 38 * s * e, 28 * s * e, 12.0, STOMACH, angle=0.4)
        win, mask = cv.ellipse_mask(45 * s, -25 * s, 38 * s * e, 28 * s * e, 0.4)
        if win is not None:
            mask &= cv.y[win[0]][:, None] < -35 * s
            cv.paint(win, mask, -1000.0, STOMACH)
    e = _envelope(t, *PANCREAS_T)
    if e:
        for k in range(6):
            u = k / 5.0
            cv.ellipse((-25 + 95 * u) * s, (-12 + 18 * u) * s + 8 * math.sin(3 * u), 14 * e, 10 * e, 45.0 + 45 * f,
                       PANCREAS)
    e = _envelope(t, *ADRENAL_T)
    if e:
        for side in (-1, 1):
            cv.ellipse(side * 42 * s, sy - 18, 13 * e, 3.2, 30.0 + 25 * f, ADRENAL, angle=side * 1.1)
    for side, label in ((-1, KIDNEY_R), (1, KIDNEY_L)):
        shift = body.kidney_shift if side < 0 else 0.0
        e = _envelope(t, KIDNEY_T[0] + shift, KIDNEY_T[1] + shift)
        if e:
            cx, cy, ang = side * 70 * s, sy - 2, side * 0.55
            cv.ellipse(cx, cy, 32 * s * e ** 0.6, 24 * s * e ** 0.6, 30.0 + 130 * f, label, angle=ang)
            cv.ellipse(cx, cy, 22 * s * e ** 0.6, 15 * s * e ** 0.6, 30.0 + 60 * f, label, angle=ang)
            cv.ellipse(cx - side * 12, cy - 10, 6 * e, 5 * e, -80.0, label, angle=ang)
    # Aorta and IVC behind the organs, then the common and external iliac vessels.
    if LIVER_T[0] - 0.02 < t < AORTIC_BIFURCATION_T:
        cv.ellipse(16, sy - 30, 11 * s, 11 * s, 40.0 + 160 * f, VESSEL)
        if t > 0.4:
            cv.ellipse(-20, sy - 28, 12 * s, 9 * s, 40.0 + 110 * f, VESSEL)
    elif AORTIC_BIFURCATION_T <= t < 0.95:
        xi, yi = _iliac_x(t), _iliac_y(t, sy)
        for side in (-1, 1):
            cv.ellipse(side * xi, yi, 7, 7, 40.0 + 160 * f, VESSEL)
            cv.ellipse(side * (xi - 6), yi + 12, 9, 7, 40.0 + 110 * f, VESSEL)


def _paint_pelvis(cv: _Canvas, body, t, s, f, sy) -> None:
    for side in (-1, 1):
        if 0.66 < t < 0.86:  # iliac wing: a plate from the sacroiliac joint to the anterior iliac spine
            e = _envelope(t, 0.64, 0.9)
            cv.ellipse(side * 125 * s, 80 * s, 60 * s, 45 * s, 45.0, MUSCLE, angle=-side * 0.6, where=_SOFT)
            cv.bone(side * 85 * s, (25 + 30 * (t - 0.66)) * s, 62 * s * e, 8.0, PELVIC_BONE,
                    angle=-side * 0.75, cortex=2.5)
        if t > 0.85:
            cv.ellipse(side * 112 * s, 55 * s, 60 * s, 42 * s, 45.0, MUSCLE, angle=-side * 0.5, where=_SOFT)
            cv.ellipse(side * 72 * s, 0.0, 9, 28 * s, 45.0, MUSCLE)
            cv.bone(side * 92 * s, 12 * s, 30 * s, 30 * s, PELVIC_BONE, cortex=3.0)
            cv.bone(side * 92 * s, 12 * s, 22 * s, 22 * s, OTHER_BONE, cortex=2.0)
        if t > 0.93:
            cv.bone(side * 35 * s, -72 * s, 30 * s, 9.0, PELVIC_BONE, angle=side * 0.35)
            cv.bone(side * 62 * s, 42 * s, 16 * s, 16 * s, PELVIC_BONE)
    e = _envelope(t, *BLADDER_T)
    if e:
        cv.ellipse(0.0, -40 * s, 48 * s * e, 36 * s * e, 10.0, BLADDER)
    if t > 0.82:
        cv.ellipse(0.0, 48 * s, 16 * s, 14 * s, 20.0, BOWEL)
        cv.ellipse(0.0, 44 * s, 6 * s, 5 * s, -900.0, BOWEL)


def _paint_chest(cv: _Canvas, body, t, z, s, f, sy, cav_a, cav_b) -> None:
    """Lungs with lobes and diaphragm domes, then mediastinum, heart, great vessels and airways."""
    win = cv.window(-cav_a, cav_a, -cav_b, cav_b)
    if win is None:
        return
    xs = cv.x[win[1]][None, :]
    ys = cv.y[win[0]][:, None]
    apex = min(1.0, max(0.0, (t + 0.04) / 0.12))
    la, lb = cav_a * (0.55 + 0.45 * apex), cav_b * (0.6 + 0.4 * apex)
    inside = (xs / la) ** 2 + (ys / lb) ** 2 <= 1.0
    mid = 24 * s + (18 * s if 0.2 < t < 0.4 else 0.0)
    hx = 10 if 0.2 < t < 0.4 else 0
    inside &= ((xs - hx) / mid) ** 2 + ((ys + 5) / (cav_b * 0.97)) ** 2 > 1.0
    inside &= (xs / 44) ** 2 + ((ys - sy - 5) / 40) ** 2 > 1.0
    # Diaphragm domes: highest at the centre of each hemithorax, so bases show the liver inside a lung rim.
    cx = np.where(xs < 0, -0.5 * la, 0.5 * la)
    rr = ((xs - cx) / (0.5 * la)) ** 2 + (ys / lb) ** 2
    base = LUNG_BASE_T + np.where(xs < 0, -0.015, 0.0)
    dome_t = base - body.dome * 1.6 * np.clip(1.0 - rr, 0.0, 1.0)
    inside &= t < dome_t
    if not inside.any():
        return
    # Lobes: the oblique fissure runs from posterior-superior to anterior-inferior; the minor fissure is level.
    v = ys / lb
    u = t / LUNG_BASE_T
    lower = v > 0.95 - 2.1 * u
    right = xs < 0
    lobe = np.where(right, np.where(lower, RLL, np.where(u < 0.55, RUL, RML)), np.where(lower, LLL, LUL))
    lab = cv.label[win]
    hu = cv.hu[win]
    lab[inside] = np.broadcast_to(lobe, inside.shape)[inside]
    hu[inside] = -860.0
    # Vessels: thin dense dots and branches only inside the lungs.
    _paint_points(cv, body.vessels, z, 40.0 + 120 * f, None, LUNG_LABELS)
    # Mediastinum contents.
    if t < 0.42:
        cv.ellipse(hx, -5.0, mid, cav_b * 0.97, -90.0, MEDIASTINUM, where=(VISCERA, MEDIASTINUM))
        e = _envelope(t, 0.2, 0.42)
        if e:
            cv.ellipse(18 * s, -12 * s, 70 * s * e ** 0.5, 55 * s * e ** 0.5, 40.0 + 110 * f, HEART, angle=0.5)
        if t < 0.21:
            cv.ellipse(0.0, sy - 55, 9, 8, -1000.0, AIRWAY)
        elif t < 0.27:
            for side in (-1, 1):
                cv.ellipse(side * (14 + 300 * (t - 0.21)), sy - 50, 6, 5, -1000.0, AIRWAY)
        cv.ellipse(8.0, sy - 40, 7, 6, 40.0, MUSCLE)  # oesophagus
        if 0.1 < t < 0.13:
            cv.ellipse(8.0, sy - 60, 35, 12, 40.0 + 160 * f, VESSEL, angle=-0.9)
        if 0.12 < t < 0.3:
            cv.ellipse(-8.0, -20.0, 15 * s, 15 * s, 40.0 + 160 * f, VESSEL)
        if t > 0.11:
            cv.ellipse(18.0, sy - 28, 12 * s, 12 * s, 40.0 + 160 * f, VESSEL)
        if 0.05 < t < 0.22:
            cv.ellipse(-26.0, -18.0, 10, 9, 40.0 + 140 * f, VESSEL)
        if 0.18 < t < 0.25:
            cv.ellipse(12.0, -28.0, 15, 14, 40.0 + 140 * f, VESSEL)
        if 0.05 < t < 0.38:
            cv.bone(0.0, -(cav_b + body.muscle * 0.5), 16.0, 6.0, OTHER_BONE)


def _paint_spine(cv: _Canvas, body, t, z, s, sy) -> None:
    if t > 0.95:
        return
    r = (13 + 10 * min(1.0, max(0.0, (t - 0.2) / 0.5))) * s
    if t < 0.72:
        for side in (-1, 1):
            cv.ellipse(side * 32, sy + r + 22, 24, 20, 50.0, MUSCLE)
        period = 24.0 if t < 0.45 else 34.0
        if ((z / period) % 1.0) < 0.18:
            cv.ellipse(0.0, sy, r, r * 0.85, 85.0, DISC)
        else:
            cv.bone(0.0, sy, r, r * 0.85, SPINE, cortex=1.6, marrow_hu=230.0, cortex_hu=720.0)
        cv.bone(0.0, sy + r + 8, 12, 11, SPINE, cortex=4.0, marrow_hu=250.0)
        cv.ellipse(0.0, sy + r + 8, 7.5, 6.5, 10.0, CANAL)
        cv.bone(0.0, sy + r + 24, 4.5, 12, SPINE, cortex=1.5)
        if t > 0.48:
            for side in (-1, 1):
                cv.bone(side * 28 * s, sy + r + 4, 16, 4.5, SPINE, cortex=1.2)
    else:
        e = _envelope(t, 0.7, 0.92)
        cv.bone(0.0, sy + 20, 48 * s * e + 8, 20 * s * e + 6, SACRUM, cortex=2.0)
        cv.ellipse(0.0, sy + 22, 10 * e + 2, 6 * e + 2, 10.0, CANAL)


def _paint_ribs(cv: _Canvas, body, t, z, inner_a, inner_b) -> None:
    """Ribs cut obliquely: arcs on the inner chest wall whose angular phase moves with z."""
    ring_in_a, ring_in_b = inner_a - body.muscle - 1.0, inner_b - body.muscle - 1.0
    ring_out_a, ring_out_b = ring_in_a + 9.0, ring_in_b + 9.0
    win = cv.window(-ring_out_a, ring_out_a, -ring_out_b, ring_out_b)
    if win is None:
        return
    xs = cv.x[win[1]][None, :]
    ys = cv.y[win[0]][:, None]
    q_out = (xs / ring_out_a) ** 2 + (ys / ring_out_b) ** 2
    q_in = (xs / ring_in_a) ** 2 + (ys / ring_in_b) ** 2
    ring = (q_out <= 1.0) & (q_in > 1.0)
    phi = np.degrees(np.arctan2(np.abs(xs), ys))  # 0 at the spine, 180 anteriorly
    phase = (phi / 22.0 + z / 21.0) % 1.0
    rib = ring & (phase < 0.33) & (phi > 18) & (phi < 150) & _lut((MUSCLE, VISCERA, FAT))[cv.label[win]]
    core = rib & (q_out <= 0.985) & (q_in > 1.02)
    cartilage = phi > 125
    lab, hu = cv.label[win], cv.hu[win]
    lab[rib] = RIB
    hu[rib] = np.broadcast_to(np.where(cartilage, 140.0, 780.0), rib.shape)[rib]
    hu[core & ~cartilage] = 260.0
