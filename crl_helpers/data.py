"""Datasets as in-memory uint8 tensors: the built-in shapes, CIFAR-10, STL-10, a folder of images.

Every dataset becomes an :class:`~crl_helpers.image_data.ImageData`: ``x`` uint8 (N, 3, H, W),
``y`` int64 (N,).
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
import itertools
import math
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from crl_helpers.files import NotARegularFile, open_regular_file
from crl_helpers.image_data import DatasetUnavailable, ImageData
from crl_helpers.shapes import make_shapes

DATASETS = ("shapes", "cifar10", "stl10", "folder")
SPLITS = ("train", "test")
# Seeds of the built-in dataset's splits: far apart so no image is shared.
_SHAPES_SEEDS = {"train": 0, "test": 1_000_003}
_SHAPES_SIZES = {"train": 5000, "test": 2000}
CIFAR10_NPZ = "cifar10_jpeg.npz"
# What to do with a damaged CIFAR-10 archive: load_dataset("cifar10") downloads when it is absent.
_REFETCH = ("delete it and copy it again (without it, TrainConfig.dataset='cifar10' downloads CIFAR-10 with torchvision "
            "into {parent}/)")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Bounds on what a file may unpack to, checked from headers before anything is decoded or loaded:
# a 7,000 x 7,000 photo (decoding alone needs ~150 MB); an archive image of 1,024 pixels a side (CIFAR's
# are 32); 10 million images; 4 GiB of decoded pixels or of archive arrays.
MAX_IMAGE_PIXELS = 50_000_000
MAX_ARCHIVE_SIDE = 1024
MAX_ARCHIVE_IMAGES = 10_000_000
MAX_DECODED_BYTES = 4 * 2**30


def load_dataset(name: str, split: str = "train", root: str | os.PathLike = "data", n: int | None = None,
                 download: bool = True, seed: int = 0, image_size: int | None = None) -> ImageData:
    """Load one split of a dataset into memory.

    Args:
        name: ``"shapes"`` (built-in, no files), ``"cifar10"``, ``"stl10"``, or ``"folder"``
            (``root`` is then a folder of class sub-folders, or one with ``train/`` and ``test/``;
            see :func:`load_image_folder`: both splits number the classes of the training split).
        split: ``"train"`` or ``"test"``. The two never share an image; nothing is tuned on test.
        root: where datasets are downloaded and cached (``data/``). For CIFAR-10 a local
            ``cifar10_jpeg.npz`` in ``root`` is used when present (see :func:`load_cifar10_npz`).
        n: keep only the first ``n`` images (after a seeded shuffle for real datasets, so classes mix).
        download: allow torchvision to download into ``root``.
        seed: offsets the built-in dataset's seeds; shuffles the subset of real datasets.
        image_size: resize (real datasets and folders) or render (shapes) at this size.

    Raises:
        ValueError: unknown name or split, or bad ``n``; a damaged ``cifar10_jpeg.npz``; a folder
            whose ``test/`` has a class that ``train/`` lacks.
        DatasetUnavailable: the files are missing and cannot be downloaded (offline); a folder
            with no readable images in the split.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is unknown; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose 'train' or 'test'")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n={n!r} must be a positive integer or None (all images)")
    if name == "shapes":
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
        f"or use the built-in dataset: TrainConfig.dataset='shapes'"
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
        ValueError: ``path`` is not a regular file; the file is not a readable ``.npz`` (empty,
            truncated, garbage, a pickle); it lacks the arrays of that split, holds an array of
            Python objects, or arrays of the wrong kind, shape or range; an image does not decode.
            The message names the file and says what to do.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / CIFAR10_NPZ
        >>> _ = path.write_bytes(b"")
        >>> load_cifar10_npz(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../cifar10_jpeg.npz is not a readable CIFAR-10 archive (not a .npz (zip) archive: ...
    """
    from PIL import Image

    path = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose 'train' or 'test'")
    wanted = (f"{split}_jpeg", f"{split}_offsets", f"y_{split}", "class_names")
    try:
        f = open_regular_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; pass the path of cifar10_jpeg.npz") from None
    except OSError as err:  # NotARegularFile, a symlink loop, no permission
        raise _broken_archive(path, err) from None
    with f:
        if not zipfile.is_zipfile(f):
            # np.load would try the unpickler on it, and numpy's refusal advises loading it unsafely.
            raise _broken_archive(path, "not a .npz (zip) archive: empty, truncated or another format")
        f.seek(0)
        _check_npz_headers(path, f, wanted)
        f.seek(0)
        buf, off, y, names = _read_npz(path, f, wanted)
    _check_cifar_arrays(path, wanted, buf, off, y, names)
    x, first = [], None
    for i in range(len(off) - 1):
        try:
            with Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())) as image:
                size = image.size  # from the header: checked before a pixel is decoded
                if first is None:
                    first = size
                    _check_archive_image_size(path, wanted[0], size, len(off) - 1)
                if size != first:
                    raise _broken_archive(path, f"image {i} of {wanted[0]} is {size[0]}x{size[1]} pixels, image 0 is "
                                                f"{first[0]}x{first[1]}")
                x.append(np.asarray(image.convert("RGB")))  # (H, W, 3)
        except ValueError:
            raise
        except Exception as err:  # noqa: BLE001 - a decoder meets hostile bytes with any exception type
            raise ValueError(f"{path}: image {i} of {wanted[0]} does not decode ({_reason(err)}); the archive is "
                             f"damaged: {_REFETCH.format(parent=path.parent)}") from err
    x = np.stack(x) if x else np.zeros((0, 32, 32, 3), np.uint8)  # (N, 32, 32, 3)
    return ImageData(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long(),
                     tuple(str(c) for c in names))


def _broken_archive(path: Path, why: Exception | str) -> ValueError:
    reason = why if isinstance(why, str) else _reason(why)
    return ValueError(f"{path} is not a readable CIFAR-10 archive ({reason}); {_REFETCH.format(parent=path.parent)}")


def _check_archive_image_size(path: Path, member: str, size: tuple[int, int], n: int) -> None:
    """Refuse archive images too large to be CIFAR-like, or too many to decode into memory, from image 0's header."""
    width, height = size
    if max(width, height) > MAX_ARCHIVE_SIDE or n * width * height * 3 > MAX_DECODED_BYTES:
        raise _broken_archive(path, f"{n:,} images of {width}x{height} pixels in {member} would decode to "
                                    f"{n * width * height * 3 / 2**30:.1f} GiB; this format holds small images "
                                    f"(at most {MAX_ARCHIVE_SIDE} pixels a side, {MAX_DECODED_BYTES / 2**30:g} GiB "
                                    f"in all)")


def _check_npz_headers(path: Path, f, wanted: tuple[str, ...]) -> None:
    """Check each array's shape, dtype and size from its ``.npy`` header, before any array is loaded.

    A compressed member of a few MB can declare (and unpack to) gigabytes; the headers say how much
    memory loading takes, so an archive that declares more than a CIFAR-like one can hold is refused
    without unpacking it. Members that are missing or unreadable are left to :func:`_read_npz`'s messages.
    """
    shapes = {}
    try:
        with zipfile.ZipFile(f) as archive:
            for name in wanted:
                try:
                    info = archive.getinfo(f"{name}.npy")
                except KeyError:
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    continue  # refused with the pickle message when loaded (allow_pickle=False)
                n_bytes = math.prod(shape) * dtype.itemsize
                if n_bytes > MAX_DECODED_BYTES or n_bytes > info.file_size:
                    more = "" if n_bytes <= info.file_size else ", more than the archive holds"
                    raise _broken_archive(path, f"{name} declares shape {shape} of {dtype} ({n_bytes / 2**30:.2f} GiB)"
                                                f"{more}"
                                                f"; a CIFAR-10 archive holds at most {MAX_ARCHIVE_IMAGES:,} small "
                                                f"images")
                shapes[name] = shape
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise _broken_archive(path, err) from err
    jpeg, offsets, labels, _ = wanted
    n = shapes[offsets][0] - 1 if len(shapes.get(offsets, ())) == 1 else None
    if n is not None and n > MAX_ARCHIVE_IMAGES:
        raise _broken_archive(path, f"{offsets} declares {n:,} images, more than {MAX_ARCHIVE_IMAGES:,}")
    if n is not None and labels in shapes and shapes[labels] != (n,):
        raise _broken_archive(path, f"{labels} must be a 1-D integer array of one label per image ({n}); "
                                    f"its header declares shape {shapes[labels]}")


def _read_npz(path: Path, f, wanted: tuple[str, ...]) -> list:
    """The arrays ``wanted`` of the open ``.npz`` ``f``, read with ``allow_pickle=False``."""
    try:
        with np.load(f, allow_pickle=False) as z:
            missing = [name for name in wanted if name not in z.files]
            if not missing:
                return [z[name] for name in wanted]
    except ValueError as err:
        if "object arrays" not in str(err).lower():  # a damaged .npy header or data
            raise _broken_archive(path, err) from err
        raise ValueError(f"{path} holds an array of Python objects, refused because loading it could run "
                         f"code (allow_pickle=False); a CIFAR-10 JPEG archive holds only numbers and "
                         f"strings: {', '.join(wanted)}") from err
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, MemoryError) as err:
        # A bad CRC, a member cut short, a header that declares more bytes than there are memory.
        raise _broken_archive(path, err) from err
    raise ValueError(f"{path} is missing {', '.join(missing)}; a CIFAR-10 JPEG archive holds {', '.join(wanted)}")


def _check_cifar_arrays(path: Path, wanted: tuple[str, ...], buf, off, y, names) -> None:
    """ValueError naming the first array of ``load_cifar10_npz``'s archive that is not what the format says."""
    jpeg, offsets, labels, _ = wanted

    def is_array(a, kinds: str) -> bool:
        return isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in kinds

    problem = None
    if not is_array(buf, "u") or buf.dtype != np.uint8:
        problem = f"{jpeg} must be a 1-D uint8 array of JPEG bytes"
    elif not is_array(off, "iu") or len(off) < 1:
        problem = f"{offsets} must be a 1-D integer array of N+1 byte offsets"
    elif off[0] < 0 or off[-1] > len(buf) or (np.diff(off.astype(np.int64)) <= 0).any():
        problem = f"{offsets} must rise, one step per image, from 0 or more to at most {len(buf)} (the length of {jpeg})"
    elif not is_array(names, "US") or len(names) == 0:
        problem = "class_names must be a 1-D array of strings"
    elif not is_array(y, "iu") or len(y) != len(off) - 1:
        problem = f"{labels} must be a 1-D integer array of one label per image ({len(off) - 1})"
    elif len(y) and (y.min() < 0 or y.max() >= len(names)):
        problem = f"{labels} must lie in [0, {len(names)}) (one per class name)"
    if problem:
        raise _broken_archive(path, problem)


def _load_stl10(root: Path, split: str, download: bool) -> ImageData:
    from torchvision.datasets import STL10

    try:
        ds = STL10(str(root), split=split, download=download)
    except Exception as err:
        raise _offline_error("STL-10", root, err) from err
    return ImageData(torch.from_numpy(ds.data), torch.from_numpy(ds.labels).long(), tuple(ds.classes))  # (N, 3, 96, 96)


def load_image_folder(root: str | os.PathLike, split: str = "train", seed: int = 0, image_size: int = 32,
                      test_fraction: float = 0.2) -> ImageData:
    """Load a folder of images in class sub-folders, resized to ``image_size`` squared, in RGB.

    Two layouts:

    - ``root/<class>/<image>``: each class is split deterministically (by ``seed``), with
      ``round(test_fraction * its images)`` of them in test;
    - ``root/train/<class>/<image>`` and ``root/test/<class>/<image>``: the folders are the splits.

    Class indices come from the training split's classes, sorted by name, in both splits: a
    ``test/`` folder that lacks a class keeps every other label, and a test class that training
    lacks is an error (its images could have no label). A class's images may sit in sub-folders of its
    folder (``dog/2019/a.png``) and be in any format PIL reads (``.ppm``, ``.tga``, ...); a file whose
    suffix is no image format's is ignored with a warning that counts them. 16-bit and floating-point
    images are scaled to 8 bits, not clipped. Names starting with ``.`` (``.DS_Store``,
    macOS's ``._name.png``, ``.ipynb_checkpoints/``) are skipped silently. A file with an image
    suffix that cannot be read (corrupt or truncated, a broken symlink or a loop, a directory
    named ``x.png``, a FIFO) is skipped with a warning that counts them and names the first:
    one bad file in thousands should not stop a run, and the warning says which to fix.

    Raises:
        ValueError: ``split`` or ``test_fraction`` out of range; a class in ``test/`` that ``train/`` lacks.
        DatasetUnavailable: no class sub-folders with images; the split came out empty (too few
            images per class for ``test_fraction``); none of the split's images is readable.

    Warns:
        UserWarning: ``skipped 2 unreadable files of the train split, first: <path> (<reason>)``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     for i in range(5):
        ...         Image.new("RGB", (40, 30), "red" if name == "cat" else "blue").save(root / name / f"{i}.png")
        >>> test = load_image_folder(root, "test", image_size=16)
        >>> test.x.shape, test.y.tolist(), test.class_names
        (torch.Size([2, 3, 16, 16]), [0, 1], ('cat', 'dog'))
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose 'train' or 'test'")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} must be in (0, 1): the share of each class held out for test")
    root = Path(root)
    split_here = not ((root / "train").is_dir() and (root / "test").is_dir())
    folder = root if split_here else root / split
    classes = _class_folders(root if split_here else root / "train")
    if not split_here and split == "test":
        unknown = [name for name in _class_folders(folder) if name not in classes]
        if unknown:
            raise ValueError(
                f"{folder} has class folder{'s' * (len(unknown) > 1)} {', '.join(unknown)} that {root}/train lacks, "
                f"so {'their' if len(unknown) > 1 else 'its'} images have no training label; add "
                f"{root}/train/{unknown[0]}/ with training images, or move {folder}/{unknown[0]}/ out of {folder}")
    ignored: list[Path] = []
    per_class = [_image_paths(folder / name, ignored) for name in classes]
    if not any(per_class):
        raise DatasetUnavailable(
            f"{folder} holds no images in class sub-folders; expected {folder}/<class>/<image>.png "
            f"(or train/ and test/ folders of those)")
    if split_here:
        all_per_class = per_class
        per_class = [_split_class(paths, split, seed + label, test_fraction) for label, paths in enumerate(per_class)]
        if not any(per_class):
            most = max(len(paths) for paths in all_per_class)
            need = next(k for k in itertools.count(2) if 0 < round(k * test_fraction) < k)
            raise DatasetUnavailable(
                f"the {split} split of {root} is empty: test_fraction={test_fraction} of at most {most} "
                f"image{'s' * (most > 1)} per class rounds to {'none' if split == 'test' else 'all of them'}; put at "
                f"least {need} images in each class, or split them yourself into {root}/train/<class>/ and "
                f"{root}/test/<class>/")
    images, labels, unreadable = [], [], []
    for label, paths in enumerate(per_class):
        for path in paths:
            try:
                images.append(_read_image(path, image_size))  # (S, S, 3)
                labels.append(label)
            except Exception as err:  # noqa: BLE001 - a decoder meets hostile bytes with any exception type
                unreadable.append((path, _reason(err)))
    if not images:
        path, reason = unreadable[0]
        raise DatasetUnavailable(f"none of the {len(unreadable)} image files of the {split} split in {folder} "
                                 f"is readable, first: {path} ({reason}); replace them with images (PNG, JPEG, ...)")
    if ignored:
        n = len(ignored)
        rename = "they are images, rename them" if n > 1 else "it is an image, rename it"
        warnings.warn(f"ignored {n} file{'s' * (n > 1)} of the {split} split whose suffix is no image format's, "
                      f"first: {ignored[0]}; if {rename} (e.g. .png)",
                      stacklevel=2)
    if unreadable:
        path, reason = unreadable[0]
        n = len(unreadable)
        warnings.warn(f"skipped {n} unreadable file{'s' * (n > 1)} of the {split} split, first: {path} ({reason})",
                      stacklevel=2)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    return ImageData(x, torch.tensor(labels, dtype=torch.int64), tuple(classes))


def _class_folders(folder: Path) -> list[str]:
    """The names of ``folder``'s sub-folders, sorted, hidden ones (``.name``) left out."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())


def _image_suffixes() -> set[str]:
    """The suffixes of the image formats PIL can read here (``.ppm``, ``.tga``, ...), with the common ones."""
    from PIL import Image

    Image.init()
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return (readable - {".eps", ".ps", ".pdf", ".mpg", ".mpeg", ".h5", ".hdf", ".grib", ".bufr"}) | _IMAGE_SUFFIXES


def _image_paths(folder: Path, ignored: list[Path] | None = None) -> list[Path]:
    """The images under ``folder``, in sub-folders too (``dog/2019/a.png``), sorted; none for a missing folder.

    Hidden names (``.name``) are left out; other files whose suffix is no image format's are appended
    to ``ignored`` (when given), so the caller can say so. Entries are not checked here (a directory
    named ``x.png`` is listed): reading them reports what they are. Symlinked sub-folders are not
    followed (a loop would never end).
    """
    if not folder.is_dir():
        return []
    suffixes = _image_suffixes()
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files + [d for d in dirs if Path(d).suffix.lower() in suffixes]:
            if name.startswith("."):
                continue
            path = Path(parent) / name
            if path.suffix.lower() in suffixes:
                found.append(path)
            elif ignored is not None:
                ignored.append(path)
    return sorted(set(found))


def _split_class(paths: list[Path], split: str, seed: int, test_fraction: float) -> list[Path]:
    """The ``split`` part of one class's images: a seeded ``round(test_fraction * len(paths))`` in test."""
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = int(round(len(paths) * test_fraction))
    keep = order[:n_test] if split == "test" else order[n_test:]
    return [paths[i] for i in sorted(keep)]


def _read_image(path: Path, image_size: int) -> np.ndarray:
    """The image at ``path`` in RGB, resized to ``image_size`` squared: uint8 (S, S, 3).

    The size is read from the header and capped (:data:`MAX_IMAGE_PIXELS`) before decoding. 16-bit
    images are scaled to 8 bits (``convert("RGB")`` would clip them to white) and floating-point ones
    in [0, 1] to 0..255 (it would round them to black); floating pixels outside [0, 1] are refused.
    """
    from PIL import Image

    with open_regular_file(path) as f, Image.open(f) as image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ValueError(f"{width}x{height} pixels, more than MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,}; "
                             f"shrink it first")
        image.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale where the codec can
        return np.asarray(_to_rgb(image).resize((image_size, image_size), Image.BILINEAR))


def _to_rgb(image):
    """``image`` as 8-bit RGB, scaling 16-bit and floating-point pixels instead of clipping them."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image).astype(np.int64)  # (H, W)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ValueError(f"32-bit integer pixels in [{pixels.min()}, {pixels.max()}], outside 16 bits; "
                             f"save it as 8- or 16-bit")
        return Image.fromarray((pixels // 257).astype(np.uint8)).convert("RGB")  # 65535 -> 255
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)  # (H, W)
        if pixels.size and not (np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
            raise ValueError(f"floating-point pixels in [{np.nanmin(pixels):.4g}, {np.nanmax(pixels):.4g}], "
                             f"outside [0, 1]; save it as 8-bit, or scale it to [0, 1]")
        return Image.fromarray(np.round(pixels * 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _reason(err: Exception) -> str:
    """Why a file could not be read, short and without the path (the message names it already)."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image PIL can read"
    if isinstance(err, NotARegularFile):
        return str(err)
    if isinstance(err, OSError) and err.strerror:  # "Too many levels of symbolic links", "Permission denied"
        return err.strerror
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
