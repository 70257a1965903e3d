import io

import numpy as np
import pytest
import torch
from PIL import Image

from crl_helpers.data import load_cifar10_npz, load_dataset, load_image_folder
from crl_helpers.image_data import DatasetUnavailable, ImageData


def test_shapes_splits_are_disjoint():
    train = load_dataset("shapes", "train", n=200)
    test = load_dataset("shapes", "test", n=200)
    flat_train = {bytes(x.numpy()) for x in train.x}
    assert not any(bytes(x.numpy()) in flat_train for x in test.x)


def test_channel_stats_against_numpy():
    data = load_dataset("shapes", "train", n=40)
    mean, std = data.channel_stats()
    x = data.x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3), ddof=1), atol=1e-4)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="dataset='mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="split='val'"):
        load_dataset("shapes", "val")
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ("a",))


def test_offline_cifar10_says_how_to_proceed(tmp_path):
    with pytest.raises(DatasetUnavailable, match="TrainConfig.dataset=.shapes."):
        load_dataset("cifar10", root=tmp_path, download=False)


def _write_npz(path, n_per_split=6):
    rng = np.random.default_rng(0)
    arrays = {}
    pixels = {}
    for split in ("train", "test"):
        blobs, offsets, images = [], [0], []
        for _ in range(n_per_split):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")  # lossless, so decoded pixels are known
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
            offsets.append(offsets[-1] + len(blobs[-1]))
            images.append(img)
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.array(offsets, dtype=np.int64)
        arrays[f"y_{split}"] = np.arange(n_per_split, dtype=np.int64) % 3
        pixels[split] = np.stack(images)
    arrays["class_names"] = np.array(["a", "b", "c"])
    np.savez(path, **arrays)
    return pixels


def test_cifar10_npz_roundtrip(tmp_path):
    pixels = _write_npz(tmp_path / "cifar10_jpeg.npz")
    data = load_cifar10_npz(tmp_path / "cifar10_jpeg.npz", "test")
    assert data.x.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(data.x.permute(0, 2, 3, 1).numpy(), pixels["test"])
    assert data.class_names == ("a", "b", "c")
    # load_dataset finds the local file in root before trying to download
    assert len(load_dataset("cifar10", "train", root=tmp_path, download=False)) == 6


def test_npz_with_pickled_object_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", train_jpeg=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        load_cifar10_npz(tmp_path / "bad.npz", "train")


def test_image_folder_split_and_labels(tmp_path):
    for c, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (40, 30), colour).save(tmp_path / c / f"{i}.png")
    train = load_image_folder(tmp_path, "train", image_size=16)
    test = load_image_folder(tmp_path, "test", image_size=16)
    assert len(train) == 8 and len(test) == 2 and train.class_names == ("cats", "dogs")
    assert train.x.shape[-2:] == (16, 16)
    red = train.x[train.y == 0]
    assert (red[:, 0] == 255).all() and (red[:, 2] == 0).all()
    with pytest.raises(DatasetUnavailable, match="class sub-folders"):
        load_image_folder(tmp_path / "cats")


def test_a_jpeg_archive_without_the_split_names_what_is_missing(tmp_path):
    import numpy as np

    from crl_helpers.data import load_cifar10_npz

    path = tmp_path / "partial.npz"
    np.savez(path, train_jpeg=np.zeros(4, dtype=np.uint8), class_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"is missing train_offsets, y_train; a CIFAR-10 JPEG archive holds"):
        load_cifar10_npz(path, "train")


def test_a_jpeg_archive_with_an_object_array_is_refused_with_the_reason(tmp_path):
    import numpy as np

    from crl_helpers.data import load_cifar10_npz

    path = tmp_path / "object.npz"
    objects = np.empty(2, dtype=object)
    objects[:] = [b"\xff\xd8", b"\xff\xd8"]
    np.savez(path, train_jpeg=objects, train_offsets=np.array([0, 1, 2]), y_train=np.array([0, 1]),
             class_names=np.array(["a", "b"]))  # np.savez pickles the object array
    with pytest.raises(ValueError, match=r"object\.npz holds an array of Python objects, refused"):
        load_cifar10_npz(path, "train")
