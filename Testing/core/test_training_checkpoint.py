"""Self-describing checkpoints: round trip, rebuild from the file alone, digest, and refusals."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import create_model
from LesaNetCore.training.checkpoint import (
    FORMAT_NAME,
    build_model,
    checkpoint_digest,
    load_checkpoint,
    save_checkpoint,
)

LABELS = ["chest", "lung", "liver", "nodule"]


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("lesanet_demo", num_labels=len(LABELS)).eval()


def _save(path, model, **kw):
    args = dict(arch="lesanet_demo", label_names=LABELS, label_classes=["bodypart"] * 3 + ["type"],
                ontology_digest="abc123", thresholds=[0.3, 0.4, 0.5, 0.9], train_config={"lr": 0.01},
                metrics={"val": {"f1": 0.5}}, epoch=3)
    args.update(kw)
    return save_checkpoint(path, model, **args)


def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path):
    model = _model()
    path = _save(tmp_path / "m.pt", model)
    raw = torch.load(path, weights_only=True)  # plain data only: the strict loader accepts it
    assert raw["format"] == FORMAT_NAME and raw["arch"] == "lesanet_demo"
    ckpt = load_checkpoint(path)
    assert ckpt.label_names == LABELS and ckpt.thresholds == [0.3, 0.4, 0.5, 0.9]
    assert ckpt.preprocessing["hu_window"] == [-1024.0, 3071.0] and ckpt.preprocessing["patch_size"] == 120
    assert ckpt.epoch == 3 and ckpt.metrics["val"]["f1"] == 0.5 and ckpt.ontology_digest == "abc123"
    rebuilt = build_model(ckpt, "cpu")
    images, boxes = torch.randn(2, 3, 120, 120), torch.tensor([[40.0, 40.0, 80.0, 80.0]] * 2)
    with torch.no_grad():
        assert torch.equal(model(images, boxes).probs, rebuilt(images, boxes).probs)


def test_optimizer_state_survives(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out = model(torch.randn(2, 3, 120, 120), torch.tensor([[40.0, 40.0, 80.0, 80.0]] * 2))
    out.logits1.sum().backward()
    opt.step()
    rng = torch.get_rng_state()
    path = _save(tmp_path / "m.pt", model, optimizer_state=opt.state_dict(),
                 training_state={"rng": rng, "best": 0.2, "python_rng": [3, (1, 2), None]})
    ckpt = load_checkpoint(path)
    opt2 = torch.optim.SGD(_model(1).parameters(), lr=0.5, momentum=0.9)
    opt2.load_state_dict(ckpt.optimizer_state)
    assert opt2.param_groups[0]["lr"] == 0.1
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])
    assert torch.equal(ckpt.training_state["rng"], rng) and ckpt.training_state["best"] == 0.2
    assert ckpt.training_state["python_rng"] == [3, [1, 2], None]  # tuples are stored as lists


def test_digest_follows_weights_not_thresholds(tmp_path):
    model = _model()
    a = load_checkpoint(_save(tmp_path / "a.pt", model))
    b = load_checkpoint(_save(tmp_path / "b.pt", model, thresholds=[0.9] * 4, metrics={}))
    assert checkpoint_digest(a) == checkpoint_digest(b)
    with torch.no_grad():
        model.class_scores1.bias[0] += 1e-3
    c = load_checkpoint(_save(tmp_path / "c.pt", model))
    assert checkpoint_digest(c) != checkpoint_digest(a)


def test_save_checks_labels_and_does_not_clobber(tmp_path):
    model = _model()
    with pytest.raises(LesaNetError, match="one name per model output"):
        _save(tmp_path / "m.pt", model, label_names=LABELS[:3], label_classes=[], thresholds=None)
    with pytest.raises(LesaNetError, match="thresholds"):
        _save(tmp_path / "m.pt", model, thresholds=[0.5])
    with pytest.raises(LesaNetError, match="plain data"):
        _save(tmp_path / "m.pt", model, metrics={"bad": object()})
    assert not (tmp_path / "m.pt").exists()
    _save(tmp_path / "m.pt", model)
    with pytest.raises(LesaNetError, match="refusing to overwrite"):
        _save(tmp_path / "m.pt", model)
    _save(tmp_path / "m.pt", model, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_refuses_corrupt_foreign_and_wrong_version(tmp_path):
    good = _save(tmp_path / "good.pt", _model())
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(LesaNetError, match="corrupt.pt.*corrupt or truncated"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": _model().state_dict(), "epoch": 1}, foreign)
    with pytest.raises(LesaNetError, match="foreign.pt.*must be a LesaNet checkpoint"):
        load_checkpoint(foreign)
    payload = torch.load(good, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(LesaNetError, match="format_version must be 1, but got 99"):
        load_checkpoint(tmp_path / "v99.pt")
    with pytest.raises(LesaNetError, match="existing file"):
        load_checkpoint(tmp_path / "missing.pt")


class _Exploit:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_with_a_forbidden_global_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    evil = tmp_path / "evil.pt"
    payload = torch.load(_save(tmp_path / "good.pt", _model()), weights_only=True)
    payload["metrics"] = {"x": _Exploit()}
    torch.save(payload, evil)
    with pytest.raises(LesaNetError, match=r"evil.pt.*refused.*(posix|nt)\.system"):
        load_checkpoint(evil)
    assert not marker.exists()
    # the same exploit as a bare pickle (not a torch file) is refused as well
    evil.write_bytes(pickle.dumps({"x": _Exploit()}, protocol=2))
    with pytest.raises(LesaNetError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_build_model_reports_mismatching_weights(tmp_path):
    ckpt = load_checkpoint(_save(tmp_path / "m.pt", _model()))
    ckpt.state_dict.pop("fc_emb.weight")
    with pytest.raises(LesaNetError, match="must fit architecture 'lesanet_demo'"):
        build_model(ckpt)
