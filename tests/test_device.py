"""Device choice: CUDA, then Apple MPS, then the CPU, with the hardware faked."""
from __future__ import annotations

import pytest
import torch

from crl_helpers.course import describe_environment
from crl_helpers.device import pick_device


def _fake(monkeypatch, cuda: bool, mps: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _fake(monkeypatch, cuda, mps)
    assert pick_device("auto").type == expected


@pytest.mark.parametrize("cuda, mps, printed", [(True, False, "Fake GPU 80GB"), (False, True, "device: mps"),
                                                (False, False, "device: cpu")])
def test_each_notebook_prints_the_device_it_picked(monkeypatch, cuda, mps, printed):
    _fake(monkeypatch, cuda, mps)
    assert printed in describe_environment("cpu")


@pytest.mark.parametrize("name, missing", [("cuda", "no CUDA GPU"), ("mps", "Apple MPS is not available")])
def test_asking_for_a_missing_device_says_so(monkeypatch, name, missing):
    _fake(monkeypatch, False, False)
    with pytest.raises(ValueError, match=missing):
        pick_device(name)


def test_a_device_name_that_is_no_device_is_refused():
    with pytest.raises(ValueError, match="'tpu' is not a device"):
        pick_device("tpu")
