"""The demo: its models are the sources' models, its data loaders read the published formats, its
tasks learn, and one command writes every run and serves them with TensorBoard."""

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

import tb_layerdyn

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402  (needs torch)

from demo import __main__ as demo  # noqa: E402
from demo import data  # noqa: E402
from demo import dataset_files  # noqa: E402
from demo import lenet5  # noqa: E402
from demo import models  # noqa: E402
from demo import stripes  # noqa: E402
from tb_layerdyn.sweeps import make_eval_fn  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The "averaged over seeds" pattern of the Layer Dynamics tab.
SEED_SUFFIX = re.compile(r"[-_/]?seed[-_]?\d+$")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Runs these small models on one intra-op thread. On a shared two-core machine OpenMP's
    synchronisation costs far more than the work when the other core is busy: this module took
    287 s on two threads and 19 s on one, back to back under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def layer_shapes(model):
    """``{module name: [shape of each parameter it owns]}`` for the modules owning parameters."""
    return {
        name: [tuple(p.shape) for p in module.parameters(recurse=False)]
        for name, module in model.named_modules()
        if list(module.parameters(recurse=False))
    }


# --- The models --------------------------------------------------------------------------------


def test_lenet5_variant_has_the_papers_parameter_counts():
    model = models.LeNet5(kernel_size=3)
    counts = {
        name: sum(p.numel() for p in module.parameters(recurse=False))
        for name, module in model.named_children()
        if list(module.parameters(recurse=False))
    }
    # Table 1 of Nemcova, "Neural Network Training Process Visualization".
    assert counts == {"conv1": 60, "conv2": 880, "fc1": 69240, "fc2": 10164, "fc3": 850}
    assert layer_shapes(model) == {
        "conv1": [(6, 1, 3, 3), (6,)],
        "conv2": [(16, 6, 3, 3), (16,)],
        "fc1": [(120, 576), (120,)],
        "fc2": [(84, 120), (84,)],
        "fc3": [(10, 84), (10,)],
    }
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_lenet5_rejects_images_too_small_for_it():
    with pytest.raises(ValueError, match="image_size"):
        models.LeNet5(kernel_size=3, image_size=8)


@pytest.mark.parametrize(
    "factory, convolutions",
    [
        # Three 3x3 convolutions of 8 channels, then a 3x3 one to the single output channel.
        (models.stripe_4layer, [(8, 1, 3, 3), (8, 8, 3, 3), (8, 8, 3, 3), (1, 8, 3, 3)]),
        # The variant: 10 inner channels and a 1x1 last filter.
        (models.stripe_4layer_wide, [(10, 1, 3, 3), (10, 10, 3, 3), (10, 10, 3, 3), (1, 10, 1, 1)]),
        # That variant with six layers.
        (models.stripe_6layer, [(10, 1, 3, 3)] + [(10, 10, 3, 3)] * 4 + [(1, 10, 1, 1)]),
    ],
)
def test_stripe_nets_have_the_sources_shapes(factory, convolutions):
    model = factory()
    names = [f"conv{i + 1}" for i in range(len(convolutions))]
    assert layer_shapes(model) == {
        name: [shape, (shape[0],)] for name, shape in zip(names, convolutions)
    }
    activations = [type(m) for name, m in model.named_children() if name.startswith("act")]
    assert activations == [torch.nn.ReLU6] * (len(convolutions) - 1) + [torch.nn.Tanh]
    # Same-padded: the output image has the input's size, in tanh's range.
    output = model(torch.randn(2, 1, 16, 16) * 10)
    assert output.shape == (2, 1, 16, 16)
    assert output.abs().max() <= 1


def test_small_resnet_has_named_stages():
    model = models.SmallResNet(in_channels=1)
    assert [name for name, _ in model.named_children()] == [
        "stem", "stage1", "stage2", "stage3", "head",
    ]
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


# --- The stripe task ---------------------------------------------------------------------------


def test_stripe_task_is_a_black_stripe_on_white_from_fixed_noise():
    torch.manual_seed(5)
    expected_rng = torch.rand(3)
    torch.manual_seed(5)
    noise, target = data.stripe_task()
    assert torch.equal(torch.rand(3), expected_rng), "the task must not touch the global RNG"
    again, _ = data.stripe_task()
    assert torch.equal(noise, again)
    assert noise.shape == target.shape == (1, 1, 16, 16)
    assert noise.min() >= -1 and noise.max() <= 1 and noise.std() > 0.4
    for column in range(16):
        expected = -1.0 if 6 <= column < 10 else 1.0
        assert (target[0, 0, :, column] == expected).all(), f"column {column}"
    with pytest.raises(ValueError, match="stripe_width"):
        data.stripe_task(size=4, stripe_width=4)


@pytest.mark.parametrize("net", list(stripes.NETS))
def test_stripe_task_is_learnable(net, tmp_path):
    noise, target = data.stripe_task()
    torch.manual_seed(0)
    initial = F.mse_loss(stripes.NETS[net]()(noise), target).item()
    final = stripes.train(net, str(tmp_path), seed=0, steps=300)
    assert final < initial / 20, f"{net}: MSE {initial:.3g} -> {final:.3g} in 300 steps"


# --- The handwritten digits --------------------------------------------------------------------


def test_digits_are_sklearns_split_and_standardised():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = data.digits(image_size=32)
    assert digits.train_images.shape == (1437, 1, 32, 32)
    assert digits.test_images.shape == (360, 1, 32, 32)
    assert digits.train_images.dtype == torch.float32 and digits.train_labels.dtype == torch.int64
    assert abs(digits.train_images.mean().item()) < 1e-4
    assert abs(digits.train_images.std().item() - 1) < 1e-4
    assert "scikit-learn's handwritten digits" in digits.description

    # At their own size the splits are sklearn's 1,797 images (labels and all, each once),
    # standardised with the training images' mean and deviation. Raw pixels count 0..16 set
    # pixels, and the training images hold both extremes, which gives that affine map back.
    native = data.digits()
    train = native.train_images
    scale = 16 / (train.max() - train.min())
    offset = -train.min() * scale

    def restored(images, labels):
        counts = (images[:, 0] * scale + offset).double().numpy()
        assert np.abs(counts - counts.round()).max() < 1e-3
        return [(counts[i].round().astype(np.uint8).tobytes(), int(labels[i]))
                for i in range(len(labels))]

    demo_images = restored(train, native.train_labels) + restored(
        native.test_images, native.test_labels
    )
    bunch = sklearn_datasets.load_digits()
    expected = [(image.astype(np.uint8).tobytes(), int(label))
                for image, label in zip(bunch.images, bunch.target)]
    assert sorted(demo_images) == sorted(expected)
    assert len(native.test_labels) == 360


def test_without_sklearn_the_demo_trains_on_drawn_digits_and_says_what_to_install(
    monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    digits = data.load("digits", image_size=32)
    assert "pip install scikit-learn" in capsys.readouterr().out
    assert "scikit-learn missing" in digits.description
    assert digits.train_images.shape == (1437, 1, 32, 32)
    assert digits.test_images.shape == (360, 1, 32, 32)
    assert set(digits.train_labels.tolist()) == set(range(10))


def test_batches_are_reproducible_and_cover_an_epoch():
    images = torch.arange(10.0)[:, None]
    labels = torch.arange(10)
    stream = data.batches(images, labels, 5, seed=3)
    epoch = [next(stream) for _ in range(2)]
    again = next(data.batches(images, labels, 5, seed=3))
    assert torch.equal(epoch[0][0], again[0]) and torch.equal(epoch[0][1], again[1])
    # Images stay with their labels, and one epoch holds every image once.
    assert all(torch.equal(x[:, 0].long(), y) for x, y in epoch)
    assert sorted(torch.cat([y for _, y in epoch]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(images, labels, 11, seed=0))


# --- Datasets read from their published files ---------------------------------------------------


def write_idx(path, array):
    """Writes ``array`` (uint8) as an IDX file: magic 0 0 0x08 ndim, big-endian dims, the bytes."""
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(payload)


def write_mnist(root, folder, *, gzipped, train=6, test=4, side=28, seed=0):
    """Writes the four IDX files of (Fashion-)MNIST in torchvision's layout; returns the arrays."""
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, folder, "raw")
    os.makedirs(raw, exist_ok=True)
    arrays = {}
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        suffix = ".gz" if gzipped else ""
        write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte{suffix}"), images)
        write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte{suffix}"), labels)
        arrays[prefix] = (images, labels)
    return arrays


def cifar_pixel_reference(rows):
    """The images of CIFAR rows, pixel by pixel: ``image[y, x, c] = row[1024 c + 32 y + x]``."""
    images = np.zeros((len(rows), 32, 32, 3), dtype=np.uint8)
    for i, row in enumerate(rows):
        for c in range(3):
            for y in range(32):
                for x in range(32):
                    images[i, y, x, c] = row[1024 * c + 32 * y + x]
    return images


def write_cifar(root, name, *, seed=0):
    """Writes CIFAR-10 or CIFAR-100 batches as the published pickles (Python 2 str keys).

    Returns ``{"train": (rows, labels), "test": (rows, labels)}``.
    """
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, classes, label_key = "cifar-10-batches-py", 10, "labels"
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    else:
        folder, classes, label_key = "cifar-100-python", 100, "fine_labels"
        files = {"train": ["train"], "test": ["test"]}
        meta = ("meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                         "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    os.makedirs(os.path.join(root, folder))
    written = {}
    for split, names in files.items():
        all_rows, all_labels = [], []
        for file_name in names:
            rows = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
            labels = rng.integers(0, classes, 2).tolist()
            entry = {"batch_label": file_name, "data": rows, label_key: labels,
                     "filenames": [f"{file_name}_{i}.png" for i in range(2)]}
            if name == "cifar100":
                entry["coarse_labels"] = [label // 5 for label in labels]
            with open(os.path.join(root, folder, file_name), "wb") as f:
                pickle.dump(entry, f, protocol=2)
            all_rows.append(rows)
            all_labels += labels
        written[split] = (np.concatenate(all_rows), np.array(all_labels))
    with open(os.path.join(root, folder, meta[0]), "wb") as f:
        pickle.dump(meta[1], f, protocol=2)
    return written


@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gzipped"])
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_demo_reader_reads_mnist_formats(tmp_path, name, folder, gzipped):
    written = write_mnist(str(tmp_path), folder, gzipped=gzipped)
    files = dataset_files.load(name, str(tmp_path), reader="demo")
    assert files.num_classes == 10 and files.reader.startswith("the demo's reader")
    for split, prefix in ((files.train, "train"), (files.test, "t10k")):
        images, labels = written[prefix]
        assert split.images.dtype == np.uint8 and split.images.shape == images.shape + (1,)
        assert np.array_equal(split.images[..., 0], images)
        assert split.labels.dtype == np.int64 and np.array_equal(split.labels, labels)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_demo_reader_reads_cifar_batches(tmp_path, name):
    written = write_cifar(str(tmp_path), name)
    files = dataset_files.load(name, str(tmp_path), reader="demo")
    assert files.num_classes == (10 if name == "cifar10" else 100)
    for split, key in ((files.train, "train"), (files.test, "test")):
        rows, labels = written[key]
        assert split.images.dtype == np.uint8 and split.images.shape == (len(rows), 32, 32, 3)
        assert np.array_equal(split.images, cifar_pixel_reference(rows))
        assert split.labels.dtype == np.int64 and np.array_equal(split.labels, labels)


def test_load_turns_files_into_standardised_float_images(tmp_path):
    written = write_mnist(str(tmp_path), "MNIST", gzipped=True)
    dataset = data.load("mnist", str(tmp_path))
    train_images, train_labels = written["train"]
    test_images, test_labels = written["t10k"]
    pixels = train_images.astype(np.float64) / 255
    mean, std = pixels.mean(), pixels.std(ddof=1)
    assert dataset.image_shape == (1, 28, 28) and dataset.num_classes == 10
    assert dataset.train_images.dtype == torch.float32
    np.testing.assert_allclose(dataset.train_images[:, 0].numpy(), (pixels - mean) / std, atol=1e-5)
    np.testing.assert_allclose(
        dataset.test_images[:, 0].numpy(), (test_images / 255 - mean) / std, atol=1e-5
    )
    assert dataset.train_labels.tolist() == train_labels.tolist()
    assert dataset.test_labels.tolist() == test_labels.tolist()
    assert "mnist, 6 training and 4 test images" in dataset.description

    resized = data.load("mnist", str(tmp_path), image_size=32)
    assert resized.train_images.shape == (6, 1, 32, 32)
    assert resized.test_images.shape == (4, 1, 32, 32)

    cifar_dir = tmp_path / "cifar"
    write_cifar(str(cifar_dir), "cifar10")
    assert data.load("cifar10", str(cifar_dir)).image_shape == (3, 32, 32)


def test_missing_or_broken_files_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="--data-dir"):
        data.load("mnist")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        data.load("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*MNIST/raw"):
        dataset_files.load("mnist", str(tmp_path), reader="demo")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        dataset_files.load("cifar10", str(tmp_path), reader="demo")
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.load("imagenet", str(tmp_path))

    write_mnist(str(tmp_path), "MNIST", gzipped=False)
    images_file = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    content = images_file.read_bytes()
    images_file.write_bytes(content[:-5])
    with pytest.raises(ValueError, match="header"):
        dataset_files.load("mnist", str(tmp_path), reader="demo")
    images_file.write_bytes(b"\x89PNG" + content[4:])
    with pytest.raises(ValueError, match="not an IDX file"):
        dataset_files.load("mnist", str(tmp_path), reader="demo")

    write_cifar(str(tmp_path), "cifar10")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        dataset_files.load("cifar10", str(tmp_path), reader="demo")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, f)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        dataset_files.load("cifar10", str(tmp_path), reader="demo")


def torchvision_datasets():
    try:
        from torchvision import datasets
    except Exception as error:  # its PyPI wheels fail with RuntimeError beside a CPU-only torch
        pytest.skip(
            f"torchvision does not import here ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the demo's own readers of the "
            "same files are tested above"
        )
    return datasets


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_reads_mnist_files_as_the_demo_reader_does(tmp_path, name, folder):
    torchvision_datasets()
    write_mnist(str(tmp_path), folder, gzipped=False)
    ours = dataset_files.load(name, str(tmp_path), reader="demo")
    theirs = dataset_files.load(name, str(tmp_path))
    assert theirs.reader == "torchvision"
    for a, b in ((ours.train, theirs.train), (ours.test, theirs.test)):
        assert a.images.dtype == b.images.dtype and np.array_equal(a.images, b.images)
        assert a.labels.dtype == b.labels.dtype and np.array_equal(a.labels, b.labels)

    # torchvision reads only unpacked IDX files; gzipped ones go to the demo's reader.
    gz_dir = tmp_path / "gz"
    write_mnist(str(gz_dir), folder, gzipped=True)
    fallback = dataset_files.load(name, str(gz_dir))
    assert "torchvision did not take the files" in fallback.reader
    assert np.array_equal(fallback.train.images, ours.train.images)


@pytest.mark.parametrize("name, class_name", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100")])
def test_torchvision_reads_cifar_files_as_the_demo_reader_does(tmp_path, monkeypatch, name,
                                                               class_name):
    datasets = torchvision_datasets()
    write_cifar(str(tmp_path), name)
    ours = dataset_files.load(name, str(tmp_path), reader="demo")
    # torchvision checks the published files' MD5s, so it does not take these small ones...
    fallback = dataset_files.load(name, str(tmp_path))
    assert "torchvision did not take the files" in fallback.reader
    # ...until it is told theirs: then its own code reads them.
    dataset_class = getattr(datasets, class_name)
    folder = os.path.join(str(tmp_path), dataset_class.base_folder)

    def md5(file_name):
        with open(os.path.join(folder, file_name), "rb") as f:
            return hashlib.md5(f.read()).hexdigest()

    for attribute in ("train_list", "test_list"):
        files = [file_name for file_name, _ in getattr(dataset_class, attribute)]
        entries = [[file_name, md5(file_name)] for file_name in files]
        monkeypatch.setattr(dataset_class, attribute, entries)
    meta = dict(dataset_class.meta, md5=md5(dataset_class.meta["filename"]))
    monkeypatch.setattr(dataset_class, "meta", meta)
    theirs = dataset_files.load(name, str(tmp_path), reader="torchvision")
    assert theirs.reader == "torchvision"
    for a, b in ((ours.train, theirs.train), (ours.test, theirs.test)):
        assert a.images.dtype == b.images.dtype and np.array_equal(a.images, b.images)
        assert np.array_equal(a.labels, b.labels)


# --- python -m demo ----------------------------------------------------------------------------


QUICK_RUNS = (
    [f"lenet5/seed{k}" for k in range(demo.QUICK_SEEDS)]
    + [f"{net}/seed{k}" for net in stripes.NETS for k in range(demo.QUICK_SEEDS)]
    + [f"resnet/seed{k}" for k in range(demo.QUICK_SEEDS)]
    + [f"population/mlp-seed{k}" for k in range(demo.QUICK_POPULATION)]
)


@pytest.fixture(scope="module")
def quick_logdir(tmp_path_factory):
    """What ``python -m demo --quick --no-tensorboard`` writes, and what it printed."""
    logdir = tmp_path_factory.mktemp("demo_quick")
    output = _captured(lambda: demo.main(["--quick", "--no-tensorboard", "--logdir", str(logdir)]))
    return logdir, output


def _captured(fn):
    """What ``fn()`` prints."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        fn()
    return buffer.getvalue()


def test_quick_demo_writes_every_run_grouped_by_seed(quick_logdir):
    logdir, output = quick_logdir
    runs = tb_layerdyn.read(str(logdir))
    assert sorted(runs) == sorted(QUICK_RUNS)
    assert f"Trained {len(QUICK_RUNS)} runs" in output
    # The tab's seed pattern folds each experiment's seeds into one group.
    assert {SEED_SUFFIX.sub("", name) for name in runs} == {
        "lenet5", *stripes.NETS, "resnet", "population/mlp",
    }
    steps = list(range(demo.QUICK_STEPS + 1))
    for name, run in runs.items():
        assert run.steps.tolist() == steps, name
        # Step 0 holds the initial weights: nothing has moved yet; afterwards every layer has.
        assert (run.metrics["distance_from_init"][0] == 0).all(), name
        assert (run.metrics["distance_from_init"][1:] > 0).all(), name

    lenet = runs["lenet5/seed0"]
    assert lenet.layers == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert lenet.param_counts == [60, 880, 69240, 10164, 850]
    assert {g: list(group.members) for g, group in lenet.groups.items()} == lenet5.GROUPS
    assert runs["stripes-6layer/seed1"].layers == [f"conv{i}" for i in range(1, 7)]
    resnet = runs["resnet/seed0"]
    # The stages, then each stage's residual blocks (repeated children of a Sequential).
    stages = ["stem", "stage1", "stage2", "stage3"]
    assert [g for g in resnet.groups if "." not in g] == stages
    blocks = [g for g in resnet.groups if "." in g]
    assert blocks and all(g.split(".")[0] in stages[1:] for g in blocks)
    assert resnet.layers[0] == "stem.0" and resnet.layers[-1] == "head.2"
    assert all(m.startswith("stage2.") for m in resnet.groups["stage2"].members)
    assert runs["population/mlp-seed2"].layers == ["hidden", "output"]


def _activation_reference(module, probe, name):
    """A module's output for the probe as its activations picture stores it (numpy, loops)."""
    from picture_helpers import reference_picture
    from tb_layerdyn.tracking import picture_layouts

    with torch.no_grad():
        output = module(probe)[0].numpy()
    return reference_picture(output, picture_layouts.activation_plan(f"{name} output", output.shape))


def test_quick_demo_draws_pictures_every_few_steps(quick_logdir):
    """LeNet-5 and the stripe nets log every picture kind at the first step and every
    ``IMAGES_EVERY`` steps, their activations those of the probe each script names: a held-out
    digit, the stripe task's noise image."""
    logdir, _ = quick_logdir
    runs = tb_layerdyn.read(str(logdir))
    kinds = ["weights", "gradients", "updates", "travel", "activations"]
    for name, every in (("lenet5/seed0", lenet5.IMAGES_EVERY), ("stripes-4layer/seed1", stripes.IMAGES_EVERY)):
        run = runs[name]
        picture_steps = list(range(0, demo.QUICK_STEPS + 1, every))
        assert list(run.images) == kinds, name
        for kind in kinds:
            assert list(run.images[kind]) == run.layers, (name, kind)
            for layer, series in run.images[kind].items():
                # Step 0 is logged before the first backward: no gradient, no update yet.
                expected = picture_steps[1:] if kind in ("gradients", "updates") else picture_steps
                assert series.steps.tolist() == expected, (name, kind, layer)
    assert not runs["resnet/seed0"].images and not runs["population/mlp-seed0"].images

    digits = data.load("digits", image_size=32)
    torch.manual_seed(0)
    lenet = models.LeNet5(num_classes=digits.num_classes, kernel_size=3, image_size=32)
    noise, _ = data.stripe_task()
    torch.manual_seed(1)
    stripe = stripes.NETS["stripes-4layer"]()
    for run, module, probe in (("lenet5/seed0", lenet.conv1, digits.test_images[:1]),
                               ("stripes-4layer/seed1", stripe.conv1, noise)):
        series = runs[run].images["activations"]["conv1"]
        expected = _activation_reference(module, probe, "conv1")
        got = series.values(0)
        low, high = series.picture(0).planes[0].interval
        assert got.shape == expected.shape
        assert np.nanmax(np.abs(got - expected)) <= (high - low) / 254 / 2 + 1e-6, run


def test_quick_demo_logs_the_users_scalars(quick_logdir):
    logdir, _ = quick_logdir
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"scalars": 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == sorted(QUICK_RUNS)
    for run in QUICK_RUNS:
        tags = set(multiplexer.GetAccumulator(run).Tags()["tensors"])
        loss = [
            float(tensor_util.make_ndarray(event.tensor_proto))
            for event in multiplexer.Tensors(run, "loss/train")
        ]
        assert len(loss) == demo.QUICK_STEPS and np.isfinite(loss).all(), run
        assert ("accuracy/test" in tags) == (not run.startswith("stripes")), run


def test_quick_demo_sweeps_start_at_the_initial_model(quick_logdir):
    logdir, _ = quick_logdir
    runs = tb_layerdyn.read(str(logdir))
    steps = demo.QUICK_STEPS
    digits = data.load("digits", image_size=32)
    lenet_eval = make_eval_fn(
        F.cross_entropy,
        [(digits.test_images[: lenet5.SWEEP_IMAGES], digits.test_labels[: lenet5.SWEEP_IMAGES])],
    )
    noise, target = data.stripe_task()
    stripe_eval = make_eval_fn(F.mse_loss, [(noise, target)], accuracy=False)
    for name, run in runs.items():
        experiment, seed = SEED_SUFFIX.sub("", name), int(name.rsplit("seed", 1)[1])
        torch.manual_seed(seed)
        if experiment == "lenet5":
            # Halfway and at the end, every scope with robustness.
            assert [(s.step, s.scope) for s in run.sweeps] == [
                (step, scope) for step in (steps // 2, steps)
                for scope in ("model", "layers", "parameters", "robustness")
            ]
            initial, eval_fn = models.LeNet5(kernel_size=3), lenet_eval
        elif experiment in stripes.NETS:
            assert [(s.step, s.scope) for s in run.sweeps] == [(steps, "model"), (steps, "layers")]
            initial, eval_fn = stripes.NETS[experiment](), stripe_eval
        else:
            assert run.sweeps == [], name
            continue
        by_scope = {s.scope: s for s in run.sweeps if s.step == steps}
        assert list(by_scope["layers"].curves) == run.layers
        # Alpha 0 is the initial model, rebuilt here from the run's seed; alpha 1 the end model.
        curve, alphas = by_scope["model"].curves["model"], by_scope["model"].alphas
        for metric, value in eval_fn(initial.eval()).items():
            assert curve[metric][alphas == 0][0] == pytest.approx(value, rel=1e-5), (name, metric)
        if "robustness" in by_scope:
            per_layer = lenet5.SWEEP_OPTIONS["params_per_layer"]
            assert len(by_scope["parameters"].curves) == 5 * per_layer
            end = by_scope["robustness"].end_metrics
            for metric in end:
                assert curve[metric][alphas == 1][0] == pytest.approx(end[metric], rel=1e-5)


def _table(section):
    """The rows of the first markdown table in a section, as lists of cells (header and rule left out)."""
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]


def _numbers(text):
    """The numbers in a cell as the findings print them (a true minus sign)."""
    return [float(n) for n in re.findall(r"[-+]?\d+\.\d+", text.replace("\u2212", "-"))]


def test_findings_are_the_readers_figures(quick_logdir):
    from demo import findings

    logdir, _ = quick_logdir
    # 12 steps are too few for 10% of the peak: at 80% the layers settle, in an order to check.
    sections = _captured(lambda: findings.main([str(logdir), "--percent", "80"])).split("### ")[1:]
    assert [s.split("\n", 1)[0] for s in sections] == [
        "Which layers settle first", "Robust and ambient LeNet-5 layers", "RWC by depth",
        "Does the stripe nets' last layer slow first?",
    ]
    runs = tb_layerdyn.read(str(logdir))

    # Settling: each seed group's rho, mean, sd, min and max as Runs.settling gives them.
    rows = {row[0]: row for row in _table(sections[0])}
    for name, group in runs.settling(fraction=0.8).items():
        c = group.correlation
        if c.count == 0:
            assert rows[name][2].startswith("undefined"), name
        else:
            want = [c.mean, c.std, c.low, c.high]
            assert _numbers(rows[name][2]) == pytest.approx(want, abs=0.006), name

    # Robustness: per layer the mean change of accuracy and how many seeds label it robust.
    tables = [[s for s in runs[f"lenet5/seed{k}"].sweeps if s.scope == "robustness"][-1]
              for k in range(demo.QUICK_SEEDS)]
    for i, row in enumerate(_table(sections[1])):
        changes = [t.change("reinitialized")["accuracy"][i] for t in tables]
        assert row[0] == tables[0].layers[i]
        assert _numbers(row[1])[0] == pytest.approx(np.mean(changes), abs=0.006)
        assert row[2] == f"{sum(t.labels[i] == 'robust' for t in tables)}/{len(tables)}"

    # RWC by depth: LeNet's first-half mean per layer, by plain loops over the logged steps.
    lenet = _table(sections[2])
    first_half = [float(v) for v in lenet[0][1:]]
    for i, layer in enumerate(runs["lenet5/seed0"].layers):
        per_seed = []
        for k in range(demo.QUICK_SEEDS):
            run = runs[f"lenet5/seed{k}"]
            middle = (run.steps[0] + run.steps[-1]) / 2
            values = [v for step, v in zip(run.steps, run.metrics["rwc"][:, i]) if step <= middle and v == v]
            per_seed.append(sum(values) / len(values))
        assert first_half[i] == pytest.approx(np.mean(per_seed), rel=0.006), layer

    # Stripes: in how many seeds the last layer's RWC settles first.
    for row in _table(sections[3]):
        net, metric = row[0], row[1]
        results = [runs[f"{net}/seed{k}"].settling(metric, 0.8) for k in range(demo.QUICK_SEEDS)]
        first = [
            min((s.step for s in r.layers if s.step is not None), default=None) for r in results
        ]
        last_first = sum(
            f is not None and r.layers[-1].step == f for r, f in zip(results, first)
        )
        assert row[2] == f"{last_first}/{demo.QUICK_SEEDS}", (net, metric)


def test_scripts_run_on_their_own(tmp_path):
    output = _captured(lambda: lenet5.main(
        ["--logdir", str(tmp_path), "--steps", "2", "--seeds", "1"]
    ))
    assert "lenet5/seed0: 2 steps" in output and f"tensorboard --logdir {tmp_path}" in output
    assert sorted(tb_layerdyn.read(str(tmp_path))) == ["lenet5/seed0"]


def test_bad_flags_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--steps", "0"])
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.parse_args(["--dataset", "imagenet"])
    assert "--dataset" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_in_a_terminal():
    """Ctrl+C's default action for the child, as in a terminal: a shell's background job (``cmd &``
    without job control) ignores SIGINT, and a child process inherits that (Python then installs
    no handler), so a test suite run that way would otherwise see Ctrl+C do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_another_thread_still_stops_the_wait_for_tensorboard():
    """A process-directed SIGINT may be delivered to any thread; here it is sent to a thread other
    than the main one, while the main thread waits for a child that would run for a minute. The
    wait must end with KeyboardInterrupt at once (a blocking ``Popen.wait()`` would sit out the
    minute)."""
    code = textwrap.dedent(
        """
        import signal, subprocess, sys, threading, time
        from demo.__main__ import wait_for

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

        def interrupt():
            time.sleep(1)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # this thread, not main

        threading.Thread(target=interrupt, daemon=True).start()
        started = time.monotonic()
        try:
            wait_for(child)
            print("returned")
        except KeyboardInterrupt:
            print(f"interrupted after {time.monotonic() - started:.2f} s")
        finally:
            child.kill()
            child.wait()
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
        preexec_fn=_as_in_a_terminal,
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:2] == ["interrupted", "after"], result.stdout
    assert float(words[2]) < 5


def test_demo_serves_tensorboard_on_localhost_at_the_printed_url(tmp_path):
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "demo", "--steps", "2", "--seeds", "1", "--population", "1",
        "--logdir", str(tmp_path), "--port", str(port),
    ]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=_as_in_a_terminal,
    )
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.daemon = True
    reader.start()
    printed = []
    try:
        url = f"http://127.0.0.1:{port}/#layer_dynamics"
        deadline = time.monotonic() + 120
        while not any(url in line for line in printed):
            assert time.monotonic() < deadline and process.poll() is None, "".join(printed)
            try:
                printed.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        base = f"http://127.0.0.1:{port}"
        answer = None
        deadline = time.monotonic() + 60
        while answer is None:
            assert time.monotonic() < deadline, "TensorBoard did not answer at the printed URL"
            try:
                runs_url = base + "/data/plugin/layer_dynamics/runs"
                with urllib.request.urlopen(runs_url, timeout=5) as response:
                    answer = json.loads(response.read())
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        served = {run["run"] for run in answer["runs"]}
        assert {"lenet5/seed0", "stripes-4layer/seed0", "resnet/seed0",
                "population/mlp-seed0"} <= served
    finally:
        # Ctrl+C in a terminal interrupts the whole process group: the demo and its TensorBoard.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    while not lines.empty():
        printed.append(lines.get())
    assert process.returncode == 0, "".join(printed[-40:])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "TensorBoard outlived the demo"
