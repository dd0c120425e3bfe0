"""Importing the official LesaNet checkpoint without running code from it.

The released ``.pth.tar`` is a Python 2.7 pickle (protocol 2) of ``{'epoch', 'default_arg', 'config',
'state_dict', 'optimizer'}`` whose configs are ``easydict.EasyDict`` instances and whose ``default_arg`` also
holds numpy arrays (DeepLesion metadata, class weights). Its tensors use torch's legacy serialisation (and a
re-saved copy may use the zip format). A plain ``torch.load`` would execute whatever the pickle asks for, so
both formats are read through :class:`_RestrictedUnpickler`: an allow-list of globals (the documented
"restricting globals" pattern of the ``pickle`` module) handed to ``torch.load`` as its ``pickle_module``;
torch still decodes the container and storages. ``easydict.EasyDict`` becomes a plain dict; anything not on
the list (``os.system``, ``subprocess.Popen``, ...) is refused with its name before it can run.

The weights are then mapped onto this project's model by :func:`official_state_dict_filter` (timm's
``checkpoint_filter_fn`` style) and written as a self-describing checkpoint.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import math
import os
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LesaNetError

OFFICIAL_ARCH = "lesanet_vgg16bn"


class _EasyDictStandIn(dict):
    """What ``easydict.EasyDict`` unpickles to: a dict that ignores the duplicate attribute state.

    EasyDict pickles its items twice, as dict items (SETITEMS) and as its instance ``__dict__`` (BUILD); the
    items are enough, so the second copy is dropped instead of letting the file set attributes.
    """

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, Mapping):
            for key, value in state.items():
                self.setdefault(key, value)


def _allowed_globals() -> dict[str, Any]:
    """Full name -> object for every global an official checkpoint may ask for."""
    import collections

    import numpy as np
    import torch

    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        multiarray = np.core.multiarray
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
        "torch.Size": torch.Size,
        "easydict.EasyDict": _EasyDictStandIn,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.complex": complex,
        "builtins.slice": slice,
        # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1"); torch allows it too.
        "_codecs.encode": codecs.encode,
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{module}._reconstruct"] = multiarray._reconstruct
        allowed[f"{module}.scalar"] = multiarray.scalar
    for dtype_name in ("float16", "bfloat16", "float32", "float64", "half", "float", "double", "uint8", "int8",
                       "int16", "short", "int32", "int", "int64", "long", "bool"):
        if hasattr(torch, dtype_name):
            allowed[f"torch.{dtype_name}"] = getattr(torch, dtype_name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only allow-listed globals; everything else is refused by name."""

    def find_class(self, module: str, name: str) -> Any:
        full = _python3_name(module, name, getattr(self, "proto", 2))
        allowed = _allowed_globals()
        if full in allowed:
            return allowed[full]
        raise _ForbiddenGlobal(full)


class _ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"forbidden global {name!r}")
        self.name = name


def _python3_name(module: str, name: str, proto: int) -> str:
    """Python 2 names (``__builtin__.set``, ``copy_reg``...) mapped as the standard unpickler would."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _restricted_pickle_module() -> types.ModuleType:
    """A stand-in for the ``pickle`` module whose loaders are restricted (what ``torch.load`` accepts)."""
    module = types.ModuleType("lesanet_restricted_pickle")

    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()

    def loads(data: bytes, **kwargs: Any) -> Any:
        import io

        return _RestrictedUnpickler(io.BytesIO(data), **kwargs).load()

    module.Unpickler = _RestrictedUnpickler
    module.load = load
    module.loads = loads
    module.UnpicklingError = pickle.UnpicklingError
    module.__name__ = "pickle"  # torch checks only the attributes, the name keeps its messages familiar
    return module


def load_official_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Reads an official LesaNet ``.pth.tar`` (legacy or zip format) with only allow-listed globals.

    Returns:
        The checkpoint as plain Python: dicts (EasyDicts converted), lists, numbers, strings, numpy arrays and
        tensors.

    Raises:
        LesaNetError: the file is missing or corrupt, or the pickle asks for a global outside the allow-list
            (named in the message; nothing from the file has run).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise LesaNetError(f"CKPT: must be an existing file, but got {str(path)!r}")
    try:
        # latin1 is how Python 2 byte strings (numpy buffers included) must be decoded (numpy's documented rule).
        data = torch.load(path, map_location="cpu", pickle_module=_restricted_pickle_module(),
                          weights_only=False, encoding="latin1")
    except _ForbiddenGlobal as err:
        raise LesaNetError(
            f"CKPT {str(path)!r}: refused, the pickle asks for global {err.name!r}, which is not on the allow-list "
            "of an official LesaNet checkpoint (nothing from the file was executed)"
        ) from err
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError,
            AttributeError, IndexError, ImportError) as err:
        raise LesaNetError(
            f"CKPT {str(path)!r}: not a readable official LesaNet checkpoint ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})"
        ) from err
    return _to_plain(data)


def _to_plain(value: Any) -> Any:
    """EasyDict stand-ins -> dict, recursively (OrderedDict state dicts keep their order and ``_metadata``)."""
    if isinstance(value, _EasyDictStandIn):
        return {k: _to_plain(v) for k, v in value.items()}
    if type(value) is dict:
        return {k: _to_plain(v) for k, v in value.items()}
    if type(value) is list:
        return [_to_plain(v) for v in value]
    return value


def official_state_dict_filter(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Maps an official state dict onto this project's LesaNet (timm's ``checkpoint_filter_fn`` style).

    The file was untrusted, so every value is first checked to be a tensor; the name mapping itself (the
    ``module.`` prefix of ``DataParallel``, the ``num_batches_tracked`` counters PyTorch 0.4 did not save) is the
    model's own :func:`LesaNetCore.model.checkpoint_filter_fn`, so there is one definition of it.

    Example:
        >>> import torch
        >>> sorted(official_state_dict_filter({"module.fc_emb.weight": torch.zeros(2, 3)}))
        ['fc_emb.weight']
    """
    import torch

    from ..model import checkpoint_filter_fn

    checked: dict[str, Any] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise LesaNetError(f"state_dict[{key!r}]: must map a name to a tensor, but got {type(value).__name__}")
        checked[key] = value.detach().contiguous()
    return checkpoint_filter_fn(checked)


def read_official_thresholds(path: str | os.PathLike) -> dict[str, Any]:
    """Reads ``labels_for_demo.xlsx``: per-label term, counts, test accuracy and decision threshold.

    Returns:
        ``{"terms": [...], "thresholds": [...], "per_label": {column: [...]}}``; empty cells become None.

    Raises:
        LesaNetError: the workbook lacks the term or threshold column, or a threshold is not in [0, 1].
    """
    from openpyxl import load_workbook

    path = Path(path)
    if not path.is_file():
        raise LesaNetError(f"--thresholds: must be an existing .xlsx file, but got {str(path)!r}")
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many types for a non-workbook
        raise LesaNetError(f"--thresholds: must be an .xlsx workbook ({type(err).__name__}), but got {str(path)!r}") from err
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    if not rows:
        raise LesaNetError(f"--thresholds: the workbook must have a header row, but got an empty sheet in {str(path)!r}")
    header = [("term" if i == 0 and (h is None or str(h).strip() == "") else str(h).strip()) for i, h in enumerate(rows[0])]
    if "threshold" not in header:
        raise LesaNetError(f"--thresholds: the header must have a 'threshold' column, but got {header!r}")
    term_col = header.index("term")
    columns = {name: i for i, name in enumerate(header) if name != "term"}
    terms: list[str] = []
    per_label: dict[str, list[Any]] = {name: [] for name in columns}
    for row_number, row in enumerate(rows[1:], start=2):
        if row is None or row[term_col] in (None, ""):
            continue
        terms.append(str(row[term_col]).strip())
        for name, col in columns.items():
            value = row[col] if col < len(row) else None
            per_label[name].append(None if value is None or (isinstance(value, float) and math.isnan(value))
                                   else float(value))
        threshold = per_label["threshold"][-1]
        if threshold is None or not 0.0 <= threshold <= 1.0:
            raise LesaNetError(f"--thresholds: row {row_number} ({terms[-1]!r}) threshold must be in [0, 1], "
                               f"but got {threshold!r}")
    return {"terms": terms, "thresholds": per_label.pop("threshold"), "per_label": per_label}


def import_official(
    ckpt_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    thresholds_xlsx: str | os.PathLike | None = None,
    label_names: list[str] | None = None,
    ontology: Any = None,
    overwrite: bool = False,
    model_factory: Any = None,
) -> dict[str, Any]:
    """Converts an official LesaNet checkpoint into a self-describing LesaNet checkpoint.

    Label names come, in order of preference, from ``label_names`` (e.g. the split JSON's term list), the
    thresholds workbook, or the checkpoint's own ``default_arg.term_list``; when two sources are given they must
    agree. Label classes come from ``ontology`` or the checkpoint's ``default_arg.term_class``.

    Returns:
        A summary: output path, epoch, number of labels and parameters, whether thresholds were attached.

    Raises:
        LesaNetError: unsafe or unreadable input, labels that disagree with the weights, or an existing output
            without ``overwrite``.
    """
    from ..fileio import check_writable
    from .checkpoint import DEFAULT_PREPROCESSING, save_checkpoint

    check_writable(out_path, "--out", overwrite)
    raw = load_official_checkpoint(ckpt_path)
    if not isinstance(raw, Mapping) or "state_dict" not in raw:
        keys = sorted(map(str, raw)) if isinstance(raw, Mapping) else type(raw).__name__
        raise LesaNetError(f"CKPT {str(ckpt_path)!r}: must hold a dict with 'state_dict', but got {keys}")
    default_arg = raw.get("default_arg") if isinstance(raw.get("default_arg"), Mapping) else {}
    config = raw.get("config") if isinstance(raw.get("config"), Mapping) else {}
    stripped = official_state_dict_filter(raw["state_dict"])
    if "class_scores1.weight" not in stripped:
        raise LesaNetError(f"CKPT {str(ckpt_path)!r}: state_dict must contain class_scores1.weight, but got "
                           f"{sorted(stripped)[:6]}...")
    num_labels = int(stripped["class_scores1.weight"].shape[0])

    names = _pick_label_names(label_names, thresholds_xlsx, default_arg, num_labels)
    thresholds = None
    metrics: dict[str, Any] = {}
    if thresholds_xlsx is not None:
        table = read_official_thresholds(thresholds_xlsx)
        if table["terms"] != names:
            raise LesaNetError(f"--thresholds: its terms must be the checkpoint's labels in order, but got "
                               f"{_first_difference(table['terms'], names)}")
        thresholds = table["thresholds"]
        metrics = {"official_test_per_label": table["per_label"], "source": Path(thresholds_xlsx).name}

    classes: list[str] = []
    digest = ""
    label_ontology = None
    official_names = names
    if ontology is not None:
        from .dataset import canonical_label_names

        names = canonical_label_names(names, ontology, "--ontology")
        digest = ontology.digest()
        classes = [ontology.label_class(n) for n in names]
        label_ontology = ontology.subset(names).to_dict()
    elif isinstance(default_arg.get("term_class"), list) and len(default_arg["term_class"]) == num_labels:
        classes = [str(c) for c in default_arg["term_class"]]

    if model_factory is None:
        from ..model import create_model as model_factory
    model = model_factory(OFFICIAL_ARCH, num_labels=num_labels)
    try:
        model.load_state_dict(stripped, strict=True)
    except RuntimeError as err:
        raise LesaNetError(f"CKPT {str(ckpt_path)!r}: weights must fit {OFFICIAL_ARCH}({num_labels}), but got "
                           f"{str(err).splitlines()[0]}") from err
    epoch = int(raw.get("epoch") or 0)
    save_checkpoint(
        out_path, model, arch=OFFICIAL_ARCH, label_names=names, label_classes=classes, ontology_digest=digest,
        preprocessing=DEFAULT_PREPROCESSING, thresholds=thresholds,
        train_config={"source": "official LesaNet", "file": Path(ckpt_path).name, "official_label_names": official_names,
                      "config": _scalars(config), "default_arg": _scalars(default_arg)},
        metrics=metrics, epoch=epoch, label_ontology=label_ontology, overwrite=overwrite,
    )
    return {
        "out": str(out_path), "epoch": epoch, "num_labels": num_labels,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "thresholds": thresholds is not None, "ontology_digest": digest,
    }


def _pick_label_names(label_names: list[str] | None, thresholds_xlsx: Any, default_arg: Mapping[str, Any],
                      num_labels: int) -> list[str]:
    candidates: list[tuple[str, list[str]]] = []
    if label_names is not None:
        candidates.append(("--labels", [str(n) for n in label_names]))
    if thresholds_xlsx is not None:
        candidates.append(("--thresholds", read_official_thresholds(thresholds_xlsx)["terms"]))
    if isinstance(default_arg.get("term_list"), list):
        candidates.append(("default_arg.term_list", [str(n) for n in default_arg["term_list"]]))
    if not candidates:
        raise LesaNetError("--labels: the checkpoint has no term_list, so pass --labels SPLIT_JSON or --thresholds "
                           "XLSX to name its outputs, but got neither")
    source, names = candidates[0]
    if len(names) != num_labels:
        raise LesaNetError(f"{source}: must name the checkpoint's {num_labels} outputs, but got {len(names)} names")
    return names


def _first_difference(a: list[str], b: list[str]) -> str:
    if len(a) != len(b):
        return f"{len(a)} terms for {len(b)} labels"
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    return f"{a[i]!r} at position {i} where the labels have {b[i]!r}"


def _scalars(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar and short-list settings of an official config, for provenance (arrays and tables dropped)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[str(key)] = value
        elif isinstance(value, Mapping):
            out[str(key)] = _scalars(value)
        elif isinstance(value, (list, tuple)) and len(value) <= 16 and all(
                isinstance(v, (bool, int, float, str)) for v in value):
            out[str(key)] = list(value)
    return out
