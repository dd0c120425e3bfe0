"""``lesanet annotate-list``: every lesion of a worklist, the model loaded once, resumable, one SR per study.

The run folder (``OUT``)::

    worklist.json     the list's lesions and their inputs (a resumed run must be given the same list)
    state.jsonl       one line per lesion done, appended and flushed as each lesion's file is written
    lesions/ID.json   the lesion's JSON report (lossless, with its patch), written atomically
    sr/STUDY.dcm      one DICOM SR per study, one measurement group per lesion, in worklist order
    results.json      every lesion in one JSON report (no images)
    summary.csv       one row per lesion (see :mod:`.summary`), and agreement.csv / agreement.png once
                      lesions carry a reader's review

Lesions are annotated volume by volume (each CT read once) in batches of ``batch_size`` boxes through
:meth:`Annotator.annotate_many`. A killed run started again on the same folder skips every lesion in
``state.jsonl`` (nothing is annotated twice; at most the lesions of the batch in flight are redone, since they
were not recorded) and then writes the SRs and tables, which are rebuilt from ``lesions/`` each time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LesaNetError, invalid
from ..fileio import write_text_atomic
from .items import WorklistItem

STATE_FILE = "state.jsonl"
LIST_FILE = "worklist.json"
LESIONS_DIR = "lesions"
SR_DIR = "sr"
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class WorklistRun:
    """What a run did: lesions annotated now, skipped as already done, failed (id -> message), files."""

    out_dir: Path
    annotated: int
    resumed: int
    failed: dict[str, str]
    srs: tuple[Path, ...]
    seconds: float


def safe_name(text: str) -> str:
    """A file name for a lesion id or study (letters, digits, ``._-``; a hash keeps distinct ids distinct)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "lesion"
    return f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _item_record(item: WorklistItem) -> dict[str, Any]:
    return {"lesion_id": item.lesion_id, "volume": item.volume, "series_uid": item.series_uid,
            "input": item.input_kind, "values": list(item.values), "study": item.study_key}


def _check_same_list(out_dir: Path, items: Sequence[WorklistItem]) -> None:
    """A resumed run must continue the same list (or one with lesions appended), never silently another."""
    path = out_dir / LIST_FILE
    records = [_item_record(i) for i in items]
    if path.is_file():
        previous = {r["lesion_id"]: r for r in json.loads(path.read_text(encoding="utf-8"))["lesions"]}
        for record in records:
            old = previous.get(record["lesion_id"])
            if old is not None and old != record:
                raise invalid(f"--out {str(out_dir)!r}: lesion {record['lesion_id']!r}",
                              "must have the same volume and input as in the run being resumed (use a new --out "
                              "folder for another list)", record)
    write_text_atomic(path, json.dumps({"lesions": records}, indent=1) + "\n", "worklist.json", overwrite=True)


def done_lesions(out_dir: Path) -> dict[str, Path]:
    """Lesion id -> its JSON file, for every lesion recorded in the state file whose file exists."""
    state = out_dir / STATE_FILE
    done: dict[str, Path] = {}
    if not state.is_file():
        return done
    for line in state.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: its lesion is redone
        path = out_dir / entry.get("file", "")
        if path.is_file():
            done[str(entry["lesion_id"])] = path
    return done


def _record_done(out_dir: Path, item: WorklistItem, file: Path) -> None:
    with (out_dir / STATE_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"lesion_id": item.lesion_id, "file": file.relative_to(out_dir).as_posix()}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def annotate_worklist(items: Sequence[WorklistItem], out_dir: str | os.PathLike, annotator: Any, *,
                      batch_size: int = 16, progress: bool = True, echo: Callable[[str], None] = print,
                      volume_reader: Callable[[WorklistItem], Any] | None = None) -> WorklistRun:
    """Annotates ``items`` into ``out_dir`` (see the module docstring), resuming a run already there.

    Args:
        items: the worklist (:func:`read_worklist`).
        out_dir: the run folder (created; an earlier run of the same list in it is resumed).
        annotator: a loaded :class:`LesaNetCore.annotate.Annotator`.
        batch_size: boxes per forward pass.
        progress: a tqdm bar with counts and ETA.
        echo: where notes go (which volume could not be read, what was resumed).
        volume_reader: item -> Volume (default :func:`load_item_volume`).

    Raises:
        LesaNetError: a bad batch size or a folder holding a run of another list. A lesion whose volume or box
            fails is reported in ``failed`` and the run goes on.
    """
    from tqdm import tqdm

    from ..report import write_json_report

    if not isinstance(batch_size, int) or batch_size < 1:
        raise invalid("--batch-size", "must be an integer >= 1", batch_size)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / LESIONS_DIR).mkdir(parents=True, exist_ok=True)
    _check_same_list(out_dir, items)
    done = done_lesions(out_dir)
    todo = [item for item in items if item.lesion_id not in done]
    if done:
        echo(f"resuming: {len(done)} of {len(items)} lesions were annotated before; {len(todo)} to go")
    reader = volume_reader or load_item_volume
    failed: dict[str, str] = {}
    groups: OrderedDict[tuple, list[WorklistItem]] = OrderedDict()
    for item in todo:
        groups.setdefault(item.volume_key, []).append(item)
    bar = tqdm(total=len(todo), unit="lesion", disable=not progress, desc="annotating")
    annotated = 0
    for group in groups.values():
        try:
            volume = reader(group[0])
        except LesaNetError as err:
            for item in group:
                failed[item.lesion_id] = f"volume: {err}"
            bar.update(len(group))
            echo(f"lesion(s) {', '.join(i.lesion_id for i in group)}: cannot read the volume: {err}")
            continue
        for start in range(0, len(group), batch_size):
            batch = group[start:start + batch_size]
            for item, result in _annotate_batch(annotator, volume, batch, failed):
                file = out_dir / LESIONS_DIR / f"{safe_name(item.lesion_id)}.json"
                write_json_report([_with_item(result, item)], file, overwrite=True)
                _record_done(out_dir, item, file)
                annotated += 1
            bar.update(len(batch))
    bar.close()
    srs = write_outputs(items, out_dir, volume_reader=reader, echo=echo)
    return WorklistRun(out_dir, annotated, len(done), failed, srs, time.perf_counter() - started)


def write_outputs(items: Sequence[WorklistItem], out_dir: Path, *, volume_reader: Callable[[WorklistItem], Any],
                  echo: Callable[[str], None] = print) -> tuple[Path, ...]:
    """The SRs (one per study), results.json and the summary tables, from the lesions done so far.

    Rebuilt from ``lesions/`` on every call, so a run resumed after a kill, or a review that edited lesion files,
    writes them complete. A study whose volume cannot be read again gets no SR (said so); its lesions stay in
    the tables.
    """
    from ..report import read_json_report, write_dicom_sr, write_json_report
    from .summary import write_summary

    done = done_lesions(out_dir)
    finished = [(item, read_json_report(done[item.lesion_id])[0]) for item in items if item.lesion_id in done]
    studies: OrderedDict[str, list[tuple[WorklistItem, Any]]] = OrderedDict()
    for item, result in finished:
        studies.setdefault(item.study_key, []).append((item, result))
    srs = []
    (out_dir / SR_DIR).mkdir(exist_ok=True)
    for study, members in studies.items():
        if len({m[0].volume_key for m in members}) > 1:
            # An SR points at one series' images: a study with several volumes gets one SR per volume.
            parts = OrderedDict()
            for member in members:
                parts.setdefault(member[0].volume_key, []).append(member)
            chunks = [(f"{study}-{n + 1}", chunk) for n, chunk in enumerate(parts.values())]
        else:
            chunks = [(study, members)]
        for name, chunk in chunks:
            try:
                volume = volume_reader(chunk[0][0])
            except LesaNetError as err:
                echo(f"study {name!r}: no SR, its volume cannot be read again: {err}")
                continue
            path = out_dir / SR_DIR / f"{safe_name(Path(name).name or name)}.dcm"
            srs.append(write_dicom_sr([r for _, r in chunk], path, volume=volume, overwrite=True))
    results = [r for _, r in finished]
    if results:
        write_json_report(results, out_dir / RESULTS_FILE, overwrite=True, include_images=False)
        write_summary(results, [i.lesion_id for i, _ in finished], out_dir, [i for i, _ in finished])
    return tuple(srs)


def _with_item(result: Any, item: WorklistItem) -> Any:
    """The result named after the worklist's lesion (its volume source kept)."""
    from dataclasses import replace

    source = f"{item.volume}" + (f" series {item.series_uid}" if item.series_uid else "")
    return replace(result, volume_source=source)


def lesion_input(item: WorklistItem, volume: Any) -> dict[str, Any]:
    """The item's lesion as ``Annotator.annotate`` keyword arguments."""
    from ..imaging.recist import recist_from_lps, recist_from_values

    where = f"lesion {item.lesion_id!r} ({item.input_kind})"
    if item.input_kind in ("box_ijk", "box_lps"):
        return {item.input_kind: item.values}
    if item.input_kind == "recist_ijk":
        return {"recist": recist_from_values(where, item.values)}
    values = item.values
    points = [(values[n], values[n + 1], values[-1]) for n in range(0, len(values) - 1, 2)]
    return {"recist": recist_from_lps(where, volume, points)}


def _annotate_batch(annotator: Any, volume: Any, batch: Sequence[WorklistItem], failed: dict[str, str]):
    """(item, result) for the batch's lesions: boxes in IJK (RECIST ones as their boxes) in one forward pass,
    boxes in LPS in another; a lesion whose input fails is reported and skipped."""
    from dataclasses import replace

    by_kind: dict[str, list[tuple[WorklistItem, Any, Any]]] = {"box_ijk": [], "box_lps": []}
    for item in batch:
        try:
            kwargs = lesion_input(item, volume)
        except LesaNetError as err:
            failed[item.lesion_id] = str(err)
            continue
        recist = kwargs.get("recist")
        if recist is not None:
            by_kind["box_ijk"].append((item, recist.box_ijk(size_ijk=volume.size_ijk), recist))
        else:
            kind = next(iter(kwargs))
            by_kind[kind].append((item, kwargs[kind], None))
    for kind, entries in by_kind.items():
        if not entries:
            continue
        try:
            results = annotator.annotate_many(volume, **{f"boxes_{kind[4:]}": [e[1] for e in entries]},
                                              exclude_patient=entries[0][0].patient_id or None)
        except LesaNetError:  # one bad box spoils the batch: find it by annotating one at a time
            results = []
            for item, box, _ in entries:
                try:
                    results.append(annotator.annotate(volume, **{kind: box},
                                                      exclude_patient=item.patient_id or None))
                except LesaNetError as err:
                    failed[item.lesion_id] = str(err)
                    results.append(None)
        for (item, _, recist), result in zip(entries, results, strict=True):
            if result is None:
                continue
            if recist is not None:
                result = replace(result, location=replace(result.location, recist_ij=tuple(recist.points_ij)))
            yield item, result


def load_item_volume(item: WorklistItem) -> Any:
    """The item's CT: the file or DICOM series, or for a DeepLesion row its key slice and neighbours."""
    if item.deeplesion_row is not None:
        return deeplesion_volume(Path(item.volume), item.deeplesion_row)
    from ..imaging import read_volume

    return read_volume(item.volume, series_uid=item.series_uid or None)


def deeplesion_volume(root: Path, lesion_idx: int) -> Any:
    """A DeepLesion lesion's key slice and the neighbours its patch needs, as a Volume.

    Slice ``deeplesion_reach(record)`` of the stack is the key slice (what the worklist's box names); a
    neighbour the data set does not ship is replaced by the nearest shipped slice towards the key slice, as
    :func:`~LesaNetCore.imaging.deeplesion.load_lesion_patch` and the reference code do, so the patch is the
    training patch. z runs with the series' slice numbers (slice n at n x interval mm).
    """
    import numpy as np

    from ..imaging import Volume
    from ..imaging.deeplesion import read_png_slice, slice_path

    record = _dl_records(root / "DL_info.csv").get(lesion_idx)
    if record is None:
        raise invalid("DL_info.csv", "must have the lesion's row", lesion_idx)
    key, reach = record.key_slice_index, deeplesion_reach(record)
    interval = record.slice_interval if reach else 1.0
    slices = []
    for delta in range(-reach, reach + 1):
        index = key + delta
        while index != key and not slice_path(root, record, index).is_file():
            index -= int(np.sign(delta))
        slices.append(read_png_slice(root, record, index))
    sx, sy = record.spacing[:2]
    return Volume(np.stack(slices), (sx, sy, interval), (0.0, 0.0, (key - reach) * interval), np.eye(3),
                  source=f"{record.series_folder} slice {key} (DeepLesion lesion {lesion_idx})")


def _dl_records(path: Path) -> dict[int, Any]:
    """DL_info.csv's rows by lesion index, parsed once per file version: a DeepLesion worklist volume is one
    lesion, and the full file (32,735 rows) took 0.8 s to parse, once per lesion before, twice per run."""
    stat = path.stat() if path.is_file() else None
    return _parse_dl_records(str(path), stat.st_mtime_ns if stat else None, stat.st_size if stat else None)


@functools.lru_cache(maxsize=4)
def _parse_dl_records(path: str, mtime_ns: int | None, size: int | None) -> dict[int, Any]:
    from ..imaging.deeplesion import read_dl_info

    return {r.lesion_idx: r for r in read_dl_info(Path(path))}


def deeplesion_reach(record: Any) -> int:
    """Neighbours on each side of the key slice that LesaNet's -2 / +2 mm channels need."""
    import math

    from ..imaging.patch import CHANNEL_OFFSETS_MM

    interval = record.slice_interval
    if not (math.isfinite(interval) and interval > 0):
        return 0
    return math.ceil(max(abs(o) for o in CHANNEL_OFFSETS_MM) / interval - 1e-9)
