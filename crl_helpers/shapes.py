"""The built-in dataset: procedural shapes whose label is semantic and whose nuisances are not.

Every image shows one object on a background. The label is the object's *shape*
(10 classes); everything else is a nuisance factor drawn at random per image:
the object's colour, the background's colour, position, scale, rotation, a
striped texture on the background and pixel noise. A good representation keeps
the shape and forgets the rest; the augmentations of SimCLR (crops, colour
distortion) are exactly what teaches an encoder to do that. Without colour
augmentation an encoder can solve instance discrimination from colour alone (the
"colour shortcut" of Chen et al. 2020, section 3), which a later notebook shows.

Images are generated deterministically from a seed, in memory, no files: the
same ``(n, seed, image_size)`` always gives the same tensors.

Example:
    >>> data = make_shapes(8, seed=0)
    >>> data.x.shape, data.x.dtype, data.y.shape
    (torch.Size([8, 3, 32, 32]), torch.uint8, torch.Size([8]))
    >>> sorted(data.factors)[:3]
    ['background_hue', 'object_hue', 'rotation']
"""
from __future__ import annotations

import math

import torch

from crl_helpers.image_data import ImageData

SHAPE_NAMES = (
    "disk", "ring", "square", "triangle", "plus", "star", "crescent", "heart", "arrow", "bowtie",
)

# Supersampling factor for anti-aliased edges: render at 2x and average-pool.
_SUPERSAMPLE = 2


def _inside(shape: int, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Whether canonical coordinates ``(u, w)`` (object radius ~1) lie inside shape ``shape``.

    u, w: (B, H, W) float. Returns a bool mask (B, H, W).
    """
    name = SHAPE_NAMES[shape]
    if name in ("disk", "ring", "star", "crescent"):
        r = torch.sqrt(u * u + w * w)
    if name == "disk":
        return r < 0.95
    if name == "ring":
        return (r < 1.0) & (r > 0.55)
    if name == "square":
        return torch.maximum(u.abs(), w.abs()) < 0.78
    if name == "triangle":  # three half-planes, outward normals at -90, 30, 150 degrees
        inside = torch.ones_like(u, dtype=torch.bool)
        for k in range(3):
            a = math.radians(-90 + 120 * k)
            inside &= (u * math.cos(a) + w * math.sin(a)) < 0.55
        return inside
    if name == "plus":
        return ((u.abs() < 0.3) & (w.abs() < 0.95)) | ((w.abs() < 0.3) & (u.abs() < 0.95))
    if name == "star":  # radius follows a triangular wave in the angle: 5 points
        wave = 1 - ((torch.atan2(w, u) * 5 / (2 * math.pi)) % 1.0 * 2 - 1).abs()
        return r < 0.38 + 0.62 * wave
    if name == "crescent":
        return (r < 0.95) & (((u - 0.45) ** 2 + w ** 2).sqrt() > 0.75)
    if name == "heart":  # the classic implicit heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 < 0
        hx, hy = 1.25 * u, -1.25 * w + 0.25
        return (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3 < 0
    if name == "arrow":
        shaft = (w.abs() < 0.2) & (u > -0.95) & (u < 0.1)
        head = (u >= 0.0) & (u < 0.95) & (w.abs() < (0.95 - u) * 0.85)
        return shaft | head
    return (w.abs() < u.abs() * 0.9) & (u.abs() < 0.9)  # bowtie


def _supersampled_grid(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (S, S) row and column coordinates of the pixel centres in [-1, 1], S = ``image_size * _SUPERSAMPLE``."""
    size = image_size * _SUPERSAMPLE
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    return torch.meshgrid(coords, coords, indexing="ij")  # (S, S), (S, S)


#: The factors of :func:`make_shapes` that place an object in its image.
PLACEMENT_FACTORS = ("x_position", "y_position", "scale", "rotation")


def render_masks(labels: torch.Tensor, factors: dict, image_size: int = 32) -> torch.Tensor:
    """The object's mask of each image, drawn from its shape and placement as :func:`make_shapes` draws it.

    Anti-aliased as the images are (rendered at twice the side, then averaged): 1 inside the object,
    0 on the background, fractions on the edge. :func:`make_shapes` paints its objects with these masks,
    and :func:`crl_helpers.pairs.object_masks` recovers them from a data set's factors.

    Args:
        labels: ``(N,)`` int64 shape indices into :data:`SHAPE_NAMES`.
        factors: ``(N,)`` float tensors for each of :data:`PLACEMENT_FACTORS` (more keys are ignored),
            as in ``make_shapes(...).factors``.
        image_size: side of the images in pixels.

    Returns:
        float32 ``(N, image_size, image_size)`` in [0, 1].

    Raises:
        ValueError: ``factors`` lacks a placement factor.

    Example:
        >>> data = make_shapes(3, seed=0)
        >>> masks = render_masks(data.y, data.factors, image_size=32)
        >>> masks.shape, bool(masks.max() == 1 and masks.min() == 0)
        (torch.Size([3, 32, 32]), True)
    """
    missing = set(PLACEMENT_FACTORS) - set(factors or {})
    if missing:
        raise ValueError(f"the factors lack {sorted(missing)}; pass the built-in shapes (make_shapes or "
                         f"load_dataset('shapes', ...)), whose objects can be re-rendered")
    gy, gx = _supersampled_grid(image_size)  # (S, S)
    dx = gx[None] - factors["x_position"][:, None, None]  # (N, S, S)
    dy = gy[None] - factors["y_position"][:, None, None]
    rotation = factors["rotation"]
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    s = factors["scale"][:, None, None]
    u, w = (cos * dx + sin * dy) / s, (-sin * dx + cos * dy) / s  # the object's own coordinates, radius ~1
    mask = torch.zeros(u.shape)  # (N, S, S)
    for shape in range(len(SHAPE_NAMES)):  # each image is tested against its own shape only
        idx = (labels == shape).nonzero().squeeze(1)
        mask[idx] = _inside(shape, u[idx], w[idx]).float()
    return torch.nn.functional.avg_pool2d(mask[:, None], _SUPERSAMPLE)[:, 0]  # (N, H, W) anti-aliased


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] to RGB in [0, 1]; h, s, v: (B,) -> (B, 3)."""
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h[:, None] * 6) % 6  # (B, 3)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(kk, 4 - kk), 0, 1)


def make_shapes(n: int, seed: int = 0, image_size: int = 32, noise: float = 0.03, texture: float = 0.08,
                max_rotation: float = 30.0, both_polarities: bool = True,
                scale_range: tuple[float, float] = (0.6, 0.85)) -> ImageData:
    """Generate ``n`` shape images deterministically from ``seed``.

    Args:
        n: number of images (classes are balanced up to one image: label ``i % 10``
            before a seeded shuffle).
        seed: the train and test splits use different seeds (see ``load_dataset``).
        image_size: side in pixels (H = W).
        noise: standard deviation of the per-pixel Gaussian noise, in [0, 1] units.
        texture: largest relative amplitude of the background stripes.
        max_rotation: objects turn by a uniform angle in [-max_rotation, max_rotation] degrees.
            30 by default: SimCLR's augmentations do not rotate, so full turns (180) must be
            learned from data alone, which a 2-minute CPU run cannot do (kNN 0.52 against
            0.67 at 30 degrees, same budget).
        both_polarities: objects are brighter than the background in half the images and
            darker in the other half, so no single edge sign identifies a shape.
        scale_range: object radius as a fraction of the half-side.

    The defaults are the difficulty the course's CPU job is tuned for; raise ``max_rotation``,
    ``noise`` or ``texture`` (or lower the scale) for a harder data set.

    Returns:
        ImageData with ``x`` uint8 (n, 3, image_size, image_size), ``y`` int64 (n,),
        and ``factors``: per-image nuisance factors ``object_hue``, ``background_hue``,
        ``x_position``, ``y_position``, ``scale``, ``rotation``, ``stripe_angle``
        (each a float tensor (n,)), for colouring plots by a nuisance.

    Raises:
        ValueError: n < 1, image_size < 8, or noise outside [0, 0.5].

    Example:
        >>> a, b = make_shapes(4, seed=1), make_shapes(4, seed=1)
        >>> bool((a.x == b.x).all())
        True
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer number of images")
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small to draw a shape; use 8 or more (32 is the default)")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise={noise} must be in [0, 0.5]")
    if not 0 <= texture <= 1:
        raise ValueError(f"texture={texture} must be in [0, 1]")
    if not 0 <= max_rotation <= 180:
        raise ValueError(f"max_rotation={max_rotation} must be in [0, 180] degrees")
    if not 0 < scale_range[0] <= scale_range[1] <= 1:
        raise ValueError(f"scale_range={scale_range} must satisfy 0 < low <= high <= 1")
    g = torch.Generator().manual_seed(int(seed))

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    y = (torch.arange(n) % len(SHAPE_NAMES))[torch.randperm(n, generator=g)]
    object_hue, background_hue = uniform(0, 1), uniform(0, 1)
    object_sat, background_sat = uniform(0.4, 1.0), uniform(0.2, 0.9)
    # Object and background differ in brightness by at least 0.3, in a random direction,
    # so the shape is always visible whatever the colours.
    bright_object = torch.rand(n, generator=g) < (0.5 if both_polarities else 1.0)
    v_hi, v_lo = uniform(0.75, 1.0), uniform(0.1, 0.45)
    object_val = torch.where(bright_object, v_hi, v_lo)
    background_val = torch.where(bright_object, v_lo, v_hi)
    scale = uniform(*scale_range)  # object radius as a fraction of the half-side
    x_pos, y_pos = uniform(-1, 1) * (1 - scale) * 0.8, uniform(-1, 1) * (1 - scale) * 0.8
    rotation = uniform(-1, 1) * math.radians(max_rotation)
    stripe_angle, stripe_freq = uniform(0, math.pi), uniform(2.0, 6.0)
    stripe_amp = uniform(0.0, texture)
    stripe_phase = uniform(0, 2 * math.pi)

    object_rgb = _hsv_to_rgb(object_hue, object_sat, object_val)  # (n, 3)
    background_rgb = _hsv_to_rgb(background_hue, background_sat, background_val)  # (n, 3)

    placement = {"x_position": x_pos, "y_position": y_pos, "scale": scale, "rotation": rotation}
    gy, gx = _supersampled_grid(image_size)  # (S, S) each
    x_chunks = []
    for start in range(0, n, 512):  # chunks keep memory bounded: 512 x 64 x 64 floats per map
        sl = slice(start, min(start + 512, n))
        mask = render_masks(y[sl], {k: v[sl] for k, v in placement.items()}, image_size)[:, None]  # (b, 1, H, W)
        along = gx[None] * torch.cos(stripe_angle[sl])[:, None, None] + gy[None] * torch.sin(stripe_angle[sl])[:, None, None]
        stripes = torch.sin(along * stripe_freq[sl, None, None] * math.pi + stripe_phase[sl, None, None])
        stripes = torch.nn.functional.avg_pool2d(stripes[:, None], _SUPERSAMPLE)  # (b, 1, H, W)
        background = background_rgb[sl, :, None, None] * (1 + stripe_amp[sl, None, None, None] * stripes)
        img = mask * object_rgb[sl, :, None, None] + (1 - mask) * background  # (b, 3, H, W)
        img = img + noise * torch.randn(img.shape, generator=g)
        x_chunks.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
    factors = {
        "object_hue": object_hue, "background_hue": background_hue,
        "x_position": x_pos, "y_position": y_pos, "scale": scale, "rotation": rotation,
        "stripe_angle": stripe_angle,
    }
    return ImageData(x=torch.cat(x_chunks), y=y, class_names=SHAPE_NAMES, factors=factors)


def hue_bins(hue: torch.Tensor, n_bins: int = 10) -> torch.Tensor:
    """Bin of each hue on the colour wheel: ``hue`` (N,) in [0, 1] -> int64 (N,) in ``0 .. n_bins - 1``.

    Bin ``b`` holds the hues in ``[b / n_bins, (b + 1) / n_bins)``; the wheel is a circle, so hue 1
    is hue 0 (bin 0). This turns a continuous nuisance factor of :func:`make_shapes`
    (``object_hue``, ``background_hue``) into classes that a kNN or a linear probe can be asked
    for: how much colour does a representation keep? With ``n_bins`` equal bins chance is ``1 / n_bins``.

    Raises:
        TypeError: ``n_bins`` is not an int.
        ValueError: ``n_bins`` < 1, or a hue outside [0, 1] (NaN included).

    Example:
        >>> hue_bins(torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0]))
        tensor([0, 0, 5, 9, 0])
        >>> data = make_shapes(6, seed=0)
        >>> [round(h, 2) for h in data.factors["object_hue"].tolist()]
        [0.63, 0.49, 0.9, 0.46, 0.63, 0.35]
        >>> hue_bins(data.factors["object_hue"]).tolist()
        [6, 4, 8, 4, 6, 3]
    """
    from crl_helpers.validate import check_int

    n_bins = check_int("n_bins", n_bins, minimum=1, hint="the course uses 10 bins of a tenth of the wheel each")
    hue = torch.as_tensor(hue)
    if not hue.is_floating_point():
        raise TypeError(f"hue has dtype {hue.dtype}; pass the float hues in [0, 1], e.g. data.factors['object_hue']")
    outside = ~((hue >= 0) & (hue <= 1))  # NaN compares false, so it counts as outside
    if outside.any():
        raise ValueError(f"hue holds {int(outside.sum())} value(s) outside [0, 1], e.g. {hue[outside][0].item()!r}; "
                         f"hues are fractions of the colour wheel (factors 'object_hue' or 'background_hue')")
    # In float64 a float32 hue times n_bins is exact: a hue just below a bin edge stays below it.
    return torch.floor(hue.double() * n_bins).long() % n_bins  # (N,); hue 1 wraps to bin 0
