"""Tests for crl_helpers.evaluate against independent oracles: loops in float64, closed forms, toy tasks."""
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import crl_helpers.evaluate as evaluate
from crl_helpers.evaluate import (DEFAULT_MEAN, DEFAULT_STD, FINE_TUNE, ProbeConfig, extract_embeddings, fine_tune,
                                  knn_accuracy, knn_predict, linear_probe, linear_probe_on_features,
                                  nearest_neighbours, same_class_fraction_of_neighbours)
from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _assert_same_state(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


# ------------------------------------------------------------------- oracle
def knn_oracle(train_v, train_y, test_v, k, temperature, weighting):
    """Brute force, straight from InstDisc: a Python loop over test points, float64, sorted similarities."""
    train = [[float(a) for a in row] for row in train_v.double()]
    labels = [int(a) for a in train_y]
    preds = []
    for row in test_v.double():
        q = [float(a) for a in row]
        qn = math.sqrt(sum(a * a for a in q))
        sims = []
        for j, t in enumerate(train):
            tn = math.sqrt(sum(a * a for a in t))
            sims.append((sum(a * b for a, b in zip(q, t)) / (qn * tn), j))
        sims.sort(key=lambda pair: -pair[0])
        votes = {}
        for sim, j in sims[: min(k, len(train))]:
            weight = math.exp(sim / temperature) if weighting == "exp" else 1.0
            votes[labels[j]] = votes.get(labels[j], 0.0) + weight
        best = max(votes.values())
        preds.append(min(c for c, total in votes.items() if total == best))  # ties: smallest label
    return torch.tensor(preds)


# ---------------------------------------------------------------------- kNN
@pytest.mark.parametrize("weighting", ["exp", "majority"])
@pytest.mark.parametrize("k", [1, 5, 16])
def test_knn_matches_brute_force_loop(weighting, k):
    g = torch.Generator().manual_seed(k)
    train_v, test_v = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g)
    expected = knn_oracle(train_v, train_y, test_v, k, 0.1, weighting)
    got = knn_predict(train_v, train_y, test_v, k=k, temperature=0.1, weighting=weighting, chunk=7)  # 4 chunks
    assert got.dtype == torch.int64
    assert torch.equal(got, expected)


def test_knn_small_temperature_stays_finite_and_matches_loop():
    # exp(s / 0.002) reaches e^400 and more, far past float32's e^88 (float64 holds up to e^709): the
    # implementation must still agree with the float64 loop.
    g = torch.Generator().manual_seed(1)
    train_v, test_v = torch.randn(40, 6, generator=g), torch.randn(15, 6, generator=g)
    train_y = torch.randint(0, 3, (40,), generator=g)
    expected = knn_oracle(train_v, train_y, test_v, 10, 0.002, "exp")
    assert torch.equal(knn_predict(train_v, train_y, test_v, k=10, temperature=0.002), expected)


def test_knn_two_separated_clusters_is_perfect():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    train_y, test_y = torch.arange(40) % 2, torch.arange(30) % 2
    train_v = centres[train_y] + 0.3 * torch.randn(40, 3, generator=g)
    test_v = centres[test_y] + 0.3 * torch.randn(30, 3, generator=g)
    for weighting in ("exp", "majority"):
        assert knn_accuracy(train_v, train_y, test_v, test_y, k=5, weighting=weighting) == 1.0


def test_knn_k_larger_than_train_set_lets_every_point_vote():
    g = torch.Generator().manual_seed(0)
    train_v, test_v = torch.randn(10, 4, generator=g), torch.randn(6, 4, generator=g)
    train_y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    # Every training point votes once: the majority class of the training set wins everywhere.
    assert torch.equal(knn_predict(train_v, train_y, test_v, k=1000, weighting="majority"), torch.ones(6, dtype=torch.long))
    assert torch.equal(
        knn_predict(train_v, train_y, test_v, k=1000), knn_oracle(train_v, train_y, test_v, 10, 0.1, "exp")
    )


def test_knn_uses_cosine_similarity_so_feature_scale_does_not_matter():
    train_v = torch.tensor([[0.2, 0.0], [0.0, 3.0]])
    train_y = torch.tensor([0, 1])
    # (3, 2) is nearer (0, 3) in Euclidean distance (3.16 vs 3.44) but nearer (0.2, 0) in angle.
    test_v = torch.tensor([[3.0, 2.0], [0.1, 0.2]])
    assert knn_predict(train_v, train_y, test_v, k=1).tolist() == [0, 1]
    assert knn_predict(train_v * 100, train_y, test_v * 0.01, k=1).tolist() == [0, 1]


def test_knn_n_classes_and_votes_for_unseen_labels():
    train_v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    preds = knn_predict(train_v, torch.tensor([2, 5]), torch.tensor([[0.0, 1.0]]), k=1, n_classes=8)
    assert preds.tolist() == [5]


@pytest.mark.parametrize("kwargs, error, word", [
    ({"k": 0}, ValueError, "k=0"),
    ({"k": 2.5}, TypeError, "k=2.5"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"weighting": "softmax"}, ValueError, "weighting"),
    ({"chunk": 0}, ValueError, "chunk"),
    ({"n_classes": 2}, ValueError, "n_classes"),
])
def test_knn_validates_arguments(kwargs, error, word):
    train_v, train_y = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 1])
    with pytest.raises(error, match=word):
        knn_predict(train_v, train_y, torch.randn(2, 3), **kwargs)


def test_knn_validates_shapes_and_dtypes():
    train_v, train_y = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 1])
    with pytest.raises(ValueError, match="d=4"):
        knn_predict(train_v, train_y, torch.randn(2, 4))
    with pytest.raises(ValueError, match="train_y"):
        knn_predict(train_v, train_y[:4], torch.randn(2, 3))
    with pytest.raises(TypeError, match="integers"):
        knn_predict(train_v, train_y.float(), torch.randn(2, 3))
    with pytest.raises(ValueError, match="test_y"):
        knn_accuracy(train_v, train_y, torch.randn(2, 3), torch.tensor([0, 1, 1]))


# --------------------------------------------------------- nearest neighbours
def neighbours_oracle(train_v, test_v, k):
    """A float64 loop: cosine similarity of each query with every training row, sorted, first k."""
    out = []
    for q in test_v.double():
        sims = [(float(q @ t) / (float(q.norm()) * float(t.norm())), j) for j, t in enumerate(train_v.double())]
        out.append([j for _, j in sorted(sims, key=lambda pair: -pair[0])[:k]])
    return torch.tensor(out)


@pytest.mark.parametrize("k, chunk", [(1, 1024), (5, 3), (40, 7)])
def test_nearest_neighbours_match_a_loop(k, chunk):
    g = torch.Generator().manual_seed(k)
    train_v = torch.randn(40, 6, generator=g) * torch.rand(40, 1, generator=g) * 5  # lengths vary: cosine ignores them
    test_v = torch.randn(9, 6, generator=g)
    got = nearest_neighbours(train_v, test_v, k, chunk=chunk)
    assert got.dtype == torch.int64 and got.shape == (9, k)
    assert torch.equal(got, neighbours_oracle(train_v, test_v, k))


def test_nearest_neighbours_are_the_ones_knn_votes_with():
    g = torch.Generator().manual_seed(1)
    train_v, test_v = torch.randn(30, 4, generator=g), torch.randn(12, 4, generator=g)
    train_y = torch.randint(3, (30,), generator=g)
    first = nearest_neighbours(train_v, test_v, k=1)[:, 0]
    assert torch.equal(train_y[first], knn_predict(train_v, train_y, test_v, k=1))


def test_same_class_fraction_of_neighbours_matches_a_count():
    g = torch.Generator().manual_seed(2)
    neighbours = torch.randint(20, (7, 4), generator=g)
    train_y, test_y = torch.randint(3, (20,), generator=g), torch.randint(3, (7,), generator=g)
    count = sum(int(train_y[neighbours[i, j]] == test_y[i]) for i in range(7) for j in range(4))
    assert same_class_fraction_of_neighbours(neighbours, train_y, test_y) == pytest.approx(count / 28)
    assert same_class_fraction_of_neighbours(neighbours, train_y, train_y[neighbours[:, 0]]) >= 1 / 4


def test_neighbour_functions_validate_arguments():
    train_v, test_v = torch.randn(5, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="k=6"):
        nearest_neighbours(train_v, test_v, k=6)
    with pytest.raises(ValueError, match="d=4"):
        nearest_neighbours(train_v, torch.randn(2, 4), k=1)
    with pytest.raises(ValueError, match="finite|NaN|inf"):
        nearest_neighbours(train_v, torch.full((2, 3), float("nan")), k=1)
    neighbours, train_y = torch.tensor([[0, 1], [2, 3]]), torch.tensor([0, 1, 1, 0, 2])
    with pytest.raises(TypeError, match="integer tensor"):
        same_class_fraction_of_neighbours(neighbours.float(), train_y, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="test_y"):
        same_class_fraction_of_neighbours(neighbours, train_y, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="outside"):
        same_class_fraction_of_neighbours(torch.tensor([[0, 5]]), train_y, torch.tensor([0]))


# --------------------------------------------------------------- embeddings
def test_extract_embeddings_normalises_uint8_in_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (10, 3, 2, 2), dtype=torch.uint8, generator=g)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    got = extract_embeddings(nn.Flatten(), x, batch_size=3, mean=mean, std=std)
    expected = torch.empty(10, 12, dtype=torch.float64)
    for n in range(10):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    expected[n, c * 4 + i * 2 + j] = (int(x[n, c, i, j]) / 255 - mean[c]) / std[c]
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)


def test_extract_embeddings_passes_float_input_through():
    x = torch.randn(5, 3, 2, 2)
    torch.testing.assert_close(extract_embeddings(nn.Flatten(), x, batch_size=2), x.flatten(1), rtol=0, atol=0)


def test_extract_embeddings_v_and_z_of_a_simclr_model_in_eval_mode_then_restores_train_mode():
    torch.manual_seed(0)
    model = SimCLRModel(SmallConvNet(width=4, feature_dim=16), ProjectionHead(16, hidden_dim=8, out_dim=5))
    x = torch.randn(6, 3, 16, 16)
    before = _state(model)
    v = extract_embeddings(model, x, batch_size=4, which="v")
    z = extract_embeddings(model, x, batch_size=4, which="z")
    assert model.training  # restored
    _assert_same_state(model, before)  # eval mode: BatchNorm running statistics untouched
    model.eval()
    with torch.no_grad():
        v_ref, z_ref = model(x)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(z, z_ref)
    assert z.shape == (6, 5) and v.shape == (6, 16)


def test_extract_embeddings_refuses_z_from_a_plain_encoder_and_bad_which():
    with pytest.raises(ValueError, match="SimCLRModel"):
        extract_embeddings(SmallConvNet(width=4), torch.randn(2, 3, 8, 8), which="z")
    with pytest.raises(ValueError, match="which='h'"):
        extract_embeddings(SmallConvNet(width=4), torch.randn(2, 3, 8, 8), which="h")


@pytest.mark.parametrize("x, error", [
    (torch.randn(3, 8, 8), ValueError),
    (torch.zeros(2, 3, 4, 4, dtype=torch.int32), TypeError),
    (torch.randn(0, 3, 4, 4), ValueError),
    ([[1.0]], TypeError),
])
def test_extract_embeddings_validates_images(x, error):
    with pytest.raises(error, match="x"):
        extract_embeddings(nn.Flatten(), x)


def test_extract_embeddings_progress_bar_only_when_asked(capsys):
    extract_embeddings(nn.Flatten(), torch.randn(4, 1, 2, 2), batch_size=1)
    assert "embeddings" not in capsys.readouterr().err
    extract_embeddings(nn.Flatten(), torch.randn(4, 1, 2, 2), batch_size=1, progress=True)
    assert "embeddings" in capsys.readouterr().err


# ------------------------------------------------------------- linear probe
class IdentityLikeEncoder(nn.Module):
    """Flatten, then a frozen-by-protocol identity linear map and a BatchNorm whose buffers must not move."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()
        self.norm = nn.BatchNorm1d(dim)
        self.feature_dim = dim

    def forward(self, x):
        return self.norm(self.linear(x.flatten(1)))


def _separable(n: int, seed: int):
    """Images (n, 1, 2, 4) whose flattened pixels are linearly separable by a fixed hyperplane, with a margin."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0, 0.0, 2.0, -0.5])
    x = torch.randn(n, 8, generator=g)
    x = x + (0.5 * torch.sign(x @ w))[:, None] * w / w.norm()  # push points away from the boundary
    return x.view(n, 1, 2, 4), (x @ w > 0).long()


def test_linear_probe_on_separable_features_and_encoder_stays_frozen():
    x_train, y_train = _separable(200, seed=0)
    x_test, y_test = _separable(100, seed=1)
    encoder = IdentityLikeEncoder(8)  # left in train mode on purpose
    before = _state(encoder)
    result = linear_probe(encoder, x_train, y_train, x_test, y_test, ProbeConfig(epochs=30, lr=1e-2, batch_size=64))
    assert result["test_acc"] >= 0.95 and result["train_acc"] >= 0.95
    assert len(result["history"]) == 30 and result["history"][-1]["loss"] < result["history"][0]["loss"]
    _assert_same_state(encoder, before)  # bit-identical, BatchNorm running statistics included
    assert encoder.training


class SneakyEncoder(IdentityLikeEncoder):
    """Updates its own weights inside forward, as a buggy EMA / 'online' layer would."""

    def forward(self, x):
        with torch.no_grad():
            self.linear.weight.add_(1e-3)
        return super().forward(x)


def test_linear_probe_raises_when_the_encoder_changes_itself():
    x, y = _separable(20, seed=0)
    with pytest.raises(RuntimeError, match="linear.weight"):
        linear_probe(SneakyEncoder(8), x, y, x, y, ProbeConfig(epochs=1))


def test_linear_probe_raises_when_features_are_extracted_in_train_mode(monkeypatch):
    """A regression in extract_embeddings (forgetting eval mode) moves BatchNorm statistics: the probe must notice."""

    def extract_in_train_mode(model, x, **kwargs):
        model.train()
        with torch.no_grad():
            return model(x.float())

    monkeypatch.setattr(evaluate, "extract_embeddings", extract_in_train_mode)
    x, y = _separable(20, seed=0)
    with pytest.raises(RuntimeError, match="running_mean"):
        linear_probe(IdentityLikeEncoder(8), x, y, x, y, ProbeConfig(epochs=1))


class OffsetEncoder(IdentityLikeEncoder):
    """Features 1000 + 0.001 * x: the same information as x, at a scale no fixed learning rate suits."""

    def forward(self, x):
        return 1000.0 + 1e-3 * self.linear(x.flatten(1))


def test_linear_probe_standardises_features_so_their_offset_and_scale_do_not_matter():
    x_train, y_train = _separable(200, seed=0)
    x_test, y_test = _separable(100, seed=1)
    result = linear_probe(OffsetEncoder(8), x_train, y_train, x_test, y_test,
                          ProbeConfig(epochs=10, lr=1e-2, batch_size=64))
    assert result["test_acc"] >= 0.95


def test_linear_probe_is_reproducible_with_a_seed():
    x, y = _separable(40, seed=0)
    first = linear_probe(IdentityLikeEncoder(8), x, y, x, y, ProbeConfig(epochs=3, seed=7))
    second = linear_probe(IdentityLikeEncoder(8), x, y, x, y, ProbeConfig(epochs=3, seed=7))
    assert first["history"] == second["history"]


def test_linear_probe_validates_inputs():
    x, y = _separable(10, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        linear_probe(IdentityLikeEncoder(8), x, y, x, y, ProbeConfig(epochs=0))
    with pytest.raises(ValueError, match="y_test"):
        linear_probe(IdentityLikeEncoder(8), x, y, x, y[:5])
    with pytest.raises(ValueError, match="x_test"):
        linear_probe(IdentityLikeEncoder(8), x, y, x.view(10, 1, 4, 2), y)



@pytest.mark.parametrize("seed", [0, 7])
def test_linear_probe_on_features_gives_exactly_what_linear_probe_gives(seed):
    """The two routes share one implementation: the features linear_probe extracts, probed with the same seed."""
    torch.manual_seed(0)
    encoder = SmallConvNet(width=4, feature_dim=8)
    x_train, y_train = _colour_task(48, seed=0)
    x_test, y_test = _colour_task(24, seed=1)
    stats = dict(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    from_images = linear_probe(encoder, x_train, y_train, x_test, y_test,
                               ProbeConfig(epochs=4, batch_size=16, seed=seed, **stats))
    v_train = extract_embeddings(encoder, x_train, batch_size=16, **stats)  # (N, d), batched as linear_probe does
    v_test = extract_embeddings(encoder, x_test, batch_size=16, **stats)  # (M, d)
    from_features = linear_probe_on_features(v_train, y_train, v_test, y_test, ProbeConfig(epochs=4, batch_size=16, seed=seed))
    assert from_features == from_images  # accuracies and every epoch's loss, bit for bit


def test_linear_probe_on_features_separates_separable_features_whatever_their_scale():
    x_train, y_train = _separable(200, seed=0)
    x_test, y_test = _separable(100, seed=1)
    v_train, v_test = x_train.flatten(1), x_test.flatten(1)  # (N, 8): separable by a known hyperplane
    for offset, scale in [(0.0, 1.0), (1000.0, 1e-3)]:  # standardised first: the same problem
        result = linear_probe_on_features(offset + scale * v_train, y_train, offset + scale * v_test, y_test,
                                          ProbeConfig(epochs=30, lr=1e-2, batch_size=64))
        assert result["test_acc"] >= 0.95 and result["train_acc"] >= 0.95
        assert len(result["history"]) == 30 and result["history"][-1]["loss"] < result["history"][0]["loss"]


def test_linear_probe_on_features_leaves_the_callers_features_and_rng_alone():
    v, y = torch.randn(30, 4, requires_grad=True), torch.arange(30) % 3
    v_before, rng_before = v.detach().clone(), torch.get_rng_state()
    linear_probe_on_features(v, y, v, y, ProbeConfig(epochs=2))
    assert torch.equal(v.detach(), v_before) and v.grad is None
    assert torch.equal(torch.get_rng_state(), rng_before)  # seeded inside, restored afterwards


def test_linear_probe_on_features_validates_inputs():
    v, y = torch.randn(10, 4), torch.arange(10) % 2
    with pytest.raises(ValueError, match="v_test"):
        linear_probe_on_features(v, y, torch.randn(10, 5), y)  # d differs
    with pytest.raises(TypeError, match="v_train"):
        linear_probe_on_features(v.long(), y, v, y)
    with pytest.raises(ValueError, match="v_train"):
        linear_probe_on_features(v[0], y, v, y)  # a single feature vector, not (N, d)
    with pytest.raises(ValueError, match="y_train"):
        linear_probe_on_features(v, y[:5], v, y)
    with pytest.raises(ValueError, match="batch_size"):
        linear_probe_on_features(v, y, v, y, ProbeConfig(batch_size=0))
    with pytest.raises(TypeError, match="ProbeConfig"):
        linear_probe_on_features(v, y, v, y, 5)  # epochs and the rest live in the config


# -------------------------------------------------------------- fine-tuning
def _colour_task(n: int, seed: int):
    """uint8 images (n, 3, 8, 8): class 0 is reddish, class 1 greenish, under heavy pixel noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = torch.where(y[:, None] == 0, torch.tensor([150.0, 100.0, 120.0]), torch.tensor([100.0, 150.0, 120.0]))
    x = base[:, :, None, None] + 40 * torch.randn(n, 3, 8, 8, generator=g)
    return x.clamp(0, 255).to(torch.uint8), y


def test_fine_tune_learns_an_easy_task_and_leaves_the_callers_encoder_alone():
    torch.manual_seed(0)
    encoder = SmallConvNet(width=4, feature_dim=8)
    encoder.features[0].requires_grad_(False)  # the caller's flags must survive too
    before = _state(encoder)
    x_train, y_train = _colour_task(128, seed=0)
    x_test, y_test = _colour_task(64, seed=1)
    result = fine_tune(encoder, x_train, y_train, x_test, y_test, replace(FINE_TUNE, epochs=4, lr=1e-2, batch_size=32))
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert result["test_acc"] >= 0.9 and result["train_acc"] >= 0.9
    _assert_same_state(encoder, before)
    assert encoder.training and not encoder.features[0].weight.requires_grad


def test_fine_tune_calls_augment_on_raw_training_batches_only():
    calls = []

    def augment(x):
        calls.append((x.dtype, x.shape[0]))
        return x.float() / 255  # the callable owns the normalisation

    x, y = _colour_task(20, seed=0)
    fine_tune(SmallConvNet(width=4, feature_dim=8), x, y, x[:6], y[:6], replace(FINE_TUNE, epochs=2, batch_size=8),
              augment=augment)
    # 20 images in batches of 8 -> 8, 8, 4 per epoch; never called on the 6 test images.
    assert calls == [(torch.uint8, 8), (torch.uint8, 8), (torch.uint8, 4)] * 2


def test_fine_tune_drops_a_last_batch_of_one_and_the_head_of_a_simclr_model():
    x, y = _colour_task(9, seed=0)
    model = SimCLRModel(SmallConvNet(width=4, feature_dim=8), ProjectionHead(8, hidden_dim=4, out_dim=3))
    result = fine_tune(model, x, y, x, y, replace(FINE_TUNE, epochs=1, batch_size=4))  # batches 4, 4, (1 dropped)
    assert 0.0 <= result["test_acc"] <= 1.0


def test_fine_tune_validates_arguments():
    x, y = _colour_task(8, seed=0)
    with pytest.raises(TypeError, match="augment"):
        fine_tune(SmallConvNet(width=4), x, y, x, y, replace(FINE_TUNE, epochs=1), augment="flip")
    with pytest.raises(ValueError, match="lr"):
        fine_tune(SmallConvNet(width=4), x, y, x, y, replace(FINE_TUNE, epochs=1, lr=-1.0))
    with pytest.raises(TypeError, match="encoder"):
        fine_tune("convnet", x, y, x, y)



def test_fine_tune_returns_its_model_whose_accuracy_a_plain_count_reproduces():
    torch.manual_seed(0)
    encoder = SmallConvNet(width=4, feature_dim=8)
    before = _state(encoder)
    x_train, y_train = _colour_task(96, seed=0)
    x_test, y_test = _colour_task(32, seed=1)  # one batch of 32, as fine_tune scores it
    result = fine_tune(encoder, x_train, y_train, x_test, y_test, replace(FINE_TUNE, epochs=3, lr=1e-2, batch_size=32))
    model = result["model"]
    assert isinstance(model, nn.Sequential) and not model.training
    assert model[0] is not encoder and isinstance(model[0], SmallConvNet)
    _assert_same_state(encoder, before)  # the caller's encoder was copied, not trained
    mean = torch.tensor(DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DEFAULT_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((x_test.float() / 255 - mean) / std)  # (M, 2)
    correct = sum(int(p) == int(t) for p, t in zip(logits.argmax(1), y_test))
    assert result["test_acc"] == correct / len(y_test)
    assert result["history"][-1]["test_acc"] == result["test_acc"]


@pytest.mark.parametrize("eval_every, scored", [(1, [1, 2, 3, 4, 5]), (2, [2, 4, 5]), (0, [5]), (9, [5])])
def test_fine_tune_scores_the_test_set_every_eval_every_epochs_without_changing_training(eval_every, scored):
    x_train, y_train = _colour_task(40, seed=0)
    x_test, y_test = _colour_task(16, seed=1)
    config = replace(FINE_TUNE, epochs=5, lr=1e-2, batch_size=16)
    torch.manual_seed(0)  # the same initial encoder for both runs: fine_tune seeds only its own draws
    reference = fine_tune(SmallConvNet(width=4, feature_dim=8), x_train, y_train, x_test, y_test, config)  # every epoch
    torch.manual_seed(0)
    encoder = SmallConvNet(width=4, feature_dim=8)
    result = fine_tune(encoder, x_train, y_train, x_test, y_test, config, eval_every=eval_every)
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["epoch"] for h in history if "test_acc" in h] == scored
    # Scoring is read-only: every epoch's loss, and the final model's accuracies, are those of eval_every=1.
    assert [h["loss"] for h in history] == [h["loss"] for h in reference["history"]]
    assert (result["train_acc"], result["test_acc"]) == (reference["train_acc"], reference["test_acc"])


def test_fine_tune_validates_eval_every():
    x, y = _colour_task(8, seed=0)
    with pytest.raises(ValueError, match="eval_every"):
        fine_tune(SmallConvNet(width=4), x, y, x, y, replace(FINE_TUNE, epochs=1), eval_every=-1)
    with pytest.raises(TypeError, match="eval_every"):
        fine_tune(SmallConvNet(width=4), x, y, x, y, replace(FINE_TUNE, epochs=1), eval_every=0.5)


# -------------------------------------------------------------------- CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_knn_on_cuda_matches_loop():
    g = torch.Generator().manual_seed(3)
    train_v, test_v = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g)
    got = knn_predict(train_v.cuda(), train_y.cuda(), test_v.cuda(), k=5, chunk=7)
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), knn_oracle(train_v, train_y, test_v, 5, 0.1, "exp"))


@pytest.mark.cuda
@cuda
def test_evaluation_on_cuda_leaves_a_cpu_encoder_on_the_cpu():
    x_train, y_train = _colour_task(64, seed=0)
    encoder = SmallConvNet(width=4, feature_dim=8)
    before = _state(encoder)
    v = extract_embeddings(encoder, x_train, device="cuda")
    assert v.device.type == "cpu" and next(encoder.parameters()).device.type == "cpu"
    linear_probe(encoder, x_train, y_train, x_train, y_train, ProbeConfig(epochs=2), device="cuda")
    result = fine_tune(encoder, x_train, y_train, x_train, y_train, replace(FINE_TUNE, epochs=3, lr=1e-2, batch_size=16),
                       device="cuda")
    assert result["train_acc"] >= 0.9  # bf16 autocast still learns
    assert next(encoder.parameters()).device.type == "cpu"
    _assert_same_state(encoder, before)


# -------------------------------------------------------------------- ProbeConfig
def test_probe_config_presets_and_training_statistics():
    from crl_helpers.evaluate import LINEAR_PROBE
    from crl_helpers.views import ViewConfig

    assert LINEAR_PROBE == ProbeConfig() and (LINEAR_PROBE.epochs, LINEAR_PROBE.weight_decay) == (50, 0.0)
    assert (FINE_TUNE.epochs, FINE_TUNE.lr, FINE_TUNE.batch_size, FINE_TUNE.weight_decay) == (10, 1e-3, 256, 5e-4)
    # Evaluation normalises uint8 images as training does unless told otherwise.
    assert DEFAULT_MEAN == ViewConfig().mean and DEFAULT_STD == ViewConfig().std
    assert ProbeConfig().mean == ViewConfig().mean and ProbeConfig(mean=[0, 0, 0]).mean == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("field, value, error", [
    ("epochs", 0, ValueError), ("epochs", 2.0, TypeError), ("lr", 0, ValueError), ("lr", float("nan"), ValueError),
    ("batch_size", 0, ValueError), ("weight_decay", -1.0, ValueError), ("seed", -1, ValueError),
    ("seed", "0", TypeError), ("std", (0.5, 0.0, 0.5), ValueError), ("mean", (0.5, 0.5), ValueError),
])
def test_probe_config_validates_each_field(field, value, error):
    with pytest.raises(error, match=field):
        ProbeConfig(**{field: value})


def test_probe_config_accepts_numpy_integers():
    import numpy as np

    config = ProbeConfig(epochs=np.int64(3), seed=np.int32(1))
    assert (config.epochs, config.seed) == (3, 1) and type(config.epochs) is int and type(config.seed) is int


# -------------------------------------------------------------------- hostile inputs
def test_hostile_knn_accepts_numpy_integer_k_and_n_classes():
    import numpy as np

    g = torch.Generator().manual_seed(8)
    train_v, test_v = torch.randn(30, 4, generator=g), torch.randn(7, 4, generator=g)
    train_y = torch.randint(0, 3, (30,), generator=g)
    expected = knn_oracle(train_v, train_y, test_v, 5, 0.1, "exp")
    assert torch.equal(knn_predict(train_v, train_y, test_v, k=np.int64(5), n_classes=np.int32(3)), expected)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32])
def test_hostile_any_integer_label_dtype_is_accepted(dtype):
    g = torch.Generator().manual_seed(9)
    train_v, test_v = torch.randn(30, 4, generator=g), torch.randn(7, 4, generator=g)
    train_y, test_y = torch.randint(0, 3, (30,), generator=g), torch.randint(0, 3, (7,), generator=g)
    expected = knn_oracle(train_v, train_y, test_v, 5, 0.1, "exp")
    preds = knn_predict(train_v, train_y.to(dtype), test_v, k=5)
    assert preds.dtype == torch.int64 and torch.equal(preds, expected)
    assert knn_accuracy(train_v, train_y.to(dtype), test_v, test_y.to(dtype), k=5) == \
        (expected == test_y).float().mean().item()
    config = ProbeConfig(epochs=2)
    assert linear_probe_on_features(train_v, train_y.to(dtype), test_v, test_y.to(dtype), config) == \
        linear_probe_on_features(train_v, train_y, test_v, test_y, config)


def _with_bad(v: torch.Tensor, bad: float) -> torch.Tensor:
    v = v.clone()
    v[1, 2] = bad
    return v


class _DivergedEncoder(nn.Module):
    """An encoder whose training diverged: its features are NaN."""

    def forward(self, x):
        return torch.full((x.shape[0], 4), float("nan"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_hostile_non_finite_features_are_refused_not_scored(bad):
    g = torch.Generator().manual_seed(10)
    v, y = torch.randn(12, 4, generator=g), torch.arange(12) % 3
    config = ProbeConfig(epochs=1)
    calls = {
        "train_v": lambda: knn_predict(_with_bad(v, bad), y, v, k=3),
        "test_v": lambda: knn_predict(v, y, _with_bad(v, bad), k=3),
        "test_v ": lambda: knn_accuracy(v, y, _with_bad(v, bad), y, k=3),
        "v_train": lambda: linear_probe_on_features(_with_bad(v, bad), y, v, y, config),
        "v_test": lambda: linear_probe_on_features(v, y, _with_bad(v, bad), y, config),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"{name.strip()} contains NaN or inf") and "\n" not in message
    # A diverged encoder: linear_probe refuses the features it extracts.
    x = torch.rand(6, 3, 4, 4)
    with pytest.raises(ValueError, match="v_train contains NaN or inf"):
        linear_probe(_DivergedEncoder(), x, torch.arange(6) % 2, x, torch.arange(6) % 2, config)
