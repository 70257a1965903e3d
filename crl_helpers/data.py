"""Datasets as in-memory uint8 tensors: the built-in shapes, CIFAR-10, STL-10, a folder of images.

Every dataset becomes an :class:`ImageData`: ``x`` uint8 (N, 3, H, W), ``y`` int64 (N,).
Holding pixels as one uint8 tensor (CIFAR-10's train split is 150 MB) lets the
same batched augmentation run on the CPU or, after ``.to("cuda")``, on the GPU,
with no DataLoader workers in between.

Example:
    >>> train = load_dataset("shapes", "train", n=20)
    >>> train.x.shape, len(train.class_names)
    (torch.Size([20, 3, 32, 32]), 10)
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATASETS = ("shapes", "cifar10", "stl10", "folder")
SPLITS = ("train", "test")
# Seeds of the built-in dataset's splits: far apart so no image is shared.
_SHAPES_SEEDS = {"train": 0, "test": 1_000_003}
_SHAPES_SIZES = {"train": 5000, "test": 2000}
CIFAR10_NPZ = "cifar10_jpeg.npz"
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetUnavailable(RuntimeError):
    """A dataset is not on disk and cannot be downloaded; the message says how to proceed."""


@dataclass
class ImageData:
    """Images and labels held in memory.

    Attributes:
        x: uint8 (N, 3, H, W) pixels.
        y: int64 (N,) labels in ``range(len(class_names))``.
        class_names: one name per class.
        factors: optional per-image nuisance factors, name -> float tensor (N,).
    """

    x: torch.Tensor
    y: torch.Tensor
    class_names: tuple[str, ...]
    factors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4 or self.x.shape[1] != 3:
            raise ValueError(f"x must be uint8 (N, 3, H, W), got {tuple(self.x.shape)} {self.x.dtype}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def image_size(self) -> int:
        return self.x.shape[-1]

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the pixels in [0, 1], for normalisation.

        Example:
            >>> mean, std = load_dataset("shapes", "train", n=50).channel_stats()
            >>> len(mean), all(0 < s < 1 for s in std)
            (3, True)
        """
        x = self.x.float().div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3))
        return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)

    def subset(self, index: torch.Tensor | slice) -> "ImageData":
        """The images at ``index`` (a slice, index tensor or bool mask), factors included."""
        return ImageData(self.x[index], self.y[index], self.class_names,
                         {k: v[index] for k, v in self.factors.items()})


def load_dataset(name: str, split: str = "train", root: str | os.PathLike = "data", n: int | None = None,
                 download: bool = True, seed: int = 0, image_size: int | None = None) -> ImageData:
    """Load one split of a dataset into memory.

    Args:
        name: ``"shapes"`` (built-in, no files), ``"cifar10"``, ``"stl10"``, or ``"folder"``
            (``root`` is then a folder of class sub-folders, or one with ``train/`` and ``test/``).
        split: ``"train"`` or ``"test"``. The two never share an image; nothing is tuned on test.
        root: where datasets are downloaded and cached (``data/``). For CIFAR-10 a local
            ``cifar10_jpeg.npz`` in ``root`` is used when present (see :func:`load_cifar10_npz`).
        n: keep only the first ``n`` images (after a seeded shuffle for real datasets, so classes mix).
        download: allow torchvision to download into ``root``.
        seed: offsets the built-in dataset's seeds; shuffles the subset of real datasets.
        image_size: resize (real datasets and folders) or render (shapes) at this size.

    Raises:
        ValueError: unknown name or split, or bad ``n``.
        DatasetUnavailable: the files are missing and cannot be downloaded (offline).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is unknown; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose 'train' or 'test'")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n={n!r} must be a positive integer or None (all images)")
    if name == "shapes":
        from crl_helpers.shapes import make_shapes

        return make_shapes(n or _SHAPES_SIZES[split], seed=_SHAPES_SEEDS[split] + seed, image_size=image_size or 32)
    root = Path(root)
    if name == "cifar10":
        data = _load_cifar10(root, split, download)
    elif name == "stl10":
        data = _load_stl10(root, split, download)
    else:
        data = load_image_folder(root, split, seed=seed, image_size=image_size or 32)
    if image_size is not None and image_size != data.image_size and name != "folder":
        data.x = _resize(data.x, image_size)
    if n is not None and n < len(data):
        data = data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n])
    return data


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(x, [size, size], antialias=True)


def _offline_error(name: str, root: Path, err: Exception) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"{name} is not in {root}/ and could not be downloaded ({type(err).__name__}: {err}). "
        f"Run once on a machine that is online (it downloads into {root}/), copy the files there, "
        f"or use the built-in dataset: --dataset shapes"
    )


def _load_cifar10(root: Path, split: str, download: bool) -> ImageData:
    local = root / CIFAR10_NPZ
    if local.exists():
        return load_cifar10_npz(local, split)
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=(split == "train"), download=download)
    except Exception as err:  # URLError, RuntimeError("Dataset not found") ...
        raise _offline_error("CIFAR-10", root, err) from err
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return ImageData(x, torch.tensor(ds.targets, dtype=torch.int64), tuple(ds.classes))


def load_cifar10_npz(path: str | os.PathLike, split: str = "train") -> ImageData:
    """Load CIFAR-10 from a local ``.npz`` of JPEG bytes (the offline copy's format).

    The file holds ``{split}_jpeg`` (all JPEG files concatenated, uint8), ``{split}_offsets``
    (N+1,) int64, ``y_{split}`` (N,) int64 and ``class_names``. It is read with
    ``allow_pickle=False``, so it cannot execute code. Decoding 50,000 images takes ~8 s.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file lacks the arrays of that split.
    """
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass the path of cifar10_jpeg.npz")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose 'train' or 'test'")
    with np.load(path, allow_pickle=False) as z:
        wanted = (f"{split}_jpeg", f"{split}_offsets", f"y_{split}", "class_names")
        missing = [name for name in wanted if name not in z.files]
        if missing:
            raise ValueError(f"{path} is missing {', '.join(missing)}; a CIFAR-10 JPEG archive holds "
                             f"{', '.join(wanted)}")
        try:
            buf, off, y = z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"y_{split}"]
            names = tuple(str(c) for c in z["class_names"])
        except ValueError as err:  # numpy refuses object arrays under allow_pickle=False
            if "object arrays" not in str(err).lower():
                raise
            raise ValueError(f"{path} holds an array of Python objects, refused because loading it could run "
                             f"code (allow_pickle=False); a CIFAR-10 JPEG archive holds only numbers and "
                             f"strings: {', '.join(wanted)}") from err
    x = np.stack([np.asarray(Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())).convert("RGB"))
                  for i in range(len(off) - 1)])  # (N, 32, 32, 3)
    return ImageData(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long(), names)


def _load_stl10(root: Path, split: str, download: bool) -> ImageData:
    from torchvision.datasets import STL10

    try:
        ds = STL10(str(root), split=split, download=download)
    except Exception as err:
        raise _offline_error("STL-10", root, err) from err
    return ImageData(torch.from_numpy(ds.data), torch.from_numpy(ds.labels).long(), tuple(ds.classes))  # (N, 3, 96, 96)


def load_image_folder(root: str | os.PathLike, split: str = "train", seed: int = 0, image_size: int = 32,
                      test_fraction: float = 0.2) -> ImageData:
    """Load a folder of images in class sub-folders (``root/<class>/<image>``).

    If ``root`` has ``train/`` and ``test/`` sub-folders they are the splits; otherwise each
    class is split deterministically (by ``seed``) with ``test_fraction`` of its images in test.
    Images are converted to RGB and resized to ``image_size`` squared.

    Raises:
        DatasetUnavailable: the folder does not exist or holds no class sub-folders with images.
    """
    from PIL import Image

    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        root, split_here = root / split, False
    else:
        split_here = True
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if split_here:
            order = torch.randperm(len(found), generator=torch.Generator().manual_seed(seed + label)).tolist()
            n_test = int(round(len(found) * test_fraction))
            keep = order[:n_test] if split == "test" else order[n_test:]
            found = [found[i] for i in sorted(keep)]
        files += found
        labels += [label] * len(found)
    if not files:
        raise DatasetUnavailable(
            f"{root} holds no images in class sub-folders; expected {root}/<class>/<image>.png "
            f"(or train/ and test/ folders of those)")
    x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((image_size, image_size), Image.BILINEAR))
                  for f in files])  # (N, S, S, 3)
    return ImageData(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels), tuple(classes))
