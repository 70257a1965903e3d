"""Tests for crl_helpers.validate: each rule accepts exactly the values it states and names the value in its message."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crl_helpers.validate import (FLOAT16_MIN_TEMPERATURE, MIN_TEMPERATURE, check_choice, check_embedding_pair,
                                  check_embeddings, check_fraction, check_images, check_int, check_labels,
                                  check_nonnegative, check_positive, check_temperature)


@pytest.mark.parametrize("value", [2, 5, np.int64(9), 10])
def test_check_int_accepts_the_closed_range(value):
    assert check_int("k", value, 2, maximum=10) == int(value) and type(check_int("k", value, 2)) is int


@pytest.mark.parametrize("value, error, message", [
    (1, ValueError, "k=1 must be an int in [2, 10]; the hint"), (11, ValueError, "k=11 must be an int in [2, 10]"),
    (True, TypeError, "k=True must be an int"), (2.0, TypeError, "k=2.0 must be an int"),
])
def test_check_int_refuses_with_the_value_and_the_hint(value, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_int("k", value, 2, "the hint", maximum=10)
    with pytest.raises(ValueError, match="k=1 must be >= 2$"):
        check_int("k", 1, 2)  # without a maximum, only the lower bound is named


def test_check_choice_names_the_choices():
    assert check_choice("m", "sgd", ("adamw", "sgd")) == "sgd"
    with pytest.raises(ValueError, match="^m='lars' is unknown; choose one of adamw, sgd$"):
        check_choice("m", "lars", ("adamw", "sgd"))


def test_number_rules_at_their_edges():
    assert check_fraction("f", 0) == 0.0 and check_fraction("f", 1) == 1.0
    assert check_nonnegative("w", 0) == 0.0 and check_positive("lr", 100, maximum=100) == 100.0
    for call in (lambda: check_fraction("f", 1.0001), lambda: check_fraction("f", math.nan),
                 lambda: check_nonnegative("w", -1e-12), lambda: check_positive("lr", 0.0),
                 lambda: check_positive("lr", math.inf), lambda: check_positive("lr", 100.5, maximum=100)):
        with pytest.raises(ValueError, match=r"^(f|w|lr)="):
            call()
    with pytest.raises(ValueError, match=r"^TrainConfig\.lr=500\.0 must be <= 100$"):
        check_positive("TrainConfig.lr", 500.0, maximum=100)
    with pytest.raises(TypeError, match="lr='a' must be a number"):
        check_positive("lr", "a")


def test_check_temperature_floors_and_its_name():
    assert check_temperature(MIN_TEMPERATURE) == MIN_TEMPERATURE
    with pytest.raises(ValueError, match="below 1e-08"):
        check_temperature(MIN_TEMPERATURE / 2)
    half = torch.ones(2, 3, dtype=torch.float16)
    assert check_temperature(FLOAT16_MIN_TEMPERATURE, half) == FLOAT16_MIN_TEMPERATURE
    assert check_temperature(FLOAT16_MIN_TEMPERATURE / 2, half.float()) == FLOAT16_MIN_TEMPERATURE / 2
    with pytest.raises(ValueError, match="smallest float16"):
        check_temperature(FLOAT16_MIN_TEMPERATURE / 2, half)
    with pytest.raises(ValueError, match=r"^TrainConfig\.temperature=0 must be a finite number > 0"):
        check_temperature(0, name="TrainConfig.temperature")


def test_tensor_rules_name_the_argument():
    z = torch.zeros(3, 4)
    assert check_embeddings("z", z, dim=4, min_rows=3) is z
    with pytest.raises(ValueError, match="z has d=4 but 5 is expected"):
        check_embeddings("z", z, dim=5)
    with pytest.raises(ValueError, match="z contains NaN or inf"):
        check_embeddings("z", torch.full((2, 2), math.nan), finite=True)
    with pytest.raises(ValueError, match="a has shape \\(3, 4\\) but b has shape \\(2, 4\\)"):
        check_embedding_pair("a", z, "b", z[:2])
    assert check_labels("y", torch.tensor([0, 2], dtype=torch.uint8), 2).dtype == torch.int64
    with pytest.raises(ValueError, match="y has a negative label -1"):
        check_labels("y", torch.tensor([0, -1]), 2)
    with pytest.raises(ValueError, match="x has shape \\(1, 1, 4, 4\\) with 1 channels"):
        check_images("x", torch.zeros(1, 1, 4, 4, dtype=torch.uint8), channels=3)
