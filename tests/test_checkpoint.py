import os

import pytest
import torch

from crl_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_roundtrip(tmp_path):
    state = {"epoch": 3, "w": torch.arange(4.0), "history": [{"loss": 1.5}]}
    save_checkpoint(state, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["epoch"] == 3 and torch.equal(back["w"], state["w"]) and back["history"] == [{"loss": 1.5}]


def test_failed_write_keeps_last_good(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C hit in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]  # no temp file left behind


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"w": torch.zeros(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)  # plain pickle inside a torch file
    with pytest.raises(CheckpointError, match="weights_only") as caught:
        load_checkpoint(path)
    message = str(caught.value)
    # it names what was refused (os.system), in plain text, and never suggests loading it anyway
    assert "GLOBAL" in message and "system" in message and "\x1b" not in message
    assert "can still be loaded" not in message


def test_missing():
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint("/nonexistent/c.pt")
