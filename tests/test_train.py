"""Checkpoints (safetensors only), resumable training, the train command."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import TINY_INR
from safetensors.torch import load_file
from typer.testing import CliRunner

from csrdmri.checkpoint import load_model, read_meta, save_checkpoint
from csrdmri.cli import app
from csrdmri.errors import InputError
from csrdmri.models import build_model
from csrdmri.train import TrainConfig, train

TINY_RUN = TrainConfig(
    model_overrides={**TINY_INR, "coord": "local", "residual": True},
    lr=1e-3,
    epochs=2,
    lr_size=8,
    val_every=1,
    val_patches=2,
    patches_per_subject=9,
)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    config = {"architecture": "inr", **TINY_INR}
    model = build_model(config)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {"model": config, "note": "x"})
    loaded, meta = load_model(path)
    lr, t1 = torch.rand(1, 1, 10, 10, 10), torch.rand(1, 1, 10, 10, 10)
    torch.testing.assert_close(loaded(lr, t1, (20, 20, 20)), model(lr, t1, (20, 20, 20)))
    assert meta["note"] == "x" and meta["model"] == config
    # A pickle is never loaded, whatever its content.
    pt = tmp_path / "weights.pt"
    pt.write_bytes(pickle.dumps({"model": config}))
    with pytest.raises(InputError, match=r"only \.safetensors"):
        load_model(pt)
    # A corrupted file.
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="not a readable safetensors"):
        read_meta(broken)
    # Weights of another architecture than the configuration says.
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, model, {"model": {"architecture": "inr", **TINY_INR, "width": 32}})
    with pytest.raises(InputError, match="do not match the configured architecture"):
        load_model(other)


def _model_tensors(path):
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("model.", "optim."))}


def test_resumed_training_ends_with_the_same_weights(small_cohort, tmp_path):
    train(TINY_RUN, small_cohort, tmp_path / "straight", cache=tmp_path / "cache")
    train(TINY_RUN, small_cohort, tmp_path / "resumed", cache=tmp_path / "cache", epochs=1)
    assert read_meta(tmp_path / "resumed" / "last.safetensors")["epoch"] == 0
    train(TINY_RUN, small_cohort, tmp_path / "resumed", resume=True, cache=tmp_path / "cache", epochs=2)
    # Resuming a finished run (its own epoch count) has nothing left to do; a new run never
    # overwrites an existing one.
    assert train(TINY_RUN, small_cohort, tmp_path / "resumed", resume=True, cache=tmp_path / "cache") == {}
    with pytest.raises(InputError, match="already holds a run"):
        train(TINY_RUN, small_cohort, tmp_path / "resumed", cache=tmp_path / "cache")
    straight = _model_tensors(tmp_path / "straight" / "last.safetensors")
    resumed = _model_tensors(tmp_path / "resumed" / "last.safetensors")
    assert straight.keys() == resumed.keys() and any(k.startswith("optim.") for k in straight)
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    run = tmp_path / "straight"
    assert (run / "best.safetensors").exists() and (run / "loss.png").exists()
    assert json.loads((run / "config.json").read_text())["model"]["residual"] is True
    assert len((run / "log.csv").read_text().splitlines()) == 1 + 2  # header + one step per epoch


def test_train_command_errors(small_cohort, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(
        app, ["train", "--data", str(small_cohort), "--out", str(tmp_path / "r"), "--preset", "gpu"]
    )
    assert bad.exit_code == 2 and "unknown preset 'gpu'" in bad.stderr
    bad = runner.invoke(app, ["train", "--data", str(small_cohort), "--out", str(tmp_path / "r"), "--resume"])
    assert bad.exit_code == 2 and "nothing to resume" in bad.stderr
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epochs": "many"}))
    bad = runner.invoke(
        app, ["train", "--data", str(small_cohort), "--out", str(tmp_path / "r"), "--config", str(config)]
    )
    assert bad.exit_code == 2 and "epochs must be int" in bad.stderr
    config.write_text(json.dumps({"learning_rate": 1}))
    bad = runner.invoke(
        app, ["train", "--data", str(small_cohort), "--out", str(tmp_path / "r"), "--config", str(config)]
    )
    assert bad.exit_code == 2 and "unknown training option(s): learning_rate" in bad.stderr


def test_shipped_weights_load_and_have_a_model_card():
    from csrdmri.evaluate import resolve_method
    from csrdmri.weights import shipped

    for name, path in shipped().items():
        model, meta = load_model(path)
        assert path.with_suffix(".md").exists(), f"{name} has no model card"
        assert "validation" in meta and meta["model"]["architecture"] == "inr"
        lr = torch.rand(1, 1, 8, 8, 8)
        t1 = torch.rand(1, 1, 8, 8, 8) if model.uses_t1 else None
        assert model(lr, t1, (19, 19, 19)).shape == (1, 1, 19, 19, 19)
        assert resolve_method(name).uses_t1 == model.uses_t1
