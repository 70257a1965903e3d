"""Encoders e(x) -> v and transform heads: projection h(v) -> z (SimCLR, Chen et al. 2020), context g(v_1..v_T) -> c.

SimCLR trains an encoder ``e`` and a projection head ``h`` together: features
``v = e(x)`` are what we keep and evaluate, embeddings ``z = h(v) / ||h(v)||`` live
on the unit hypersphere where the InfoNCE / NT-Xent loss compares them. After
training the head is thrown away (``SimCLRModel.drop_head``): the paper's
section 4.2 reports that ``v`` transfers better than ``z``.

Le-Khac, Healy & Smeaton (2020) call every module between the representation and
the loss a *transform head*: a projection head maps one ``v`` to one ``z``, a
contextualization head (``ContextHead``, CPC's autoregressive context network)
aggregates a sequence of representations into one.

Compute is counted in FLOPs, one multiply-add (MAC) = 2 FLOPs, by
``count_flops`` (PyTorch's ``FlopCounterMode``, which counts convolutions and
matrix products, not BatchNorm, ReLU or pooling).

Example:
    >>> import torch
    >>> encoder = build_encoder("convnet")
    >>> model = SimCLRModel(encoder, ProjectionHead(encoder.feature_dim, hidden_dim=64, out_dim=32))
    >>> v, z = model(torch.randn(4, 3, 32, 32))
    >>> v.shape, z.shape
    (torch.Size([4, 128]), torch.Size([4, 32]))
    >>> torch.allclose(z.norm(dim=1), torch.ones(4))
    True
"""
from __future__ import annotations

import functools

import torch

import torch.nn.functional as F
from torch import nn

from crl_helpers.validate import check_embeddings, check_int

ENCODERS = ("convnet", "resnet18", "resnet18-imagenet")


class SmallConvNet(nn.Module):
    """A small, fast ConvNet encoder for CPU work: ``x (N, 3, H, W) -> v (N, feature_dim)``.

    A stride-2 stem (32 -> 16), then three 3x3 conv -> BatchNorm -> ReLU blocks with
    widths ``2w, 4w, 8w`` separated by 2x2 max-pools (16 -> 8 -> 4), then global
    average pooling (any image size works) and a linear map to ``feature_dim`` when
    it differs from ``8w``.

    Why this shape: only the stem works at full resolution, which keeps the cost of
    a 32x32 image at 7.3 MFLOPs (3.65 M multiply-adds; ``count_flops``), 152x less
    than a CIFAR-stem ResNet-18 (1.11 GFLOPs = 0.56 G multiply-adds), while the
    later blocks see 16x16 and 8x8 maps, enough to tell a star from a plus. An
    all-stride-2 variant (32 -> 2 pixels, 2.0 MFLOPs = 1.0 M multiply-adds) was
    3.7x cheaper but learned the shapes far more slowly: in a 2-minute CPU budget
    it reached kNN ~0.3 where this one reaches ~0.7 (measured on the built-in dataset).

    Args:
        width: channels of the stem, doubled per block. 16 keeps a SimCLR step of 256
            views on 2 CPU cores near 0.1 s; 32 or 64 learn better where compute is cheap.
        feature_dim: size of ``v``. 128 equals ``8 * 16`` so the default net
            needs no final linear layer.

    Raises:
        TypeError, ValueError: ``width`` or ``feature_dim`` is not a positive int.

    Example:
        >>> net = SmallConvNet(width=8, feature_dim=32)
        >>> net(torch.randn(2, 3, 32, 32)).shape, net.feature_dim
        (torch.Size([2, 32]), 32)
    """

    def __init__(self, width: int = 16, feature_dim: int = 128) -> None:
        super().__init__()
        self.width = width = check_int("width", width, 1)
        self.feature_dim = feature_dim = check_int("feature_dim", feature_dim, 1)

        def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            # bias=False: the BatchNorm right after supplies the shift.
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, width, stride=2),  # (N, w, H/2, W/2)
            *block(width, 2 * width), nn.MaxPool2d(2),  # (N, 2w, H/4, W/4)
            *block(2 * width, 4 * width), nn.MaxPool2d(2),  # (N, 4w, H/8, W/8)
            *block(4 * width, 8 * width),  # (N, 8w, H/8, W/8)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity() if feature_dim == 8 * width else nn.Linear(8 * width, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (N, 8w, H/8, W/8)
        h = self.pool(h).flatten(1)  # (N, 8w)
        return self.fc(h)  # (N, feature_dim)


@functools.cache
def _resnet18_encoder_class() -> type:
    """``ResNet18Encoder``, built on first use: torchvision takes seconds to import, and the CPU path needs none of it."""
    import torchvision

    class ResNet18Encoder(torchvision.models.ResNet):
        """torchvision's ResNet-18 as an encoder ``x (N, 3, H, W) -> v (N, 512)`` (He et al. 2016).

        ``fc`` is replaced by ``nn.Identity()`` so the output is the 512-d pooled
        feature. ``stem="cifar"`` is the SimCLR paper's CIFAR-10 variant (appendix
        B.9): the 7x7 stride-2 conv becomes a 3x3 stride-1 conv and the max-pool is
        removed, so a 32x32 image is not shrunk to 8x8 before the first residual
        block. ``stem="imagenet"`` keeps the standard stem (meant for 224x224).
        Being a ``torchvision.models.ResNet`` subclass, its ``state_dict`` keys are
        torchvision's.

        Raises:
            ValueError: ``stem`` is not ``"cifar"`` or ``"imagenet"``.

        Example:
            >>> encoder = ResNet18Encoder(stem="cifar")
            >>> encoder.conv1.kernel_size, encoder.conv1.stride, encoder.feature_dim
            ((3, 3), (1, 1), 512)
        """

        feature_dim = 512

        def __init__(self, stem: str = "cifar") -> None:
            if stem not in ("cifar", "imagenet"):
                raise ValueError(f"stem={stem!r} is not a ResNet stem; use 'cifar' (32x32 images) or 'imagenet' (224x224)")
            super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])
            self.stem = stem
            if stem == "cifar":
                self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
                nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
                self.maxpool = nn.Identity()
            self.fc = nn.Identity()

    ResNet18Encoder.__module__, ResNet18Encoder.__qualname__ = __name__, "ResNet18Encoder"  # picklable by name
    return ResNet18Encoder


def __getattr__(name: str):
    if name == "ResNet18Encoder":  # torchvision's ResNet-18 as an encoder; see _resnet18_encoder_class
        return _resnet18_encoder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resnet18_cifar() -> nn.Module:
    """ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool), ``v`` in R^512.

    Example:
        >>> resnet18_cifar().maxpool
        Identity()
    """
    return _resnet18_encoder_class()(stem="cifar")


def resnet18_imagenet() -> nn.Module:
    """ResNet-18 with the standard ImageNet stem (7x7 stride-2 conv, max-pool), ``v`` in R^512.

    Example:
        >>> resnet18_imagenet().conv1.kernel_size
        (7, 7)
    """
    return _resnet18_encoder_class()(stem="imagenet")


def build_encoder(name: str, **kw) -> nn.Module:
    """Build an encoder by name: ``"convnet"``, ``"resnet18"`` (CIFAR stem) or ``"resnet18-imagenet"``.

    Keyword arguments go to the constructor (``width``, ``feature_dim`` for the
    convnet; the ResNets take none). Every encoder has a ``feature_dim`` attribute.

    Raises:
        ValueError: unknown ``name`` (the message lists ``ENCODERS``).
        TypeError: a keyword the chosen encoder does not take.

    Example:
        >>> build_encoder("convnet", width=8).feature_dim
        128
    """
    if name == "convnet":
        return SmallConvNet(**kw)
    if name in ("resnet18", "resnet18-imagenet"):
        if kw:
            raise TypeError(f"encoder {name!r} takes no options, got {sorted(kw)}; its feature_dim is fixed at 512")
        return resnet18_cifar() if name == "resnet18" else resnet18_imagenet()
    raise ValueError(f"encoder name={name!r} is unknown; use one of {ENCODERS}")


class ProjectionHead(nn.Module):
    """Projection head ``z = h(v) / ||h(v)||``: an MLP onto the unit hypersphere (SimCLR, Chen et al. 2020).

    ``depth`` linear layers with ``BatchNorm1d`` (optional) and ReLU between them,
    none after the last: ``depth=2`` is SimCLR v1's head, ``depth=3`` SimCLR v2's,
    ``depth=1`` a linear head and ``depth=0`` the identity (``z = v / ||v||``;
    then ``out_dim`` is ``in_dim``, whatever was asked). Shapes: ``v (N, in_dim)
    -> z (N, out_dim)`` with ``||z_i|| = 1``.

    Args:
        in_dim: size of ``v``, the encoder's ``feature_dim``.
        hidden_dim: width of the hidden layers. 512 matches a ResNet-18's ``v``,
            as in the paper (hidden width = feature width).
        out_dim: size of ``z``. 128, the paper's choice; its Figure 8 shows the
            output size barely matters.
        depth: number of linear layers, ``>= 0``. 2 as in SimCLR v1.
        batch_norm: BatchNorm after each hidden linear layer, as in the paper's
            code; hidden linears then have no bias since BatchNorm shifts anyway.

    Raises:
        TypeError, ValueError: a dimension that is not a positive int, a negative
            ``depth``, a non-bool ``batch_norm``.

    Example:
        >>> head = ProjectionHead(16, hidden_dim=8, out_dim=4, depth=2)
        >>> [type(layer).__name__ for layer in head.mlp]
        ['Linear', 'BatchNorm1d', 'ReLU', 'Linear']
        >>> z = head(torch.randn(3, 16))  # (3, 4)
        >>> torch.allclose(z.norm(dim=1), torch.ones(3))
        True
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, depth: int = 2, batch_norm: bool = True) -> None:
        super().__init__()
        in_dim = check_int("in_dim", in_dim, 1)
        hidden_dim = check_int("hidden_dim", hidden_dim, 1)
        out_dim = check_int("out_dim", out_dim, 1)
        depth = check_int("depth", depth, 0, hint="the number of linear layers: 0 = identity head, 1 = linear, "
                                                  "2 = SimCLR's MLP")
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm={batch_norm!r} must be True or False")
        self.in_dim, self.depth, self.batch_norm = in_dim, depth, batch_norm
        self.out_dim = out_dim if depth > 0 else in_dim
        dims = [in_dim] + [hidden_dim] * (depth - 1) + [out_dim] if depth > 0 else [in_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == depth - 1
            layers.append(nn.Linear(d_in, d_out, bias=last or not batch_norm))
            if not last:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)  # empty Sequential = identity when depth == 0

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(v), dim=1)  # (N, out_dim), unit rows


class SimCLRModel(nn.Module):
    """Encoder plus projection head: ``forward(x) -> (v, z)`` (SimCLR, Chen et al. 2020).

    ``v = encoder(x)`` of shape ``(N, feature_dim)`` is the representation kept
    after training; ``z = head(v)`` of shape ``(N, out_dim)``, unit-norm rows, is
    what the contrastive loss sees.

    Raises:
        TypeError: ``encoder`` or ``head`` is not an ``nn.Module``.
        ValueError: the encoder's ``feature_dim`` differs from the head's ``in_dim``
            (checked when both attributes exist).

    Example:
        >>> model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
        >>> encoder = model.drop_head()
        >>> encoder is model.encoder
        True
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        for name, module in (("encoder", encoder), ("head", head)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
        feature_dim, in_dim = getattr(encoder, "feature_dim", None), getattr(head, "in_dim", None)
        if feature_dim is not None and in_dim is not None and feature_dim != in_dim:
            raise ValueError(
                f"head.in_dim={in_dim} does not match encoder.feature_dim={feature_dim}; "
                f"build the head with ProjectionHead(in_dim=encoder.feature_dim, ...)"
            )
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.encoder(x)  # (N, feature_dim)
        z = self.head(v)  # (N, out_dim)
        return v, z

    def drop_head(self) -> nn.Module:
        """The encoder alone (the same object, not a copy): what is kept after contrastive training."""
        return self.encoder


class ContextHead(nn.Module):
    """Contextualization head ``c = g(v_1, ..., v_T)``: a GRU over a sequence of representations (CPC).

    Le-Khac, Healy & Smeaton (2020) split the transform head into the projection head
    (one ``v`` -> one ``z``) and the contextualization head, which aggregates several
    representations into one. Contrastive Predictive Coding (van den Oord, Li & Vinyals
    2018) is the standard example: an encoder embeds each audio frame (or image patch) into
    ``v_t`` and an autoregressive model (a GRU for audio, a PixelCNN over image patches)
    summarises ``v_1 .. v_t`` into the context ``c_t``, which the loss then scores against
    the representations of later frames or patches. This head is the GRU version.

    Shapes: ``v_seq (N, T, in_dim) -> c (N, out_dim)``, the GRU's hidden state after the
    last step ``T`` (``h_0 = 0``). Order matters: ``c`` is not a pooled average.
    With ``normalize=True`` the rows of ``c`` have unit norm, like ``ProjectionHead``'s ``z``.

    Args:
        in_dim: size of each ``v_t``, the encoder's ``feature_dim``.
        out_dim: size of ``c``, the GRU's hidden size (CPC's audio model: 256).
        normalize: L2-normalise ``c`` for a cosine-similarity loss; False returns ``h_T``
            as it is (CPC scores it with a bilinear map instead).

    Raises:
        TypeError, ValueError: a dimension that is not a positive int, a non-bool
            ``normalize``; in ``forward``, ``v_seq`` not a float tensor ``(N, T, in_dim)``.

    Example:
        >>> head = ContextHead(in_dim=16, out_dim=8)
        >>> c = head(torch.randn(4, 9, 16))  # 4 images, 9 patches each
        >>> c.shape, torch.allclose(c.norm(dim=1), torch.ones(4))
        (torch.Size([4, 8]), True)
    """

    def __init__(self, in_dim: int, out_dim: int = 128, normalize: bool = True) -> None:
        super().__init__()
        self.in_dim = check_int("in_dim", in_dim, 1)
        self.out_dim = check_int("out_dim", out_dim, 1)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize={normalize!r} must be True or False")
        self.normalize = normalize
        self.gru = nn.GRU(self.in_dim, self.out_dim, batch_first=True)

    def forward(self, v_seq: torch.Tensor) -> torch.Tensor:
        v_seq = check_embeddings("v_seq", v_seq, dim=self.in_dim, ndim=3)  # (N, T, in_dim)
        _, h_last = self.gru(v_seq)  # (1, N, out_dim): the hidden state after step T
        c = h_last[0]  # (N, out_dim)
        return F.normalize(c, dim=1) if self.normalize else c


def count_flops(module: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one forward pass on ``x``, counted by PyTorch's ``FlopCounterMode``.

    One multiply-add (MAC) counts as 2 FLOPs, so MACs = FLOPs / 2. Convolutions and matrix
    products are counted; BatchNorm, activations and pooling (a few percent) are not.
    Runs under ``torch.no_grad()``; call ``module.eval()`` first if it has BatchNorm, or its
    running statistics move as in any training-mode forward.

    Example:
        >>> count_flops(nn.Linear(10, 3, bias=False), torch.randn(1, 10))  # 30 multiply-adds
        60
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (only those with ``requires_grad`` if ``trainable_only``).

    Example:
        >>> count_parameters(nn.Linear(10, 3))
        33
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
