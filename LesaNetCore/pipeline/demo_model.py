"""``lesanet build-demo``: the shipped demo model, made from nothing but this package, in one command.

Steps, all seeded: synthesize phantom CT lesions in DeepLesion's layout (:func:`LesaNetCore.phantom.synthesize`),
prepare them (mine the phantom report sentences, choose labels, split, crop patches), train ``lesanet_demo`` on
the CPU, calibrate per-label thresholds on validation, save the final weights with thresholds (and the label
ontology) as OUT/model.pt, evaluate on the test set against both the text-mined labels and the phantom's true
labels (OUT/evaluation/), build the reference index of the training lesions (OUT/index/), check that
:class:`LesaNetCore.annotate.Annotator` loads the result and annotates a fresh phantom volume, and write
OUT/README.md with the command, seed, sizes and headline numbers.

The defaults (3000 lesions; the paper's 15 epochs with the learning rate cut after 10, at batch 64) build in
about 10 minutes on 2 shared CPU cores (measured: 8 epochs took 5.3 min, 185 s of it training), well inside the
25-minute budget; ``--lesions`` / ``--epochs`` trade time for accuracy and are written into the README, so any
build can be repeated exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import LesaNetError, invalid
from ..fileio import write_text_atomic

DEFAULT_LESIONS = 3000
DEFAULT_EPOCHS = 15
DEFAULT_BATCH = 64
DEFAULT_SEED = 0
MAX_WEIGHTS_MB = 16.0
_OUTPUTS = ("model.pt", "index", "evaluation", "README.md", "build.json")
_CHECK_BODYPARTS = ("liver", "spleen", "right kidney", "left kidney")


def default_demo_dir() -> Path:
    """LesaNetCore/data/demo inside the package: where Annotator() looks for the demo model and index."""
    return Path(__file__).resolve().parents[1] / "data" / "demo"


def check_build_args(lesions: int, epochs: int, seed: int, batch_size: int) -> None:
    """Rejects arguments that cannot make a demo, before minutes of work start.

    Raises:
        LesaNetError: naming the argument, the rule and the value.
    """
    for name, value, minimum in (("--lesions", lesions, 100), ("--epochs", epochs, 1), ("--batch-size", batch_size, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise invalid(name, f"must be an integer >= {minimum}", value)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise invalid("--seed", "must be a non-negative integer", seed)


def demo_train_config(epochs: int, seed: int, batch_size: int = DEFAULT_BATCH, device: str = "cpu") -> Any:
    """The demo's TrainConfig: the paper's recipe scaled to a short CPU run.

    The paper steps the learning rate down after 10 of 15 epochs; the demo does so after the same fraction
    (2/3) of its epochs. Validation runs only after the last epoch (the final weights are shipped). No loader
    worker processes: the cache is memory-mapped and batches are cheap, while extra processes would compete
    for the two cores.
    """
    from ..training import TrainConfig

    return TrainConfig(arch="lesanet_demo", epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                       lr_step_epoch=max(1, round(epochs * 2 / 3)), workers=0, eval_every=epochs, amp="off",
                       channels_last=False)


def build_demo(
    out_dir: str | os.PathLike | None = None,
    *,
    lesions: int = DEFAULT_LESIONS,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH,
    work_dir: str | os.PathLike | None = None,
    keep_work: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    echo=print,
) -> dict[str, Any]:
    """Builds the demo model, its evaluation and its reference index into ``out_dir`` (module docstring).

    Args:
        out_dir: target folder (default: the package's data/demo).
        lesions: phantom lesions to synthesize.
        epochs: training epochs.
        seed: seeds the phantom, the training and everything after.
        batch_size: lesions per step.
        work_dir: where the phantom, prepared data and run go (default: a temporary folder, removed after).
        keep_work: keep the temporary work folder.
        overwrite: replace an earlier demo in ``out_dir``.
        progress: tqdm bars.
        echo: where progress lines go.

    Returns:
        The build record written to OUT/build.json (sizes, timings, headline metrics, annotation check).
    """
    import torch

    from ..evaluation import calibrate_thresholds
    from ..phantom import synthesize
    from ..training import load_checkpoint, save_checkpoint, train
    from ..training.checkpoint import build_model
    from ..training.dataset import open_patch_cache, split_arrays
    from .evaluate import embed_split, evaluate, format_headline, headline
    from .index_build import build_reference_index
    from .prepare import CACHE_DIR, TRUTH_FILE, prepare

    check_build_args(lesions, epochs, seed, batch_size)
    out_dir = Path(out_dir) if out_dir is not None else default_demo_dir()
    _check_out(out_dir, overwrite)
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
    started = time.perf_counter()
    timings: dict[str, float] = {}
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="lesanet-demo-")) if temporary else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        def step(name: str, t0: float) -> None:
            timings[name] = round(time.perf_counter() - t0, 1)
            echo(f"build-demo: {name} done in {timings[name]:.0f} s")

        t0 = time.perf_counter()
        phantom = synthesize(work / "phantom", lesions, seed=seed, overwrite=True, progress=progress)
        step("synthesize", t0)
        t0 = time.perf_counter()
        data = work / "data"
        prepared = prepare(phantom.out_dir, data, overwrite=True, progress=progress)
        step("prepare", t0)
        echo(f"build-demo: {len(prepared.term_list)} labels, lesions {prepared.cache['counts']}")

        t0 = time.perf_counter()
        config = demo_train_config(epochs, seed, batch_size)
        run = work / "run"
        if run.exists():
            shutil.rmtree(run)
        train(config, data / CACHE_DIR, run, progress=progress)
        step("train", t0)

        t0 = time.perf_counter()
        final = load_checkpoint(run / "last.pt")
        cache = open_patch_cache(data / CACHE_DIR)
        val_probs, _ = embed_split(build_model(final), cache, "val")
        val = split_arrays(cache, "val")
        thresholds = calibrate_thresholds(val_probs, val["targets"] > 0, val["valid"])
        out_dir.mkdir(parents=True, exist_ok=True)
        model_path = out_dir / "model.pt"
        from ..ontology import read_ontology_json
        from .prepare import ONTOLOGY_FILE

        label_ontology = read_ontology_json(data / ONTOLOGY_FILE)
        save_checkpoint(model_path, build_model(final), arch=final.arch, label_names=final.label_names,
                        label_classes=final.label_classes, ontology_digest=final.ontology_digest,
                        preprocessing=final.preprocessing, thresholds=thresholds, train_config=final.train_config,
                        metrics={"epoch": final.epoch, "source": "lesanet build-demo"}, epoch=final.epoch,
                        label_ontology=label_ontology.to_dict(), overwrite=True)
        weights_mb = model_path.stat().st_size / 2**20
        if weights_mb > MAX_WEIGHTS_MB:
            raise LesaNetError(f"model.pt: the demo weights must stay <= {MAX_WEIGHTS_MB} MB, but got "
                               f"{weights_mb:.1f} MB")
        step("calibrate", t0)

        t0 = time.perf_counter()
        report = evaluate(model_path, data, out_dir / "evaluation", hand_labeled=data / TRUTH_FILE,
                          overwrite=True, progress=progress, title="Demo model, phantom test set")
        step("evaluate", t0)
        echo(format_headline(report))
        t0 = time.perf_counter()
        index = build_reference_index(model_path, data, out_dir / "index", split="train", overwrite=True,
                                      progress=progress)
        step("index", t0)
        t0 = time.perf_counter()
        check = annotation_check(model_path, out_dir / "index", seed=seed + 1)
        step("annotation check", t0)
        echo(f"build-demo: annotation check {check['correct_bodypart']}/{check['lesions']} body parts right")
    finally:
        if temporary and not keep_work:
            shutil.rmtree(work, ignore_errors=True)

    record = {
        "command": f"lesanet build-demo --lesions {lesions} --epochs {epochs} --seed {seed} --batch-size {batch_size}",
        "seed": seed, "lesions": lesions, "epochs": epochs, "batch_size": batch_size,
        "phantom": {"patients": phantom.n_patients, "splits_patients": phantom.splits},
        "labels": list(prepared.term_list), "cache_counts": prepared.cache["counts"],
        "train_config": json.loads(json.dumps(final.train_config)), "weights_mb": round(weights_mb, 2),
        "parameters": int(sum(v.numel() for v in final.state_dict.values() if v.dtype.is_floating_point)),
        "index_entries": len(index), "headline": headline(report), "by_class": report["breakdown"]["by_class"],
        "hand_by_class": (report.get("hand_labeled") or {}).get("breakdown", {}).get("by_class"),
        "threshold_grids": report.get("threshold_grids"), "annotation_check": check,
        "timings_s": timings, "total_s": round(time.perf_counter() - started, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    write_text_atomic(out_dir / "build.json", json.dumps(record, indent=1) + "\n", "build.json", overwrite=True)
    write_text_atomic(out_dir / "README.md", demo_readme(record), "README.md", overwrite=True)
    echo(f"build-demo: wrote {out_dir} in {record['total_s'] / 60:.1f} min")
    return record


def annotation_check(model_path: Path, index_dir: Path, seed: int) -> dict[str, Any]:
    """Annotates fresh phantom lesions with ``Annotator`` and counts the body parts it gets right."""
    import numpy as np

    from ..annotate import Annotator
    from ..imaging import Volume
    from ..phantom import make_phantom_volume

    voxels, spacing, origin, direction, lesions = make_phantom_volume(
        seed=seed, region="abdomen", n_lesions=len(_CHECK_BODYPARTS), bodyparts=list(_CHECK_BODYPARTS))
    volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3),
                    source=f"phantom (seed {seed})")
    annotator = Annotator(model_path, index_dir, device="cpu")
    results = annotator.annotate_many(volume, boxes_ijk=[lesion.box_ijk for lesion in lesions])
    rows = []
    for lesion, result in zip(lesions, results, strict=True):
        part = lesion.spec.bodypart
        rows.append({"truth": list(lesion.spec.labels), "accepted": sorted(result.accepted),
                     "bodypart_right": part in result.accepted,
                     "similar": [s.lesion_id for s in result.similar]})
    return {"lesions": len(rows), "correct_bodypart": sum(r["bodypart_right"] for r in rows), "rows": rows}


def demo_readme(record: dict[str, Any]) -> str:
    """OUT/README.md: how the demo was made and how good it is."""
    h = record["headline"]

    def f(key: str) -> str:
        value = h.get(key)
        return "-" if value is None else f"{value:.4f}"

    by_class = record.get("by_class") or {}
    hand_by_class = record.get("hand_by_class") or {}
    class_rows = "\n".join(
        f"| {c} | {_g(v, 'auc')} | {_g(v, 'f1')} | {_g(hand_by_class.get(c), 'auc')} | {_g(hand_by_class.get(c), 'f1')} |"
        for c, v in by_class.items())
    check = record["annotation_check"]
    t = record["timings_s"]
    return f"""# LesaNet demo model (phantom data; not for clinical use)

Made by one command, from this package alone:

    {record['command']}

(`lesanet build-demo` writes here, LesaNetCore/data/demo, by default; `--out DIR` writes elsewhere.)

* Data: {record['lesions']} synthetic lesions of {record['phantom']['patients']} phantom patients
  (`LesaNetCore.phantom.synthesize`, seed {record['seed']}), split by patient (train/val/test patients
  {record['phantom']['splits_patients']}); lesions with labels per split {record['cache_counts']}.
* Labels: {len(record['labels'])} terms, mined from the phantom report sentences by `lesanet prepare` (terms with
  >= 10 training lesions after label expansion).
* Model: `lesanet_demo` ({record['parameters']:,} parameters, model.pt {record['weights_mb']} MB), trained
  {record['epochs']} epochs on the CPU, batch {record['batch_size']}, SGD lr 0.01 (x0.1 after 2/3 of the epochs),
  full LesaNet loss (WCE + RHEM + SPL + triplet), seed {record['seed']}; the final epoch's weights with per-label
  thresholds calibrated on validation (F1 over 0.3..0.9). The checkpoint also stores the label ontology.
* index/: reference index of the {record['index_entries']} training lesions (embedding, patient, labels, sentence,
  64x64 thumbnail).
* evaluation/: the test-set report (report.md, report.json, plots).

## Test-set accuracy (mean per class; ontology-consistent decisions)

| Labels | AUC | Precision | Recall | F1 |
|---|---|---|---|---|
| Text-mined | {f('auc')} | {f('precision')} | {f('recall')} | {f('f1')} |
| Phantom truth | {f('hand_auc')} | {f('hand_precision')} | {f('hand_recall')} | {f('hand_f1')} |

ACG@5 (test lesions querying the training set, other patients only): {f('acg@5')}.

| Class | AUC (text-mined) | F1 (text-mined) | AUC (truth) | F1 (truth) |
|---|---|---|---|---|
{class_rows}

{_grid_line(record.get("threshold_grids") or {{}})}

Annotator check on a fresh phantom volume: the true body part was accepted for {check['correct_bodypart']} of
{check['lesions']} lesions ({', '.join(_CHECK_BODYPARTS)}).

Build time {record['total_s'] / 60:.1f} min on {record['threads']} CPU threads (synthesize {t.get('synthesize')} s,
prepare {t.get('prepare')} s, train {t.get('train')} s, evaluate {t.get('evaluate')} s, index {t.get('index')} s);
torch {record['torch']}. Full record: build.json.
"""


def _grid_line(grids: dict) -> str:
    from .evaluate import grid_verdict

    if "reference" not in grids or "fine" not in grids:
        return ""
    ref, fine = grids["reference"]["test_f1"], grids["fine"]["test_f1"]
    return (f"Thresholds: a 0.01-step grid instead of the paper's 0.3..0.9 {grid_verdict(fine - ref)} (test F1 "
            f"{fine:.4f} vs {ref:.4f}, raw thresholds).")


def _g(values: dict | None, key: str) -> str:
    if not values or values.get(key) is None:
        return "-"
    return f"{values[key]:.4f}"


def _check_out(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise invalid("--out", "must be a folder", str(out_dir))
    present = [name for name in _OUTPUTS if (out_dir / name).exists()]
    if present and not overwrite:
        raise LesaNetError(f"--out: refusing to replace an earlier demo (pass --overwrite), but got {str(out_dir)!r} "
                           f"holding {present}")
