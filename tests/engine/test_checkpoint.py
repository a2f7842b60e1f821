"""Checkpoints: atomic save, safe load, clear errors."""
from __future__ import annotations

import os

import pytest
import torch

from vmb.engine.checkpoint import load_checkpoint, save_checkpoint
from vmb.record.schema import CHECKPOINT_FILE
from vmb.errors import VMBError


def make_state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
            "evals": [[0.25, 12.5, 1.0], [0.5, 25.0, 2.5]], "decode_failures": 2,
            "fixed_config_digest": "ab" * 32, "nested": {"a": [1, 2.5, "x"], "t": torch.arange(4)}}


def test_round_trip(tmp_path):
    state = make_state()
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["decode_failures"] == 2
    assert loaded["evals"] == state["evals"]
    assert loaded["fixed_config_digest"] == state["fixed_config_digest"]
    assert loaded["nested"]["a"] == [1, 2.5, "x"]
    assert torch.equal(loaded["nested"]["t"], torch.arange(4))
    for key, value in state["model"].items():
        assert torch.equal(loaded["model"][key], value)
    momentum = state["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(loaded["optimizer"]["state"][0]["momentum_buffer"], momentum)
    # The loaded state restores a model and an optimizer.
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    model.load_state_dict(loaded["model"])
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).load_state_dict(loaded["optimizer"])


def test_atomic_replace_and_no_temp_file(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    assert os.listdir(tmp_path) == [CHECKPOINT_FILE]


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(Exception):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1


def test_missing_returns_none(tmp_path):
    assert load_checkpoint(tmp_path / "nothing.pyth") is None


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", os.urandom(2048)])
def test_corrupt_raises_with_path(tmp_path, content):
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(content)
    with pytest.raises(VMBError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_raises(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, make_state())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(VMBError, match=CHECKPOINT_FILE):
        load_checkpoint(path)


class Payload:
    """A class that weights_only loading must refuse to instantiate."""

    def __init__(self):
        self.x = 1


def test_arbitrary_objects_are_not_unpickled(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    torch.save({"epoch": 1, "obj": Payload()}, path)
    with pytest.raises(VMBError, match=str(path)):
        load_checkpoint(path)


def test_training_state_restores_what_it_saved(tmp_path):
    """The checkpoint's whole round trip through the one module: state -> file -> restore."""
    from vmb.engine.checkpoint import restore, training_state

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, training_state(model, optimizer, scaler, 3, 2, [[0.5, 10.0]], 1234, "fp32"))
    other = torch.nn.Linear(3, 2)
    other_optimizer = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    assert restore(load_checkpoint(path), other, other_optimizer, scaler) == (3, 2, [[0.5, 10.0]])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert other_optimizer.state_dict()["state"][0]["momentum_buffer"].shape == (2, 3)
