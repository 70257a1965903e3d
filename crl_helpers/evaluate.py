"""Evaluating a representation: embeddings, kNN, linear probe, fine-tuning.

The three standard read-outs of a self-supervised encoder, cheapest first:

- **kNN** on frozen features (Wu et al. 2018, "Unsupervised Feature Learning via
  Non-Parametric Instance Discrimination"; the monitor of SimCLR/DINO codebases):
  no training at all, so it is the number to watch during contrastive training;
- **linear probe** (Chen et al. 2020, SimCLR, section 4): a linear classifier on
  frozen features, the paper's headline protocol;
- **fine-tuning**: encoder and classifier trained together, which with a freshly
  initialised encoder is the supervised-from-scratch baseline.

Images come as in-memory tensors: ``x`` of shape ``(N, 3, H, W)``, either uint8 in
``[0, 255]`` (converted batch by batch with ``(x / 255 - mean) / std``) or floating
point, taken as already normalised; labels ``y`` of shape ``(N,)``, any integer dtype.
Features must be finite: a diverged encoder's NaN features are refused, never scored.
The probe and fine-tuning take their training settings as one :class:`ProbeConfig`
(:data:`LINEAR_PROBE`, :data:`FINE_TUNE`).

Example:
    >>> import torch
    >>> train_v = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> train_y = torch.tensor([0, 0, 1, 1])
    >>> knn_predict(train_v, train_y, torch.tensor([[1.0, 0.2], [0.2, 1.0]]), k=3)
    tensor([0, 1])
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm only draws progress bars; a bare GPU box without it still evaluates

    def tqdm(iterable, **_kwargs):
        return iterable


from crl_helpers.device import autocast_dtype
from crl_helpers.losses import normalize_rows
from crl_helpers.models import SimCLRModel
from crl_helpers.validate import (check_channel_stats, check_embeddings, check_images, check_int, check_labels,
                                  check_nonnegative, check_positive, check_temperature)
from crl_helpers.views import ViewConfig

# Training's normalisation (ViewConfig's defaults), so that evaluation normalises like training
# when neither is told otherwise; pass the dataset's own statistics.
DEFAULT_MEAN = ViewConfig().mean
DEFAULT_STD = ViewConfig().std

WEIGHTINGS = ("exp", "majority")

__all__ = ["DEFAULT_MEAN", "DEFAULT_STD", "FINE_TUNE", "LINEAR_PROBE", "ProbeConfig", "WEIGHTINGS",
           "extract_embeddings", "fine_tune", "knn_accuracy", "knn_predict", "linear_probe", "linear_probe_on_features",
           "nearest_neighbours", "same_class_fraction_of_neighbours"]


# --------------------------------------------------------------------- config
@dataclass(frozen=True)
class ProbeConfig:
    """How a classifier is trained on an encoder's output: the linear probe's and fine-tuning's settings.

    Taken by :func:`linear_probe`, :func:`linear_probe_on_features` (which ignores ``mean`` and
    ``std``: its inputs are features) and :func:`fine_tune`; vary it with ``dataclasses.replace``.
    The defaults are the linear probe's; :data:`FINE_TUNE` holds fine-tuning's.

    Raises:
        TypeError, ValueError: a field of the wrong type or out of range (checked on construction).

    Example:
        >>> ProbeConfig(epochs=100, lr=0.1).epochs
        100
        >>> ProbeConfig(epochs=0)
        Traceback (most recent call last):
        ...
        ValueError: epochs=0 must be >= 1
    """

    # Passes over the training set. 50: a probe's features are precomputed, so epochs are cheap and
    # Adam converges well within them.
    epochs: int = 50
    # Adam's learning rate. 1e-3, Adam's default, suits standardised features.
    lr: float = 1e-3
    # Training samples per step, and images per encoder pass. 256: still several steps an epoch on the
    # course's datasets of a few thousand images, and an encoder pass that fits any device's memory.
    batch_size: int = 256
    # Adam's L2 penalty. 0: a probe should reflect the features, not a regulariser's tuning.
    weight_decay: float = 0.0
    # Per-channel statistics that normalise uint8 images, (x / 255 - mean) / std: training's
    # (ViewConfig's defaults), so that the encoder sees what it was trained on.
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD
    # Seeds the classifier's initialisation and batch order (CPU RNG, restored afterwards), so that a
    # run is reproducible by default; None leaves the RNG alone.
    seed: int | None = 0

    def __post_init__(self) -> None:
        mean, std = tuple(self.mean), tuple(self.std)
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean={self.mean!r} and std={self.std!r} need one value per channel each")
        checked = {
            "epochs": check_int("epochs", self.epochs, 1),
            "lr": check_positive("lr", self.lr),
            "batch_size": check_int("batch_size", self.batch_size, 1),
            "weight_decay": check_nonnegative("weight_decay", self.weight_decay),
            "seed": None if self.seed is None else check_int("seed", self.seed, 0),
            "mean": tuple(float(m) for m in mean),
            "std": tuple(check_positive(f"std[{i}]", v, "a per-channel standard deviation") for i, v in enumerate(std)),
        }
        for name, value in checked.items():  # plain Python numbers, whatever was passed (numpy integers ...)
            object.__setattr__(self, name, value)


# The linear probe's settings (Chen et al. 2020, SimCLR, section 4): the defaults.
LINEAR_PROBE = ProbeConfig()
# Fine-tuning's (SimCLR, section 6 / appendix B.6): 10 epochs show the gap between pre-trained and
# from-scratch on the course's small datasets; 5e-4 weight decay, a common CIFAR setting, since every
# weight of the encoder now trains.
FINE_TUNE = ProbeConfig(epochs=10, weight_decay=5e-4)


def _check_config(config: object) -> ProbeConfig:
    if not isinstance(config, ProbeConfig):
        raise TypeError(f"config={config!r} must be a ProbeConfig; build one with ProbeConfig(epochs=..., ...)")
    return config


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def _resolve_device(device: torch.device | str | None, module: nn.Module) -> torch.device:
    return _module_device(module) if device is None else torch.device(device)


def _to_input(x: torch.Tensor, device: torch.device, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A batch as the encoder's float32 input on ``device``: uint8 is scaled and normalised, float passes."""
    x = x.to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x.float()
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    return (x.float() / 255 - mean_t) / std_t  # (B, C, H, W)


# ----------------------------------------------------------------- embeddings
@torch.no_grad()
def extract_embeddings(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    which: str = "v",
    progress: bool = False,
    to_cpu: bool = True,
) -> torch.Tensor:
    """Features ``v = e(x)`` (or embeddings ``z``) of every image, in eval mode, without gradients.

    Args:
        model: an encoder, or a ``SimCLRModel`` (then ``which`` picks ``v`` or ``z``).
        x: images ``(N, C, H, W)``, uint8 (normalised here with ``mean``/``std``) or
            float (taken as already normalised).
        batch_size: images per forward pass; bounds memory.
        device: where to run; ``None`` runs where the model's parameters are. The
            model is moved there for the call and moved back afterwards, and its
            train/eval mode is restored.
        which: ``"v"`` (features, the default) or ``"z"`` (unit-norm embeddings of a
            ``SimCLRModel``'s head).
        progress: show a tqdm progress bar over batches.
        to_cpu: gather the result on the CPU (the default). ``False`` keeps it on
            ``device``, so that a GPU run can go on to :func:`knn_predict` there
            without a round trip through host memory.

    Returns:
        float32 tensor ``(N, d)``, on the CPU (or on ``device`` if ``to_cpu=False``).

    Raises:
        TypeError, ValueError: bad ``x``, ``batch_size``, ``mean``/``std`` (one finite number per
            channel, ``std`` > 0) or ``which``; ``which="z"``
            with a plain encoder (there is no head to produce ``z``).

    Example:
        >>> from crl_helpers.models import SmallConvNet, ProjectionHead, SimCLRModel
        >>> model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
        >>> x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
        >>> extract_embeddings(model, x, batch_size=4).shape
        torch.Size([10, 128])
        >>> extract_embeddings(model, x, which="z").shape
        torch.Size([10, 16])
        >>> extract_embeddings(model, x, device="cpu", to_cpu=False).device
        device(type='cpu')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_images("x", x)
    check_int("batch_size", batch_size, 1)
    mean, std = check_channel_stats(mean, std)
    if which not in ("v", "z"):
        raise ValueError(f"which={which!r}; use 'v' (encoder features) or 'z' (projection-head embeddings)")
    if not isinstance(to_cpu, bool):
        raise TypeError(f"to_cpu={to_cpu!r} must be True (gather on the CPU) or False (keep on the device)")
    is_simclr = isinstance(model, SimCLRModel)
    if which == "z" and not is_simclr:
        raise ValueError("which='z' needs a SimCLRModel (encoder + head); a plain encoder only gives which='v'")
    net = model.encoder if is_simclr and which == "v" else model  # skip the head when only v is asked for
    home, was_training = _module_device(net), net.training
    device = _resolve_device(device, net)
    net.to(device).eval()
    try:
        outs = []
        for start in tqdm(range(0, x.shape[0], batch_size), desc="embeddings", disable=not progress, leave=False):
            out = net(_to_input(x[start : start + batch_size], device, mean, std))
            if isinstance(out, tuple):  # SimCLRModel -> (v, z)
                out = out[1]
            out = out.float()  # (B, d)
            outs.append(out.cpu() if to_cpu else out)
    finally:
        net.to(home).train(was_training)
    return torch.cat(outs)  # (N, d)


# ------------------------------------------------------------------------ kNN
@torch.no_grad()
def knn_predict(
    train_v: torch.Tensor,
    train_y: torch.Tensor,
    test_v: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    weighting: str = "exp",
    n_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Weighted k-nearest-neighbour classification on the unit sphere (Wu et al. 2018, InstDisc).

    Features are L2-normalised and compared by cosine similarity ``s_ij``. Each
    test point takes its ``k`` most similar training points; neighbour ``j`` votes
    for its label with weight ``exp(s_ij / temperature)`` (``weighting="exp"``, the
    weighted kNN of InstDisc and DINO, which use ``temperature = 0.07``) or 1 (``"majority"``,
    where ``temperature`` is unused). The class with the largest total wins; ties
    go to the smallest class index.

    ``k`` larger than the training set is clamped to it: every training point then
    votes. Test rows are processed ``chunk`` at a time, so memory is
    ``O(chunk * N_train)``; the work runs on ``train_v``'s device.

    Args:
        train_v: training features ``(N, d)``, finite.
        train_y: training labels ``(N,)``, integers (any integer dtype) in ``[0, n_classes)``.
        test_v: test features ``(M, d)``, finite.
        k: neighbours per test point, ``>= 1`` (a Python or numpy integer). 200, InstDisc's choice (DINO
            reports k = 10, 20, 100, 200).
        temperature: softness of the ``"exp"`` weights. 0.1, the course's kNN monitor
            (``TrainConfig.knn_temperature``); InstDisc and DINO use 0.07.
        weighting: ``"exp"`` or ``"majority"``.
        n_classes: number of classes; ``None`` takes ``train_y.max() + 1``.
        chunk: test rows per similarity block.

    Returns:
        int64 predictions ``(M,)`` on ``test_v``'s device.

    Raises:
        TypeError, ValueError: bad shapes, dtypes or arguments; NaN or inf in the features (a
            diverged encoder has no meaningful neighbours).

    Example:
        >>> train_v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
        >>> knn_predict(train_v, torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.1]]), k=1)
        tensor([0])
        >>> knn_predict(train_v, torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.1]]), k=3, weighting="majority")
        tensor([1])
    """
    train_v = check_embeddings("train_v", train_v, min_rows=1, finite=True)
    test_v = check_embeddings("test_v", test_v, min_rows=1, finite=True)
    if train_v.shape[1] != test_v.shape[1]:
        raise ValueError(f"train_v has d={train_v.shape[1]} but test_v has d={test_v.shape[1]}; features must match")
    n_train = train_v.shape[0]
    train_y = check_labels("train_y", train_y, n_train)  # (N,) int64, as scatter_add_ needs
    k = check_int("k", k, 1)
    temperature = check_temperature(temperature)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r}; use one of {WEIGHTINGS}")
    chunk = check_int("chunk", chunk, 1)
    n_min = int(train_y.max()) + 1
    if n_classes is None:
        n_classes = n_min
    elif check_int("n_classes", n_classes, 1) < n_min:
        raise ValueError(f"n_classes={n_classes} but train_y has label {n_min - 1}; use n_classes >= {n_min} or None")
    k = min(k, n_train)

    device = train_v.device
    bank = normalize_rows(train_v, torch.float32)  # (N, d), whatever the features' scale (1e20 or 1e-20)
    bank_y = train_y.to(device)
    preds = []
    for start in range(0, test_v.shape[0], chunk):
        query = normalize_rows(test_v[start : start + chunk].to(device), torch.float32)  # (c, d)
        sim = query @ bank.T  # (c, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (c, k), most similar first
        if weighting == "exp":
            # Subtracting each row's max leaves the argmax unchanged and keeps exp finite for small temperatures.
            weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)  # (c, k)
        else:
            weights = torch.ones_like(top_sim)
        votes = torch.zeros(query.shape[0], n_classes, device=device)  # (c, C)
        votes.scatter_add_(1, bank_y[top_idx], weights)
        preds.append(votes.argmax(dim=1))  # (c,)
    return torch.cat(preds).to(test_v.device)  # (M,)


@torch.no_grad()
def nearest_neighbours(train_v: torch.Tensor, test_v: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Each test row's ``k`` most cosine-similar training rows: the neighbours kNN votes with.

    The same neighbours :func:`knn_predict` uses (L2-normalised features, cosine similarity),
    returned as indices so that they can be shown or counted; works for any vectors, raw pixels
    flattened to ``(N, 3 * H * W)`` as well as encoder features.

    Args:
        train_v: training vectors ``(N, d)``, finite.
        test_v: query vectors ``(M, d)``, finite.
        k: neighbours per query, ``1 <= k <= N``.
        chunk: query rows per similarity block (memory ``O(chunk * N)``).

    Returns:
        int64 indices into ``train_v``, ``(M, k)``, most similar first, on ``train_v``'s device.

    Raises:
        TypeError, ValueError: bad shapes or ``k``; NaN or inf in the vectors.

    Example:
        >>> train_v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
        >>> nearest_neighbours(train_v, torch.tensor([[1.0, 0.1], [0.1, 5.0]]), k=2)
        tensor([[0, 2],
                [1, 2]])
    """
    train_v = check_embeddings("train_v", train_v, min_rows=1, finite=True)
    test_v = check_embeddings("test_v", test_v, min_rows=1, finite=True)
    if train_v.shape[1] != test_v.shape[1]:
        raise ValueError(f"train_v has d={train_v.shape[1]} but test_v has d={test_v.shape[1]}; vectors must match")
    k = check_int("k", k, 1)
    if k > train_v.shape[0]:
        raise ValueError(f"k={k} but there are only {train_v.shape[0]} training rows; use k <= {train_v.shape[0]}")
    chunk = check_int("chunk", chunk, 1)
    bank = normalize_rows(train_v, torch.float32)  # (N, d)
    index = []
    for start in range(0, test_v.shape[0], chunk):
        query = normalize_rows(test_v[start : start + chunk].to(bank.device), torch.float32)  # (c, d)
        index.append((query @ bank.T).topk(k, dim=1).indices)  # (c, k), most similar first
    return torch.cat(index)  # (M, k)


def same_class_fraction_of_neighbours(neighbours: torch.Tensor, train_y: torch.Tensor, test_y: torch.Tensor) -> float:
    """Fraction of all neighbours whose label is their query's: ``mean_{i,j} [train_y[n_ij] = test_y[i]]``.

    Args:
        neighbours: indices into the training set ``(M, k)``, e.g. from :func:`nearest_neighbours`.
        train_y: training labels ``(N,)``, integers.
        test_y: the queries' labels ``(M,)``, integers.

    Returns:
        A float in ``[0, 1]``; about ``1 / n_classes`` for neighbours that ignore the class.

    Raises:
        TypeError, ValueError: ``neighbours`` not an integer ``(M, k)`` tensor of valid indices, or
            labels of the wrong shape.

    Example:
        >>> neighbours = torch.tensor([[0, 1], [2, 0]])  # (M=2, k=2)
        >>> same_class_fraction_of_neighbours(neighbours, torch.tensor([0, 0, 1]), torch.tensor([0, 1]))
        0.75
    """
    if not isinstance(neighbours, torch.Tensor) or neighbours.ndim != 2 or neighbours.is_floating_point():
        raise TypeError(f"neighbours must be an integer tensor (M, k) of training indices, got "
                        f"{type(neighbours).__name__} {tuple(getattr(neighbours, 'shape', ()))}")
    n_train = train_y.shape[0] if isinstance(train_y, torch.Tensor) and train_y.ndim == 1 else -1
    train_y = check_labels("train_y", train_y, n_train)  # (N,)
    test_y = check_labels("test_y", test_y, neighbours.shape[0])  # (M,)
    if neighbours.numel() and (int(neighbours.min()) < 0 or int(neighbours.max()) >= n_train):
        raise ValueError(f"neighbours hold indices outside [0, {n_train}); they must index train_y")
    same = train_y.to(neighbours.device)[neighbours] == test_y.to(neighbours.device)[:, None]  # (M, k)
    return same.float().mean().item()


def knn_accuracy(
    train_v: torch.Tensor, train_y: torch.Tensor, test_v: torch.Tensor, test_y: torch.Tensor, **knn_kwargs
) -> float:
    """Fraction of test points whose ``knn_predict`` label equals ``test_y`` ``(M,)``; keywords go to ``knn_predict``.

    Raises:
        TypeError, ValueError: as ``knn_predict`` (NaN/inf features included), or ``test_y`` not
            integers of shape ``(M,)``.

    Example:
        >>> v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> knn_accuracy(v, torch.tensor([0, 1]), v, torch.tensor([0, 0]), k=1)
        0.5
    """
    check_embeddings("test_v", test_v)  # the NaN/inf scan is knn_predict's
    test_y = check_labels("test_y", test_y, test_v.shape[0])
    preds = knn_predict(train_v, train_y, test_v, **knn_kwargs)
    # Compared where the predictions are (the GPU for GPU features): one scalar comes back, not M labels.
    return (preds == test_y.to(preds.device)).float().mean().item()


# --------------------------------------------------------------- linear probe
def _check_split(x_train, y_train, x_test, y_test, kind: str = "images"):
    """Validate a train/test split of images ``x`` (``kind="images"``) or finite features ``v``
    (``kind="features"``); return ``(n_classes, y_train, y_test)``, the labels as int64."""
    if kind == "images":
        prefix = "x"
        check_images("x_train", x_train)
        check_images("x_test", x_test)
    else:
        prefix = "v"
        check_embeddings("v_train", x_train, min_rows=1, finite=True)
        check_embeddings("v_test", x_test, min_rows=1, finite=True)
    y_train = check_labels("y_train", y_train, x_train.shape[0])
    y_test = check_labels("y_test", y_test, x_test.shape[0])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{prefix}_train {kind} are {tuple(x_train.shape[1:])} but {prefix}_test are "
                         f"{tuple(x_test.shape[1:])}; both splits must come from the same source")
    return int(max(y_train.max(), y_test.max())) + 1, y_train, y_test


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Run the block with the CPU RNG seeded, restoring its state afterwards; no-op for ``seed=None``."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):  # CPU only: do not reseed the caller's CUDA generators
        torch.default_generator.manual_seed(seed)
        yield


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _assert_unchanged(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    changed = sorted(
        name for name in before.keys() | after.keys()
        if name not in before or name not in after or not torch.equal(before[name], after[name].to(before[name].device))
    )
    if changed:
        raise RuntimeError(
            f"the encoder changed during linear_probe ({len(changed)} tensors, e.g. {changed[:3]}); a linear probe "
            f"must keep it frozen: check that its forward does not update weights or BatchNorm statistics in eval mode"
        )


def linear_probe_on_features(
    v_train: torch.Tensor, y_train: torch.Tensor, v_test: torch.Tensor, y_test: torch.Tensor,
    config: ProbeConfig = LINEAR_PROBE, *, device: torch.device | str | None = None, progress: bool = False,
) -> dict:
    """Linear evaluation protocol on precomputed frozen features (Chen et al. 2020, SimCLR, section 4).

    The probe behind :func:`linear_probe`, for a caller that already holds the
    features ``v = e(x)`` (from :func:`extract_embeddings`, say, which the kNN read-out
    needs as well): nothing is recomputed. The features are standardised with the
    training set's per-dimension mean and std, and an ``nn.Linear(d, n_classes)`` is
    trained on them with Adam and cross-entropy. Given the features that
    ``linear_probe`` would extract and the same config, it returns exactly what
    ``linear_probe`` returns.

    Args:
        v_train, v_test: features ``(N, d)`` and ``(M, d)``, floating point and finite; used
            detached, as float32.
        y_train, y_test: labels ``(N,)`` and ``(M,)``, any integer dtype; ``n_classes = max
            label + 1`` over both.
        config: epochs, learning rate, batch size, weight decay and seed (:class:`ProbeConfig`;
            ``mean``/``std`` are unused here).
        device: where to train; ``None`` = where ``v_train`` is.
        progress: tqdm progress bar over epochs.

    Returns:
        ``{"train_acc": float, "test_acc": float, "history": [{"epoch", "loss"}, ...]}``.

    Raises:
        TypeError, ValueError: bad features, labels or config; NaN or inf in the features (a
            diverged encoder has no meaningful accuracy).

    Example:
        >>> v = torch.tensor([[2.0, 0.1], [1.5, -0.2], [-1.8, 0.3], [-2.2, 0.0]])  # (N, d)
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> linear_probe_on_features(v, y, v, y, ProbeConfig(epochs=100, lr=0.1))["test_acc"]
        1.0
    """
    n_classes, y_train, y_test = _check_split(v_train, y_train, v_test, y_test, kind="features")
    config = _check_config(config)
    device = v_train.device if device is None else torch.device(device)
    v_train = v_train.detach().to(device).float()  # (N, d)
    v_test = v_test.detach().to(device).float()  # (M, d)

    # Standardising makes one learning rate fit every encoder, whatever its feature scale.
    mu = v_train.mean(dim=0)  # (d,)
    sigma = v_train.std(dim=0, unbiased=False).clamp_min(1e-6)  # (d,) constant dimensions stay finite
    v_train, v_test = (v_train - mu) / sigma, (v_test - mu) / sigma
    y_train_d, y_test_d = y_train.to(device), y_test.to(device)

    history = []
    with _seeded(config.seed):
        classifier = nn.Linear(v_train.shape[1], n_classes).to(device)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        n = v_train.shape[0]
        for epoch in tqdm(range(config.epochs), desc="linear probe", disable=not progress, leave=False):
            order = torch.randperm(n).to(device)
            total = torch.zeros((), device=device)  # summed on the device: one host sync an epoch, not one a step
            for start in range(0, n, config.batch_size):
                idx = order[start : start + config.batch_size]
                loss = F.cross_entropy(classifier(v_train[idx]), y_train_d[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * idx.numel()
            history.append({"epoch": epoch + 1, "loss": total.item() / n})

    with torch.no_grad():
        train_acc = (classifier(v_train).argmax(1) == y_train_d).float().mean().item()
        test_acc = (classifier(v_test).argmax(1) == y_test_d).float().mean().item()
    return {"train_acc": train_acc, "test_acc": test_acc, "history": history}


def linear_probe(
    encoder: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    config: ProbeConfig = LINEAR_PROBE,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict:
    """Linear evaluation protocol: a linear classifier on frozen features (Chen et al. 2020, SimCLR, section 4).

    Features ``v`` are computed once (``extract_embeddings``, eval mode, no grad)
    and handed to :func:`linear_probe_on_features`, which standardises them with
    the training set's per-dimension mean and std and trains an
    ``nn.Linear(d, n_classes)`` on them with Adam and cross-entropy; call that
    directly when the features are already at hand. The encoder's parameters and
    buffers are compared bit for bit before and after: a probe that changed its
    encoder would not measure that encoder.

    Args:
        encoder: the encoder (a ``SimCLRModel`` is probed on its ``v``).
        x_train, x_test: images ``(N, C, H, W)``, uint8 or already normalised float.
        y_train, y_test: labels ``(N,)``, any integer dtype; ``n_classes = max label + 1`` over both.
        config: epochs, learning rate, batch size (also images per encoder pass), weight
            decay, ``mean``/``std`` for uint8 images, and seed (:class:`ProbeConfig`).
        device: where to run; ``None`` = where the encoder is.
        progress: tqdm progress bars.

    Returns:
        ``{"train_acc": float, "test_acc": float, "history": [{"epoch", "loss"}, ...]}``.

    Raises:
        TypeError, ValueError: bad inputs or config; NaN or inf in the encoder's features.
        RuntimeError: the encoder's parameters or buffers changed.

    Example:
        >>> from crl_helpers.models import SmallConvNet
        >>> x = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
        >>> y = torch.arange(20) % 2
        >>> result = linear_probe(SmallConvNet(width=4, feature_dim=8), x, y, x, y, ProbeConfig(epochs=2))
        >>> sorted(result), 0.0 <= result["test_acc"] <= 1.0
        (['history', 'test_acc', 'train_acc'], True)
    """
    _check_split(x_train, y_train, x_test, y_test)
    config = _check_config(config)  # before the costly feature extraction
    device = _resolve_device(device, encoder)

    before = _snapshot(encoder)
    kw = dict(batch_size=config.batch_size, device=device, mean=config.mean, std=config.std, which="v",
              progress=progress, to_cpu=False)
    v_train = extract_embeddings(encoder, x_train, **kw)  # (N, d)
    v_test = extract_embeddings(encoder, x_test, **kw)  # (M, d)
    _assert_unchanged(encoder, before)
    return linear_probe_on_features(v_train, y_train, v_test, y_test, config, device=device, progress=progress)


# ---------------------------------------------------------------- fine-tuning
@torch.no_grad()
def _accuracy(model: nn.Module, x, y, batch_size, device, mean, std) -> float:
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(_to_input(x[start : start + batch_size], device, mean, std))  # (B, C)
        correct += (logits.argmax(1).cpu() == y[start : start + batch_size].cpu()).sum().item()
    return correct / x.shape[0]


def fine_tune(
    encoder: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    config: ProbeConfig = FINE_TUNE,
    *,
    device: torch.device | str | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    eval_every: int = 1,
) -> dict:
    """Fine-tune encoder + linear classifier end to end (Chen et al. 2020, SimCLR, section 6 / appendix B.6).

    Works on a deep COPY of ``encoder``: the caller's encoder is never modified
    (its parameters, buffers and device stay as they were); the trained copy comes
    back in the result. Every parameter of the copy is trained, with Adam and
    cross-entropy, in train mode (BatchNorm uses batch statistics). Given a freshly
    initialised encoder this is the supervised-from-scratch baseline.

    Args:
        encoder: the encoder (a ``SimCLRModel`` is fine-tuned without its head).
        x_train, x_test: images ``(N, C, H, W)``, uint8 or already normalised float.
        y_train, y_test: labels ``(N,)``, any integer dtype; ``n_classes = max label + 1`` over both.
        config: epochs, learning rate, batch size (a last batch of one image is dropped since
            BatchNorm cannot normalise a single sample), weight decay, ``mean``/``std`` for
            uint8 images, and seed (:class:`ProbeConfig`); :data:`FINE_TUNE` by default.
        device: where to train; ``None`` = where the encoder is.
        augment: optional ``augment(x_batch) -> x_input``: receives a training batch
            as stored in ``x_train`` (e.g. uint8), already on ``device``, and returns
            the normalised float input; it then replaces the ``mean``/``std``
            normalisation for training batches (e.g.
            ``functools.partial(views.augment_batch, config=...)``). Test batches
            are never augmented.
        progress: tqdm progress bar over epochs.
        eval_every: score the test set after every ``eval_every``-th epoch and after
            the last one; 0 scores it only after the last. 1 (every epoch) draws a
            full curve; a larger value saves the test passes when only the final
            accuracy is wanted. Scoring never changes the training itself.

    Returns:
        ``{"train_acc", "test_acc", "history", "model"}``: accuracies of the final
        model in eval mode on the (un-augmented) training and test sets; one dict per
        epoch ``{"epoch", "loss", "train_acc"}`` plus ``"test_acc"`` on the epochs
        that were scored (``train_acc`` there is the running accuracy on the augmented
        batches during that epoch); and the fine-tuned ``nn.Sequential(encoder_copy,
        nn.Linear(d, n_classes))``, in eval mode on ``device``, mapping images
        ``(B, C, H, W)`` to logits ``(B, n_classes)`` (its encoder is ``model[0]``).

    Raises:
        TypeError, ValueError: bad inputs, config or arguments.

    Example:
        >>> import dataclasses
        >>> from crl_helpers.models import SmallConvNet
        >>> x = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
        >>> y = torch.arange(20) % 2
        >>> config = dataclasses.replace(FINE_TUNE, epochs=3, batch_size=8)
        >>> result = fine_tune(SmallConvNet(width=4, feature_dim=8), x, y, x, y, config, eval_every=2)
        >>> [h["epoch"] for h in result["history"]], [h["epoch"] for h in result["history"] if "test_acc" in h]
        ([1, 2, 3], [2, 3])
        >>> result["model"](x[:4].float()).shape  # (B, n_classes)
        torch.Size([4, 2])
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    n_classes, y_train, y_test = _check_split(x_train, y_train, x_test, y_test)
    config = _check_config(config)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment={augment!r} must be a callable x_batch -> x_input, or None")
    eval_every = check_int("eval_every", eval_every, 0)
    if isinstance(encoder, SimCLRModel):
        encoder = encoder.drop_head()
    device = _resolve_device(device, encoder)
    amp_dtype = autocast_dtype(device)
    epochs, batch_size, mean, std = config.epochs, config.batch_size, config.mean, config.std

    with _seeded(config.seed):
        net = copy.deepcopy(encoder).to(device)
        net.requires_grad_(True)
        feature_dim = getattr(net, "feature_dim", None)
        if feature_dim is None:  # an encoder without the attribute: measure it on two images
            with torch.no_grad():
                feature_dim = net.eval()(_to_input(x_train[:2], device, mean, std)).shape[1]
        model = nn.Sequential(net, nn.Linear(feature_dim, n_classes)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        n, history = x_train.shape[0], []
        for epoch in tqdm(range(epochs), desc="fine-tune", disable=not progress, leave=False):
            model.train()
            order = torch.randperm(n).to(x_train.device)
            total_loss, correct, seen = 0.0, 0, 0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                if idx.numel() == 1 and n > 1:
                    continue  # BatchNorm needs two samples
                xb = x_train[idx]
                xb = augment(xb.to(device, non_blocking=True)) if augment else _to_input(xb, device, mean, std)
                yb = y_train[idx.to(y_train.device)].to(device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(xb)  # (B, C)
                    loss = F.cross_entropy(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * yb.numel()
                correct += (logits.argmax(1) == yb).sum().item()
                seen += yb.numel()
            row = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1)}
            if epoch + 1 == epochs or (eval_every and (epoch + 1) % eval_every == 0):
                # Eval mode reads BatchNorm's running statistics without updating them, and draws no random
                # numbers: scoring leaves the next epoch exactly as it would have been.
                row["test_acc"] = _accuracy(model, x_test, y_test, batch_size, device, mean, std)
            history.append(row)

    train_acc = _accuracy(model, x_train, y_train, batch_size, device, mean, std)  # leaves the model in eval mode
    return {"train_acc": train_acc, "test_acc": history[-1]["test_acc"], "history": history, "model": model}
