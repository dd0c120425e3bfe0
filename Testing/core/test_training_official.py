"""Importing the official LesaNet checkpoint: Python 2.7-style pickles, legacy and zip formats, refusals."""

from __future__ import annotations

import collections
import io
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import create_model
from LesaNetCore.training.checkpoint import build_model, load_checkpoint
from LesaNetCore.training.official import (
    _RestrictedUnpickler,
    import_official,
    load_official_checkpoint,
    official_state_dict_filter,
    read_official_thresholds,
)


class _EasyDict(dict):
    """The easydict package's class as the official code pickled it: a dict whose items are also attributes."""

    def __init__(self, d=None, **kw):
        super().__init__()
        for k, v in dict(d or {}, **kw).items():
            setattr(self, k, v)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        self[name] = value


_EasyDict.__module__ = "easydict"
_EasyDict.__name__ = _EasyDict.__qualname__ = "EasyDict"


def _official_state_dict(model, tracked: bool = True) -> collections.OrderedDict:
    """What DataParallel saved: ``module.`` prefixes; PyTorch 0.4.0 had no num_batches_tracked (``tracked``)."""
    sd = collections.OrderedDict(
        (f"module.{k}", v.clone()) for k, v in model.state_dict().items()
        if tracked or not k.endswith("num_batches_tracked")
    )
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    return sd


def write_official(path, state_dict, legacy: bool, term_list=None, extra=None) -> None:
    """An official-format file: protocol-2 pickle with easydict.EasyDict configs and numpy arrays."""
    fake = types.ModuleType("easydict")
    fake.EasyDict = _EasyDict
    sys.modules["easydict"] = fake
    try:
        default = _EasyDict(exp_name="LesaNet", lr=0.01, lr_epoch=[10], cls_pos_wts=np.ones(3, dtype=np.float32),
                            filenames=np.array([b"000001_01_01/109.png"]), noisy=np.array([False]),
                            seen={"train"}, gpu="0")
        if term_list is not None:
            default.term_list = term_list
        state = {"epoch": 15, "default_arg": default,
                 "config": _EasyDict(TRAIN=_EasyDict(CE_POS_WT_CLAMP=300, TEXT_MINED_LABEL="RU"), NUM_SLICES=3),
                 "state_dict": state_dict,
                 "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [1, 2]}]}}
        state.update(extra or {})
        torch.save(state, path, pickle_protocol=2, _use_new_zipfile_serialization=not legacy)
    finally:
        del sys.modules["easydict"]


def test_reads_both_formats_without_easydict_installed(tmp_path):
    sd = collections.OrderedDict([("module.fc_emb.weight", torch.randn(4, 6)), ("module.fc_emb.bias", torch.randn(4))])
    for legacy in (True, False):
        path = tmp_path / f"official_{legacy}.pth.tar"
        write_official(path, sd, legacy, term_list=["a", "b"])
        assert "easydict" not in sys.modules
        raw = load_official_checkpoint(path)
        assert type(raw["default_arg"]) is dict and type(raw["config"]["TRAIN"]) is dict
        assert raw["config"]["TRAIN"]["TEXT_MINED_LABEL"] == "RU" and raw["default_arg"]["seen"] == {"train"}
        assert raw["default_arg"]["filenames"].dtype.kind == "S"
        assert raw["default_arg"]["term_list"] == ["a", "b"]
        assert torch.equal(raw["state_dict"]["module.fc_emb.weight"], sd["module.fc_emb.weight"])
        assert list(official_state_dict_filter(raw["state_dict"])) == ["fc_emb.weight", "fc_emb.bias"]


def test_python2_pickle_opcodes_are_understood():
    # Python 2.7 wrote str as SHORT_BINSTRING ('U') and builtins as __builtin__; this is such a stream.
    stream = b"\x80\x02}q\x00(U\x05epochq\x01K\x0fU\x04seenq\x02c__builtin__\nset\nq\x03]q\x04U\x01aq\x05a\x85q\x06Rq\x07u."
    assert _RestrictedUnpickler(io.BytesIO(stream), encoding="latin1").load() == {"epoch": 15, "seen": {"a"}}


class _Exploit:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [True, False])
def test_refuses_a_malicious_pickle_without_running_it(tmp_path, legacy):
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    path = tmp_path / "evil.pth.tar"
    write_official(path, collections.OrderedDict(), legacy, extra={"hook": _Exploit()})
    with pytest.raises(LesaNetError, match=r"refused.*global '(posix|nt)\.system'"):
        load_official_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(LesaNetError, match="not a readable"):
        path.write_bytes(b"\x80\x02garbage")
        load_official_checkpoint(path)


@pytest.mark.slow
def test_full_size_import_round_trips_to_identical_weights(tmp_path):
    """lesanet_vgg16bn(171) in the official layout, legacy and zip, through the CLI."""
    from LesaNetCore.cli import main

    torch.manual_seed(0)
    model = create_model("lesanet_vgg16bn", num_labels=171).eval()
    official = _official_state_dict(model)
    assert len(official) == 107  # the DESIGN.md count of official entries
    names = [f"term {i}" for i in range(171)]
    images, boxes = torch.randn(1, 3, 120, 120), torch.tensor([[45.0, 45.0, 75.0, 75.0]])
    with torch.no_grad():
        expected = model(images, boxes).probs
    for legacy in (True, False):
        src, out = tmp_path / f"LesaNet_epoch_15_{legacy}.pth.tar", tmp_path / f"lesanet_{legacy}.pt"
        write_official(src, official, legacy, term_list=names)
        summary = import_official(src, out)
        assert summary["num_labels"] == 171 and summary["epoch"] == 15
        ckpt = load_checkpoint(out)
        assert ckpt.arch == "lesanet_vgg16bn" and ckpt.label_names == names and ckpt.thresholds == [0.5] * 171
        assert ckpt.train_config["config"]["TRAIN"]["CE_POS_WT_CLAMP"] == 300
        for key, value in official.items():
            assert torch.equal(ckpt.state_dict[key[len("module."):]], value)
        with torch.no_grad():
            assert torch.equal(build_model(ckpt)(images, boxes).probs, expected)
    # PyTorch 0.4.0 files lack the BatchNorm counters (94 entries): the filter adds them
    older = official_state_dict_filter(_official_state_dict(model, tracked=False))
    create_model("lesanet_vgg16bn", num_labels=171).load_state_dict(older, strict=True)
    # the CLI refuses to clobber, and needs names when the file has none
    assert main(["import-official", str(src), "--out", str(out)]) == 2
    bare = tmp_path / "bare.pth.tar"
    write_official(bare, official, True)
    with pytest.raises(LesaNetError, match="--labels"):
        import_official(bare, tmp_path / "bare.pt")


@pytest.mark.slow
def test_import_with_the_released_thresholds_and_ontology(tmp_path):
    from conftest import shared_file

    from LesaNetCore.cli import main
    from LesaNetCore.ontology import Ontology, Term, read_label_split, read_official_ontology

    xlsx = shared_file("lesanet/labels_for_demo.xlsx")
    split = shared_file("lesanet/text_mined_labels_171_and_split.json")
    onto_xlsx = shared_file("lesanet/lesion_ontology_181022.xlsx")
    table = read_official_thresholds(xlsx)
    assert len(table["terms"]) == 171 and table["terms"][:3] == ["chest", "abdomen", "lung"]
    assert table["thresholds"][:3] == [0.4, 0.6, 0.9] and table["per_label"]["auc"][170] is None  # implant: no AUC
    names = list(read_label_split(split).term_list)
    assert names == table["terms"]
    torch.manual_seed(0)
    src = tmp_path / "LesaNet_epoch_15.pth.tar"
    write_official(src, _official_state_dict(create_model("lesanet_vgg16bn", num_labels=171)), True)
    out = tmp_path / "lesanet.pt"
    assert main(["import-official", str(src), "--out", str(out), "--thresholds", str(xlsx), "--labels", str(split),
                 "--ontology", str(onto_xlsx)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.thresholds == table["thresholds"] and ckpt.label_names == names
    assert ckpt.ontology_digest == read_official_ontology(onto_xlsx).digest()
    assert ckpt.label_classes[:3] == ["bodypart"] * 3
    assert ckpt.metrics["official_test_per_label"]["f1"][0] == pytest.approx(0.931372549019608)
    with pytest.raises(LesaNetError, match="terms must be the checkpoint's labels"):
        import_official(src, tmp_path / "x.pt", thresholds_xlsx=xlsx, label_names=names[::-1])
    # a label the ontology cannot name is refused when the ontology is given explicitly
    with pytest.raises(LesaNetError, match="--ontology.*'chest'"):
        import_official(src, tmp_path / "y.pt", label_names=names, ontology=Ontology([Term("lung", "bodypart")]))


def test_restricted_unpickler_refuses_other_globals():
    payload = pickle.dumps(collections.Counter("ab"), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="collections.Counter"):
        _RestrictedUnpickler(io.BytesIO(payload)).load()
