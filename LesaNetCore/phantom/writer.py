"""Writes a phantom data set in the DeepLesion layout.

``DIR/DL_info.csv`` has DeepLesion's 18 columns with its value formats (1-based pixel coordinates, quoted
comma-separated lists); ``DIR/Images_png/<pid>_<study>_<series>/<NNN>.png`` are 16-bit PNGs holding HU + 32768,
only the key slices and their neighbours; ``sentences.jsonl`` holds one report sentence per lesion and
``truth.jsonl`` what each lesion really is; ``volumes/`` holds a few whole series as LPS NIfTI with their
lesions, for end-to-end tests of annotation. Every patient draws from its own seeded stream, so the same seed
gives the same bytes in DL_info.csv, sentences.jsonl and truth.jsonl.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LesaNetError, invalid
from ..fileio import atomic_path, write_text_atomic
from . import anatomy as an
from .lesions import sample_lesion, site_group
from .sentences import make_sentence
from .terms import COARSE_TYPE
from .volume import (
    LPS_DIRECTION,
    REGIONS,
    SLICE_INTERVALS,
    PhantomLesion,
    measure,
    render_slice,
    series_geometry,
    sites_for_region,
    snap_to_slice,
)

PHANTOM_VERSION = "1.0"
GENERATOR = "LesaNetCore.phantom"
DL_INFO_COLUMNS = (
    "File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
    "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
    "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
    "Patient_age", "Train_Val_Test",
)
_REGION_P = {"chest": 0.35, "abdomen": 0.35, "pelvis": 0.15, "chest_abdomen_pelvis": 0.15}
_INTERVAL_P = (0.1, 0.1, 0.1, 0.2, 0.5)
_OUTPUTS = ("DL_info.csv", "sentences.jsonl", "truth.jsonl", "manifest.json", "README.txt", "Images_png", "volumes")


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote."""

    out_dir: Path
    seed: int
    n_lesions: int
    n_patients: int
    n_studies: int
    n_images: int
    n_volumes: int
    splits: dict = field(default_factory=dict)   # split name -> number of patients
    seconds: float = 0.0


def _num(v: float) -> str:
    return format(float(v), ".6g")


def _nums(values) -> str:
    return ", ".join(_num(v) for v in values)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise invalid("--out", "must be a folder", str(out_dir))
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise LesaNetError(f"--out: refusing to write into a non-empty folder (pass --overwrite), but got {str(out_dir)!r}")
        manifest = out_dir / "manifest.json"
        # Remove only an earlier phantom's own outputs, so stale slices of a bigger run do not linger.
        if manifest.is_file():
            try:
                ours = json.loads(manifest.read_text(encoding="utf-8")).get("generator") == GENERATOR
            except (OSError, ValueError):
                ours = False
            if ours:
                for name in _OUTPUTS:
                    path = out_dir / name
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _plan(seed: int, n_lesions: int) -> list[list[int]]:
    """Lesions per study for each patient, drawn up front so patients can be rendered independently."""
    rng = np.random.default_rng([seed, 0])
    plan, remaining = [], n_lesions
    while remaining > 0:
        studies = []
        for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))):
            k = min(remaining, int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15])))
            if k == 0:
                break
            studies.append(k)
            remaining -= k
        plan.append(studies)
    return plan


def _splits(n_patients: int, seed: int) -> np.ndarray:
    """Train/val/test (1/2/3) per patient, ~70/15/15, with at least one val and test patient when possible."""
    rng = np.random.default_rng([seed, 1])
    n_val = max(1, round(0.15 * n_patients)) if n_patients >= 3 else 0
    n_test = max(1, round(0.15 * n_patients)) if n_patients >= 3 else 0
    split = np.ones(n_patients, dtype=int)
    order = rng.permutation(n_patients)
    split[order[:n_val]] = 2
    split[order[n_val:n_val + n_test]] = 3
    return split


def _window(bodypart: str) -> str:
    group = site_group(bodypart)
    if group in ("lung", "pleura"):
        return "-1500, 500"
    if group == "bone":
        return "-450, 1050"
    return "-175, 275"


def png16_bytes(image: np.ndarray) -> bytes:
    """Encodes a uint16 image as a grey 16-bit PNG.

    Written here rather than with Pillow because PNG encoding was a third of the synthesis time: the Sub
    filter plus Huffman-only deflate is 3x faster than Pillow's encoder and compresses CT noise as well.
    """
    if image.dtype != np.uint16 or image.ndim != 2:
        raise invalid("image", "must be a 2-D uint16 array", f"{image.dtype} {image.shape}")
    height, width = image.shape
    raw = image.astype(">u2").view(np.uint8).reshape(height, 2 * width)
    filtered = raw.copy()
    filtered[:, 2:] = raw[:, 2:] - raw[:, :-2]  # Sub filter, 2 bytes per pixel; uint8 wraps modulo 256
    rows = np.hstack([np.ones((height, 1), dtype=np.uint8), filtered]).tobytes()
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    idat = packer.compress(rows) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _write_png(path: Path, hu: np.ndarray) -> None:
    data = (np.rint(hu).astype(np.int32) + 32768).clip(0, 65535).astype(np.uint16)
    with atomic_path(path, "png", overwrite=True) as tmp:
        tmp.write_bytes(png16_bytes(data))


def _patient_start(seed: int, pid: int):
    """The patient's own random stream, sex, age and body: the same for rendering and for whole volumes."""
    rng = np.random.default_rng([seed, 2, pid])
    sex = str(rng.choice(["M", "F"]))
    age = int(rng.integers(25, 86))
    return rng, sex, age, an.make_patient(rng, sex)


def _render_patient(job: tuple[int, int, list[int], Path]):
    """Renders one patient's studies and writes their PNGs; returns the lesion records and the image count."""
    seed, pid, studies, out_dir = job
    rng, sex, age, body = _patient_start(seed, pid)
    records, n_images = [], 0
    for study_idx, n_les in enumerate(studies, start=1):
        regions = list(_REGION_P)
        region = regions[int(rng.choice(len(regions), p=list(_REGION_P.values())))]
        interval = float(SLICE_INTERVALS[int(rng.choice(len(SLICE_INTERVALS), p=_INTERVAL_P))])
        contrast = float(rng.uniform(0.45, 1.0))
        noise_hu = float(rng.uniform(10, 20))
        geom = series_geometry(body, region, interval)
        sites = sites_for_region(region)
        specs, parts = [], []
        for _ in range(n_les):
            # Lesions cluster: a second lesion often shares the first one's organ (multiple metastases, nodes).
            part = parts[-1] if parts and rng.random() < 0.35 else sites[int(rng.integers(len(sites)))]
            parts.append(part)
            specs.append(snap_to_slice(sample_lesion(body, rng, part, contrast, REGIONS[region]), geom))
        noise_seed = int(rng.integers(2**31))
        keys = [geom.index_of(s.center[2]) for s in specs]
        half = int(math.ceil(2.0 / interval)) + 1
        ranges = [(max(1, k - half), min(geom.n_slices, k + half)) for k in keys]
        needed = sorted({i for lo, hi in ranges for i in range(lo, hi + 1)})
        folder = out_dir / "Images_png" / f"{pid:06d}_{study_idx:02d}_01"
        placed: dict[int, PhantomLesion] = {}
        for k in needed:
            masks: dict = {} if k in keys else None
            hu = render_slice(body, geom, k, specs, contrast, noise_hu, noise_seed, masks)
            _write_png(folder / f"{k:03d}.png", hu)
            n_images += 1
            for i, key in enumerate(keys):
                if key == k and masks is not None and i in masks:
                    placed[i] = measure(geom, specs[i], key, masks[i])
        series = dict(pid=pid, study=study_idx, region=region, geom=geom, contrast=contrast, noise_hu=noise_hu,
                      noise_seed=noise_seed, specs=specs, sex=sex, age=age + 2 * (study_idx - 1))
        for i, spec in enumerate(specs):
            if i not in placed:
                continue
            lesion = placed[i]
            others = [j for j in placed if j != i]
            other = placed[others[int(rng.integers(len(others)))]].spec if others and rng.random() < 0.2 else None
            long_px = math.dist(lesion.long_axis[:2], lesion.long_axis[2:])
            short_px = math.dist(lesion.short_axis[:2], lesion.short_axis[2:])
            sentence = make_sentence(rng, spec, long_px * geom.spacing, short_px * geom.spacing, other)
            records.append((series, lesion, ranges[i], sentence, long_px, short_px, body.t_of(spec.center[2])))
    return records, n_images


def synthesize(out_dir: str | os.PathLike, n_lesions: int, seed: int = 0, overwrite: bool = False,
               n_volumes: int = 2, progress: bool = True, workers: int | None = None) -> SynthSummary:
    """Writes a phantom DeepLesion-layout data set of ``n_lesions`` lesions into ``out_dir``.

    Args:
        out_dir: target folder; must be empty or absent unless ``overwrite``.
        n_lesions: number of lesions (rows of DL_info.csv).
        seed: the whole data set follows from it.
        overwrite: write into a non-empty folder (an earlier phantom's outputs there are removed first).
        n_volumes: how many whole series to also write as NIfTI volumes under ``volumes/``.
        progress: show a tqdm progress bar.
        workers: processes rendering patients in parallel; default 2 (or the CPU count if lower) for 300
            lesions and more, else 1. The output does not depend on it.

    Raises:
        LesaNetError: bad arguments or a non-empty ``out_dir`` without ``overwrite``.
    """
    from tqdm import tqdm

    if isinstance(n_lesions, bool) or not isinstance(n_lesions, (int, np.integer)) or n_lesions < 1:
        raise invalid("--lesions", "must be a positive integer", n_lesions)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid("--seed", "must be a non-negative integer", seed)
    if n_volumes < 0:
        raise invalid("n_volumes", "must be >= 0", n_volumes)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    plan = _plan(int(seed), int(n_lesions))
    records, n_images = [], 0
    jobs = [(int(seed), pid, studies, out_dir) for pid, studies in enumerate(plan, start=1)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n_lesions >= 300 else 1
    with tqdm(total=n_lesions, unit="lesion", desc="synth", disable=not progress) as bar:
        if workers > 1:
            import multiprocessing

            # spawn, not fork: callers may hold threads (torch, Qt) that fork would copy in a broken state.
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for (recs, imgs), job in zip(pool.imap(_render_patient, jobs, chunksize=4), jobs, strict=True):
                    records.extend(recs)
                    n_images += imgs
                    bar.update(sum(job[2]))
        else:
            for job in jobs:
                recs, imgs = _render_patient(job)
                records.extend(recs)
                n_images += imgs
                bar.update(sum(job[2]))
    split = _splits(len(plan), int(seed))
    _write_tables(out_dir, records, split)
    n_vol = _write_volumes(out_dir, records, int(seed), n_volumes)
    splits = {name: int((split == code).sum()) for code, name in ((1, "train"), (2, "val"), (3, "test"))}
    n_studies = sum(len(s) for s in plan)
    manifest = {
        "generator": GENERATOR, "version": PHANTOM_VERSION, "seed": int(seed), "n_lesions": len(records),
        "n_patients": len(plan), "n_studies": n_studies, "n_images": n_images, "n_volumes": n_vol,
        "image_size": 256, "png_encoding": "uint16 HU + 32768",
        "slice_order": "index 1 is the most superior slice; LPS direction diag(1, 1, -1)",
        "truth_terms": "most specific ontology terms; ancestors are left to label expansion",
        "splits_patients": splits,
    }
    write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n", "manifest", overwrite=True)
    write_text_atomic(out_dir / "README.txt", _readme(manifest), "README", overwrite=True)
    return SynthSummary(out_dir, int(seed), len(records), len(plan), n_studies, n_images, n_vol, splits,
                        time.perf_counter() - start)


def _write_tables(out_dir: Path, records, split: np.ndarray) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(DL_INFO_COLUMNS)
    sentences, truth = [], []
    for idx, (series, lesion, (lo, hi), sentence, long_px, short_px, t) in enumerate(records):
        geom, spec, pid = series["geom"], lesion.spec, series["pid"]
        code = int(split[pid - 1])
        la, sa = lesion.long_axis, lesion.short_axis
        i1, j1, i2, j2, _ = lesion.box_ijk
        cx = (spec.center[0] - geom.x[0]) / geom.spacing
        cy = (spec.center[1] - geom.y[0]) / geom.spacing
        name = f"{pid:06d}_{series['study']:02d}_01_{lesion.key_index:03d}.png"
        writer.writerow([
            name, pid, series["study"], 1, lesion.key_index,
            _nums([v + 1 for v in (*la, *sa)]), _nums([i1 + 1, j1 + 1, i2 + 1, j2 + 1]), _nums([long_px, short_px]),
            _nums([cx / geom.size, cy / geom.size, 0.38 + 0.45 * t]),
            -1 if code == 1 else COARSE_TYPE[spec.bodypart], 0, f"{lo}, {hi}",
            _nums([geom.spacing, geom.spacing, geom.interval]), f"{geom.size}, {geom.size}", _window(spec.bodypart),
            series["sex"], series["age"], code,
        ])
        sentences.append(json.dumps({"id": idx, "text": sentence}))
        truth.append(json.dumps({
            "id": idx, "patient": pid, "study": series["study"], "file_name": name, "labels": spec.labels,
            "bodypart": spec.bodypart, "type": spec.type, "attributes": list(spec.attributes),
            "diameter_mm": round(spec.diameter_mm, 2), "center_lps": [round(v, 3) for v in spec.center],
        }))
    write_text_atomic(out_dir / "DL_info.csv", buf.getvalue(), "DL_info.csv", overwrite=True)
    write_text_atomic(out_dir / "sentences.jsonl", "\n".join(sentences) + "\n", "sentences", overwrite=True)
    write_text_atomic(out_dir / "truth.jsonl", "\n".join(truth) + "\n", "truth", overwrite=True)


def _write_volumes(out_dir: Path, records, seed: int, n_volumes: int) -> int:
    """Whole series (the shortest ones, to stay fast) as LPS NIfTI plus a JSON of their lesions."""
    if n_volumes == 0:
        return 0
    import SimpleITK as sitk

    seen: dict[tuple[int, int], dict] = {}
    for idx, (series, lesion, *_rest) in enumerate(records):
        entry = seen.setdefault((series["pid"], series["study"]), {"series": series, "lesions": []})
        entry["lesions"].append((idx, lesion))
    chosen = sorted(seen.values(), key=lambda e: (e["series"]["geom"].n_slices, e["series"]["pid"]))[:n_volumes]
    for entry in chosen:
        series = entry["series"]
        geom = series["geom"]
        body = _patient_start(seed, series["pid"])[3]
        vox = np.empty((geom.n_slices, geom.size, geom.size), dtype=np.int16)
        for k in range(1, geom.n_slices + 1):
            hu = render_slice(body, geom, k, series["specs"], series["contrast"], series["noise_hu"],
                              series["noise_seed"])
            vox[k - 1] = np.rint(hu).astype(np.int16)
        image = sitk.GetImageFromArray(vox)
        image.SetSpacing((geom.spacing, geom.spacing, geom.interval))
        image.SetOrigin(geom.origin)
        image.SetDirection(LPS_DIRECTION)
        stem = f"{series['pid']:06d}_{series['study']:02d}_01"
        with atomic_path(out_dir / "volumes" / f"{stem}.nii.gz", "volume", overwrite=True) as tmp:
            final = tmp.with_name(tmp.name + ".nii.gz")
            sitk.WriteImage(image, str(final), True)
            os.replace(final, tmp)
        lesions = [{
            "id": idx, "labels": lesion.spec.labels, "key_slice_index": lesion.key_index,
            "box_ijk": list(lesion.box_ijk), "box_lps": [round(v, 3) for v in lesion.box_lps],
            "center_lps": [round(v, 3) for v in lesion.center_lps],
        } for idx, lesion in entry["lesions"]]
        meta = {"volume": f"{stem}.nii.gz", "region": series["region"], "spacing": [geom.spacing, geom.spacing,
                geom.interval], "origin": list(geom.origin), "direction": list(LPS_DIRECTION), "lesions": lesions}
        write_text_atomic(out_dir / "volumes" / f"{stem}.json", json.dumps(meta, indent=2) + "\n", "volume", True)
    return len(chosen)


def _readme(manifest: dict) -> str:
    return f"""LesaNet phantom data set (generator {GENERATOR} {manifest['version']}, seed {manifest['seed']})

Synthetic CT, not patient data. {manifest['n_lesions']} lesions, {manifest['n_patients']} patients,
{manifest['n_studies']} studies, {manifest['n_images']} slice images, {manifest['n_volumes']} whole volumes.

DL_info.csv        DeepLesion's 18 columns and formats; pixel coordinates 1-based; Train_Val_Test by patient
Images_png/        <patient>_<study>_<series>/<slice>.png, 16-bit, value = HU + 32768; key slices and neighbours
                   covering at least +-2 mm; columns patient right->left, rows anterior->posterior
sentences.jsonl    {{"id": row index, "text": report sentence with BOOKMARK (and sometimes OTHER_BMK)}}
truth.jsonl        what each lesion really is: most specific ontology terms (ancestors left to label expansion)
volumes/           a few whole series as LPS NIfTI (slice index grows towards the feet) with their lesions (JSON;
                   box_ijk = i1, j1, i2, j2, k, 0-based)
manifest.json      seed, counts, generator version

Regenerate with: lesanet synth --out DIR --lesions {manifest['n_lesions']} --seed {manifest['seed']}
"""
