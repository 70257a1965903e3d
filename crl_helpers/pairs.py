"""Where positive and negative pairs come from: samplers of p+ and p-, false negatives, and what a positive pair shares.

Le-Khac, Healy & Smeaton (2020) describe a contrastive method by two distributions over pairs of a
query ``q`` and a key ``k``: the *similarity distribution* ``p+(q, k+)`` that positive pairs are drawn
from, and the *dissimilarity distribution* ``p-(q, k-)`` that negative pairs are drawn from. In code both
are samplers. This module holds three samplers of positives, side by side:

* :func:`augmentation_positives`: two random augmentations of one image (InstDisc, Wu et al. 2018;
  SimCLR, Chen et al. 2020). The data transformation *is* the sampler of ``p+`` here;
* :func:`label_positives`: another image with the same label (SupCon, Khosla et al. 2020);
* :func:`channel_positives`: two channel groups of one image, luminance ``L`` against the colour
  channels ``ab`` of CIE Lab (CMC, Tian, Krishnan & Isola 2019), with :func:`rgb_to_lab` / :func:`lab_to_rgb`;

the sampler of negatives used by SimCLR, :func:`negative_mask` (the other images of the batch), and
what it gets wrong: :func:`false_negative_mask`, :func:`same_class_fraction` and its expectation
:func:`expected_same_class_fraction` (a negative with the anchor's class is a *false negative*).

Two measurements tell how much a positive pair made by augmentation still shares (the augmentation
explorer's meters, :func:`crl_helpers.widgets.augmentation_explorer`): :func:`crop_object_fraction`
(how much of the object a crop box keeps, with :func:`object_masks` for the built-in shapes) and
:func:`histogram_shortcut` (whether a view's colour histogram alone finds its source image, via
:func:`colour_histogram`).

Example:
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> same_class_fraction(labels)  # each anchor has 3 negatives, one of them with its class
    0.3333333333333333
    >>> expected_same_class_fraction(labels)  # (n_c - 1) / (N - 1) per anchor
    0.3333333333333333
"""
from __future__ import annotations

import torch

from crl_helpers.views import SIMCLR, ViewConfig
from crl_helpers.views_batched import make_views

__all__ = [
    "augmentation_positives",
    "label_positives",
    "channel_positives",
    "rgb_to_lab",
    "lab_to_rgb",
    "negative_mask",
    "false_negative_mask",
    "same_class_fraction",
    "expected_same_class_fraction",
    "object_masks",
    "crop_object_fraction",
    "colour_histogram",
    "histogram_shortcut",
]


def _labels(labels, name: str = "labels") -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} has shape {tuple(labels.shape)} and dtype {labels.dtype}; "
                         f"pass one integer label per image, shape (N,)")
    return labels


# ------------------------------------------------------------------------------------ samplers of p+
def augmentation_positives(x: torch.Tensor, config: ViewConfig = SIMCLR,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive pairs as two random augmentations of each image (InstDisc, Wu et al. 2018; SimCLR).

    The query's input is view ``x1[i]``, its positive key's input ``x2[i]``: the data transformation
    is how this sampler realises the similarity distribution ``p+``.

    Args:
        x: images ``(N, 3, H, W)``, uint8 or float in [0, 1].
        config: the augmentation settings (:class:`crl_helpers.views.ViewConfig`).
        generator: source of randomness; None uses torch's global generator.

    Returns:
        ``(x1, x2)``, each float32 ``(N, 3, S, S)`` normalised with ``config.mean``/``config.std``.

    Raises:
        TypeError, ValueError: as :func:`crl_helpers.views_batched.make_views`.

    Example:
        >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        >>> x1, x2 = augmentation_positives(x, generator=torch.Generator().manual_seed(0))
        >>> x1.shape, torch.equal(x1, x2)
        (torch.Size([4, 3, 32, 32]), False)
    """
    x1, x2 = make_views(x, config, n_views=2, generator=generator)  # 2 x (N, 3, S, S)
    return x1, x2


def label_positives(labels, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each image, the index of another image of the batch with the same label (SupCon, Khosla et al. 2020).

    Drawn uniformly among the other images of the anchor's class; an image that is alone in its class
    in the batch gets its own index (SupCon then keeps only the other view of the image itself).

    Args:
        labels: ``(N,)`` integer class labels of the batch.
        generator: source of randomness; None uses torch's global generator.

    Returns:
        int64 ``(N,)``: ``key[i]`` is the positive key's image for anchor ``i``.

    Raises:
        ValueError: ``labels`` is not a 1-D integer tensor.

    Example:
        >>> label_positives(torch.tensor([3, 5, 3, 7])).tolist()
        [2, 1, 0, 3]
    """
    labels = _labels(labels)
    n = labels.shape[0]
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(n, dtype=torch.bool)  # (N, N)
    scores = torch.rand(n, n, generator=generator).masked_fill(~same, -1.0)  # (N, N): random order of candidates
    best = scores.argmax(dim=1)  # (N,) a uniform choice among the same-class others
    return torch.where(same.any(dim=1), best, torch.arange(n))


# sRGB (IEC 61966-2-1) to CIE XYZ, D65 white; rows X, Y, Z.
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_DELTA = 6 / 29  # CIE Lab's break point between the cube root and the linear segment


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB images in [0, 1] (or uint8) to CIE Lab (D65): ``L`` in [0, 100], ``a``, ``b`` roughly in [-128, 128].

    Example:
        >>> lab = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))  # pure red
        >>> [round(v, 1) for v in lab.flatten().tolist()]
        [53.2, 80.1, 67.2]
    """
    x = x.double() / 255 if x.dtype == torch.uint8 else x.double()  # (B, 3, H, W)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear)  # (B, 3, H, W)
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=torch.float64).view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp(min=0) ** (1 / 3), xyz / (3 * _DELTA ** 2) + 4 / 29)
    lightness = 116 * f[:, 1] - 16  # (B, H, W)
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness, a, b], dim=1).float()  # (B, 3, H, W)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) back to sRGB in [0, 1], clamped (colours outside the sRGB gamut are clipped).

    Example:
        >>> x = torch.rand(2, 3, 4, 4)
        >>> bool((lab_to_rgb(rgb_to_lab(x)) - x).abs().max() < 1e-4)
        True
    """
    lab = lab.double()
    fy = (lab[:, 0] + 16) / 116  # (B, H, W)
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)  # (B, 3, H, W)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29))
    xyz = xyz * torch.tensor(_WHITE_D65, dtype=torch.float64).view(1, 3, 1, 1)
    matrix = torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64))
    linear = torch.einsum("ij,bjhw->bihw", matrix, xyz).clamp(0, 1)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return rgb.clamp(0, 1).float()  # (B, 3, H, W)


def channel_positives(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive pairs as two channel groups of one image: luminance ``L`` and colour ``ab`` (CMC, Tian et al. 2019).

    Contrastive Multiview Coding treats the channels of CIE Lab as two *views* of one scene: the
    query is computed from ``L``, its positive key from ``ab`` of the same image, and keys of other
    images are negatives. No randomness: the split is fixed.

    Args:
        x: images ``(N, 3, H, W)``, sRGB, uint8 or float in [0, 1].

    Returns:
        ``(L, ab)``: float32 ``(N, 1, H, W)`` in [0, 100] and ``(N, 2, H, W)``, Lab units.

    Example:
        >>> lum, ab = channel_positives(torch.ones(2, 3, 8, 8))  # white: L = 100, no colour
        >>> lum.shape, ab.shape, round(float(lum.mean()), 3), round(float(ab.abs().max()), 3)
        (torch.Size([2, 1, 8, 8]), torch.Size([2, 2, 8, 8]), 100.0, 0.0)
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x has shape {shape}; pass RGB images (N, 3, H, W)")
    lab = rgb_to_lab(x)  # (N, 3, H, W)
    return lab[:, :1], lab[:, 1:]


# ------------------------------------------------------------------------------------ the sampler of p-
def negative_mask(image_ids) -> torch.Tensor:
    """In-batch negatives: True where items ``a`` and ``b`` come from different images (SimCLR's ``p-``).

    ``image_ids`` names the source image of each item: ``torch.arange(N)`` for one item per image,
    ``torch.arange(2 * N) % N`` for SimCLR's ``2N`` stacked views (then each view has ``2N - 2`` negatives).

    Example:
        >>> negative_mask(torch.arange(4) % 2).int()
        tensor([[0, 1, 0, 1],
                [1, 0, 1, 0],
                [0, 1, 0, 1],
                [1, 0, 1, 0]], dtype=torch.int32)
    """
    ids = _labels(image_ids, "image_ids")
    return ids[:, None] != ids[None, :]  # (M, M)


def false_negative_mask(labels, image_ids=None) -> torch.Tensor:
    """False negatives: in-batch negatives whose image has the anchor's class label.

    Args:
        labels: ``(M,)`` class label of each item.
        image_ids: ``(M,)`` source image of each item; default one item per image (``arange(M)``).

    Returns:
        bool ``(M, M)``: ``negative_mask(image_ids) & (labels[a] == labels[b])``.

    Example:
        >>> false_negative_mask(torch.tensor([0, 1, 0])).int()
        tensor([[0, 0, 1],
                [0, 0, 0],
                [1, 0, 0]], dtype=torch.int32)
    """
    labels = _labels(labels)
    ids = torch.arange(labels.shape[0]) if image_ids is None else _labels(image_ids, "image_ids")
    if ids.shape != labels.shape:
        raise ValueError(f"image_ids has shape {tuple(ids.shape)} but labels {tuple(labels.shape)}; one id per item")
    return negative_mask(ids) & (labels[:, None] == labels[None, :])


def same_class_fraction(labels, image_ids=None) -> float:
    """The fraction of each anchor's in-batch negatives that share its class, averaged over anchors.

    With one item per image (``image_ids=None``) anchor ``i`` has ``N - 1`` negatives, of which
    ``n_c - 1`` are false negatives (``n_c`` = images of its class in the batch). With SimCLR's
    ``2N`` views every other image contributes two views, so the fraction is the same.

    Raises:
        ValueError: fewer than two images (no negatives), or bad shapes.

    Example:
        >>> same_class_fraction(torch.tensor([0, 0, 0, 1]))  # anchors of class 0: 2 of 3; class 1: 0 of 3
        0.5
        >>> n = 4; same_class_fraction(torch.tensor([0, 0, 0, 1]).repeat(2), torch.arange(2 * n) % n)
        0.5
    """
    labels = _labels(labels)
    false_neg = false_negative_mask(labels, image_ids)  # (M, M)
    ids = torch.arange(labels.shape[0]) if image_ids is None else _labels(image_ids, "image_ids")
    negatives = negative_mask(ids).sum(dim=1)  # (M,)
    if labels.shape[0] < 2 or (negatives == 0).any():
        raise ValueError(f"labels has {labels.shape[0]} item(s) from {len(torch.unique(ids))} image(s); "
                         f"every anchor needs a negative: pass at least two images")
    return (false_neg.sum(dim=1).double() / negatives.double()).mean().item()


def expected_same_class_fraction(labels) -> float:
    """Expected :func:`same_class_fraction` of a batch drawn uniformly without replacement from a data set.

    Any two distinct positions of such a batch hold a uniformly random ordered pair of distinct
    images, so an anchor of class ``c`` meets its class with probability ``(n_c - 1) / (N - 1)``
    (``n_c`` of the data set's ``N`` images are of class ``c``), whatever the batch size; averaged over
    anchors: ``sum_c n_c (n_c - 1) / (N (N - 1))``. Ten balanced classes give about 1/10.

    Args:
        labels: ``(N,)`` the labels of the whole data set.

    Raises:
        ValueError: fewer than two labels.

    Example:
        >>> round(expected_same_class_fraction(torch.arange(1000) % 10), 4)  # (100 - 1) / (1000 - 1)
        0.0991
    """
    labels = _labels(labels)
    n = labels.shape[0]
    if n < 2:
        raise ValueError(f"labels has {n} entry; the data set needs at least two images")
    counts = torch.bincount(labels - labels.min()).double()  # (C,) n_c
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


# ------------------------------------------------------------------- what a positive pair's views share
def object_masks(data) -> torch.Tensor:
    """The object's mask of each image of the built-in shapes (:func:`crl_helpers.shapes.make_shapes`).

    Re-renders each object from its label and stored factors (position, scale, rotation) with
    :func:`crl_helpers.shapes.render_masks`, as the images were drawn: 1 inside the object, 0 on the
    background, fractions on the edge.

    Args:
        data: an ``ImageData`` from ``make_shapes`` / ``load_dataset("shapes", ...)``.

    Returns:
        float32 ``(N, H, W)`` in [0, 1].

    Raises:
        ValueError: ``data`` lacks the shapes' factors.

    Example:
        >>> from crl_helpers.shapes import make_shapes
        >>> masks = object_masks(make_shapes(3, seed=0))
        >>> masks.shape, bool(masks.max() == 1 and masks.min() == 0)
        (torch.Size([3, 32, 32]), True)
    """
    from crl_helpers.shapes import render_masks

    return render_masks(data.y, getattr(data, "factors", None) or {}, data.x.shape[-1])  # (N, H, W)


def crop_object_fraction(masks: torch.Tensor, top, left, height, width) -> torch.Tensor:
    """The fraction of each object's mask that lies inside its crop box (the "object kept" meter).

    A pixel counts as inside when its centre is: row ``r`` with ``top <= r + 0.5 < top + height``,
    likewise for columns. A mask of ones (no object known) gives the crop's area fraction. Flips,
    colour changes and perspective (which shrinks the whole crop into the frame) keep every kept pixel.

    Args:
        masks: ``(B, H, W)`` non-negative object masks, at least one positive pixel each.
        top, left, height, width: ``(B,)`` crop boxes in pixels (``ViewParams`` fields).

    Returns:
        float32 ``(B,)`` in [0, 1].

    Raises:
        ValueError: ``masks`` is not ``(B, H, W)``, has an empty or negative mask, or boxes of another length.

    Example:
        >>> crop_object_fraction(torch.ones(1, 4, 4), *torch.tensor([[0.0], [0.0], [2.0], [4.0]]))
        tensor([0.5000])
    """
    masks = torch.as_tensor(masks, dtype=torch.float32)
    if masks.dim() != 3:
        raise ValueError(f"masks has shape {tuple(masks.shape)}; pass (B, H, W), one mask per image")
    if (masks < 0).any() or (masks.flatten(1).sum(dim=1) <= 0).any():
        raise ValueError("masks must be non-negative with at least one positive pixel per image; "
                         "use torch.ones(B, H, W) where no object mask is known")
    box = [torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in (top, left, height, width)]
    if any(len(v) != masks.shape[0] for v in box):
        raise ValueError(f"the crop boxes have lengths {[len(v) for v in box]} but there are {masks.shape[0]} masks")
    top, left, height, width = box
    rows = torch.arange(masks.shape[1], dtype=torch.float32) + 0.5  # (H,) pixel centres
    cols = torch.arange(masks.shape[2], dtype=torch.float32) + 0.5  # (W,)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < (top + height)[:, None])  # (B, H)
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < (left + width)[:, None])  # (B, W)
    inside = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return (masks * inside).flatten(1).sum(dim=1) / masks.flatten(1).sum(dim=1)  # (B,)


def colour_histogram(images: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Per-channel colour histograms, the network-free representation of Chen et al.'s (2020) colour shortcut.

    Args:
        images: ``(B, 3, H, W)`` float in [0, 1] (values outside are clamped) or uint8.
        bins: equal-width intensity bins per channel.

    Returns:
        float32 ``(B, 3 * bins)``: the fraction of each channel's pixels in each bin (channel-major).

    Example:
        >>> colour_histogram(torch.zeros(1, 3, 2, 2), bins=2)
        tensor([[1., 0., 1., 0., 1., 0.]])
    """
    if images.dim() != 4:
        raise ValueError(f"images has shape {tuple(images.shape)}; pass a batch (B, C, H, W)")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins={bins!r} must be a positive int, e.g. 8")
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    b, c = images.shape[:2]
    index = (images.clamp(0, 1) * bins).long().clamp(max=bins - 1)  # (B, C, H, W) bin of each pixel
    index = index + bins * torch.arange(c).view(1, c, 1, 1)  # channel c uses bins c*bins .. c*bins + bins - 1
    counts = torch.zeros(b, c * bins).scatter_add_(1, index.flatten(1), torch.ones(b, index[0].numel()))
    return counts / index[0, 0].numel()  # (B, C * bins)


def histogram_shortcut(views: torch.Tensor, sources: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Whether each view's nearest source image by colour histogram is its own source (the "shortcut" meter).

    Each view is matched to the source image whose :func:`colour_histogram` is nearest in L1 distance
    (ties to the lower index), among all ``K`` sources. A high match rate means colour alone
    solves instance discrimination for this batch: the shortcut that colour jitter removes.

    Args:
        views: ``(K, V, 3, S, S)``: ``V`` views of each of ``K`` images, in [0, 1].
        sources: ``(K, 3, H, W)``: the images themselves, uint8 or in [0, 1].
        bins: histogram bins per channel.

    Returns:
        bool ``(K, V)``: True where view ``(i, j)`` is matched to image ``i``. Chance is about ``1 / K``.

    Example:
        >>> x = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])  # a black and a white image
        >>> histogram_shortcut(x[:, None].expand(2, 3, 3, 4, 4), x).tolist()
        [[True, True, True], [True, True, True]]
    """
    if views.dim() != 5 or sources.dim() != 4 or views.shape[0] != sources.shape[0]:
        raise ValueError(f"views has shape {tuple(views.shape)} and sources {tuple(sources.shape)}; "
                         f"pass views (K, V, 3, S, S) of the K sources (K, 3, H, W)")
    k, v = views.shape[:2]
    h_views = colour_histogram(views.flatten(0, 1), bins)  # (K * V, 3 * bins)
    h_sources = colour_histogram(sources, bins)  # (K, 3 * bins)
    distance = torch.cdist(h_views.double(), h_sources.double(), p=1)  # (K * V, K)
    nearest = distance.argmin(dim=1).view(k, v)  # (K, V); argmin returns the first of equal minima
    return nearest == torch.arange(k)[:, None]

