"""Series geometry and noisy CT slices with lesions; one whole phantom volume in memory.

Slices are numbered like DeepLesion's PNGs: index 1 is the most superior slice and the index grows towards the
feet, so slice k lies at ``z_top - (k - 1) * interval``. Columns run from the patient's right to left (+x) and
rows from anterior to posterior (+y), DeepLesion's display orientation; the matching LPS direction matrix is
``diag(1, 1, -1)``. Each slice's noise is seeded by (series seed, slice index), so a slice is the same byte
for byte whether it is written as a PNG or as part of a whole volume.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import anatomy as an
from .lesions import LesionSpec, paint_lesion, recist, sample_lesion, site_range
from .terms import PHANTOM_BODYPARTS

# Scan regions as body-level (t) ranges.
REGIONS = {
    "chest": (-0.04, 0.5),
    "abdomen": (0.3, 0.74),
    "pelvis": (0.62, 1.03),
    "chest_abdomen_pelvis": (-0.04, 1.03),
}
SLICE_INTERVALS = (1.0, 1.25, 2.0, 2.5, 5.0)
LPS_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class SeriesGeometry:
    """The slice grid of one series: square ``size`` pixels, in-plane ``spacing`` and slice ``interval`` (mm)."""

    size: int
    spacing: float
    interval: float
    z_top: float
    n_slices: int

    @property
    def x(self) -> np.ndarray:
        return (np.arange(self.size) - (self.size - 1) / 2.0) * self.spacing

    @property
    def y(self) -> np.ndarray:
        return self.x

    @property
    def origin(self) -> tuple[float, float, float]:
        return float(self.x[0]), float(self.y[0]), float(self.z_top)

    def z_of(self, index: int) -> float:
        """LPS z of 1-based slice ``index``."""
        return self.z_top - (index - 1) * self.interval

    def index_of(self, z: float) -> int:
        """1-based index of the slice nearest to ``z``."""
        return int(np.clip(round((self.z_top - z) / self.interval) + 1, 1, self.n_slices))


def series_geometry(body: an.PatientAnatomy, region: str, interval: float, size: int = 256) -> SeriesGeometry:
    """A field of view that holds the body with a margin, as a CT technologist would set it."""
    t0, t1 = REGIONS[region]
    widest = max(body.width_at(t)[0] for t in np.linspace(t0, t1, 12))
    spacing = round(2.0 * (widest + 12.0) / size, 6)
    z_top = body.z_of(t0)
    n = int(math.floor((t1 - t0) * body.length / interval)) + 1
    return SeriesGeometry(size, spacing, float(interval), z_top, n)


def render_slice(body: an.PatientAnatomy, geom: SeriesGeometry, index: int, lesions: list[LesionSpec],
                 contrast: float, noise_hu: float, seed: int, masks: dict | None = None) -> np.ndarray:
    """The noisy HU image of slice ``index`` with ``lesions`` blended in.

    Args:
        masks: when a dict is given, ``masks[i]`` receives the full-size weight image of lesion ``i`` on this
            slice (lesions that miss the slice are absent); used to measure the key slice.
    """
    from scipy import ndimage

    x, y = geom.x, geom.y
    z = geom.z_of(index)
    hu, _ = an.render_anatomy(body, x, y, z, contrast)
    for i, lesion in enumerate(lesions):
        painted = paint_lesion(hu, x, y, z, lesion)
        if painted is not None and masks is not None:
            full = np.zeros(hu.shape, dtype=np.float32)
            full[painted[0]] = painted[1]
            masks[i] = full
    # One 2 x 2 box filter does both: the scanner's point spread on the anatomy and correlated quantum noise
    # (white noise of 2 sigma averaged over 4 pixels has standard deviation sigma).
    rng = np.random.default_rng([seed, index])
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu * 2.0)
    hu = ndimage.uniform_filter(hu, size=2)
    return np.clip(hu, -1024.0, 3071.0, out=hu)


def snap_to_slice(spec: LesionSpec, geom: SeriesGeometry) -> LesionSpec:
    """Moves the lesion centre onto its nearest slice, so its key slice cuts it through the middle."""
    z = geom.z_of(geom.index_of(spec.center[2]))
    return dataclasses.replace(spec, center=(spec.center[0], spec.center[1], z))


def sites_for_region(region: str) -> list[str]:
    """Body parts whose lesion level range overlaps the region."""
    t0, t1 = REGIONS[region]
    out = []
    for part in PHANTOM_BODYPARTS:
        s0, s1 = site_range(part)
        # At least ~2.5 cm of the organ's lesion range is scanned (most of it for small organs).
        if min(s1, t1) - max(s0, t0) >= min(0.04, 0.8 * (s1 - s0)):
            out.append(part)
    return out


@dataclass(frozen=True)
class PhantomLesion:
    """A lesion as placed in a volume: its truth and where it is, in voxels and in LPS millimetres.

    ``box_ijk`` is (i1, j1, i2, j2, k): 0-based inclusive columns/rows on the 0-based key slice k, the
    ``--box-ijk`` convention of the CLI; ``box_lps`` is (x1, y1, x2, y2, z).
    """

    spec: LesionSpec
    key_index: int                                     # 1-based, like DeepLesion's Key_slice_index
    long_axis: tuple[float, float, float, float]       # 0-based pixel (col, row) endpoints on the key slice
    short_axis: tuple[float, float, float, float]
    box_ijk: tuple[int, int, int, int, int]
    box_lps: tuple[float, float, float, float, float]
    center_lps: tuple[float, float, float]


def measure(geom: SeriesGeometry, spec: LesionSpec, key_index: int, weight: np.ndarray) -> PhantomLesion:
    """RECIST axes and DeepLesion-style box (axes' extent padded by 5 px) of a lesion on its key slice."""
    mask = weight >= 0.5
    if not mask.any():
        mask = weight >= weight.max() * 0.5
    long_axis, short_axis = recist(mask)
    # Radiologists click between pixel centres: sub-pixel endpoints, as in DeepLesion's measurements.
    jitter = np.random.default_rng(spec.seed).uniform(-0.5, 0.5, size=8)
    long_axis = tuple(np.asarray(long_axis) + jitter[:4])
    short_axis = tuple(np.asarray(short_axis) + jitter[4:])
    xs = [long_axis[0], long_axis[2], short_axis[0], short_axis[2]]
    ys = [long_axis[1], long_axis[3], short_axis[1], short_axis[3]]
    rows, cols = np.nonzero(mask)
    # DeepLesion pads the measured extent by 5 pixels; the mask extent keeps spicules inside the box too.
    i1 = int(max(0, math.floor(min(min(xs), cols.min()) - 5)))
    j1 = int(max(0, math.floor(min(min(ys), rows.min()) - 5)))
    i2 = int(min(geom.size - 1, math.ceil(max(max(xs), cols.max()) + 5)))
    j2 = int(min(geom.size - 1, math.ceil(max(max(ys), rows.max()) + 5)))
    x, y = geom.x, geom.y
    z = geom.z_of(key_index)
    return PhantomLesion(spec, key_index, tuple(float(v) for v in long_axis), tuple(float(v) for v in short_axis),
                         (i1, j1, i2, j2, key_index - 1), (float(x[i1]), float(y[j1]), float(x[i2]), float(y[j2]), z),
                         spec.center)


def make_phantom_volume(seed: int = 0, region: str = "abdomen", n_lesions: int = 3, size: int = 256,
                        interval: float = 2.5, bodyparts: list[str] | None = None, contrast: float = 0.8,
                        noise_hu: float = 14.0):
    """Builds one phantom CT volume with known lesions, in memory (the demo's CT made on the fly).

    Args:
        seed: everything (patient, lesions, noise) follows from it.
        region: one of ``REGIONS`` (chest, abdomen, pelvis, chest_abdomen_pelvis).
        n_lesions: lesions to place; body parts drawn among those in the region unless ``bodyparts`` is given.
        size: columns = rows.
        interval: slice spacing (mm).
        bodyparts: body part term of each lesion (length ``n_lesions``), e.g. ``["liver", "right kidney"]``.
        contrast: 0 plain .. 1 strong enhancement.
        noise_hu: standard deviation of the image noise (HU).

    Returns:
        ``(voxels, spacing, origin, direction, lesions)``: float32 HU array indexed [k, j, i] (slice, row,
        column), spacing (x, y, z) mm, LPS origin of voxel (0, 0, 0), the 3 x 3 direction matrix row-major
        (``diag(1, 1, -1)``: slice index grows towards the feet), and a list of :class:`PhantomLesion`.

    Example:
        >>> vox, spacing, origin, direction, lesions = make_phantom_volume(seed=1, n_lesions=1, size=64,
        ...                                                                interval=5.0)
        >>> vox.shape[1:], len(lesions)
        ((64, 64), 1)
    """
    from ..errors import invalid

    if region not in REGIONS:
        raise invalid("region", f"must be one of {sorted(REGIONS)}", region)
    if n_lesions < 0:
        raise invalid("n_lesions", "must be >= 0", n_lesions)
    if size < 32:
        raise invalid("size", "must be >= 32 pixels", size)
    if interval <= 0:
        raise invalid("interval", "must be > 0 mm", interval)
    allowed = sites_for_region(region)
    if bodyparts is not None:
        if len(bodyparts) != n_lesions:
            raise invalid("bodyparts", f"must list one body part per lesion ({n_lesions})", bodyparts)
        for part in bodyparts:
            if part not in allowed:
                raise invalid("bodyparts", f"must be body parts found in the {region} region {allowed}", part)
    rng = np.random.default_rng(seed)
    body = an.make_patient(rng, sex=str(rng.choice(["M", "F"])))
    geom = series_geometry(body, region, interval, size)
    parts = bodyparts or [allowed[int(rng.integers(len(allowed)))] for _ in range(n_lesions)]
    t_range = REGIONS[region]
    specs = [snap_to_slice(sample_lesion(body, rng, part, contrast, t_range), geom) for part in parts]
    noise_seed = int(rng.integers(2**31))
    voxels = np.empty((geom.n_slices, size, size), dtype=np.float32)
    keys = [geom.index_of(s.center[2]) for s in specs]
    placed: dict[int, PhantomLesion] = {}
    for k in range(1, geom.n_slices + 1):
        masks: dict = {}
        voxels[k - 1] = render_slice(body, geom, k, specs, contrast, noise_hu, noise_seed, masks)
        for i, key in enumerate(keys):
            if key == k and i in masks:
                placed[i] = measure(geom, specs[i], key, masks[i])
    lesions = [placed[i] for i in sorted(placed)]
    spacing = (geom.spacing, geom.spacing, geom.interval)
    return voxels, spacing, geom.origin, LPS_DIRECTION, lesions
