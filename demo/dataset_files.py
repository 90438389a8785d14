"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read from their published files; nothing downloads.

The files sit in a data directory in torchvision's layout (``torchvision.datasets.MNIST(DIR,
download=True)`` and its siblings write exactly this, once, on a machine with a network)::

    DIR/MNIST/raw/train-images-idx3-ubyte      train-labels-idx1-ubyte     (each may end in .gz)
    DIR/MNIST/raw/t10k-images-idx3-ubyte       t10k-labels-idx1-ubyte
    DIR/FashionMNIST/raw/...                   the same four names
    DIR/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    DIR/cifar-100-python/train, test, meta

When torchvision imports, its dataset classes read the files (and check CIFAR's checksums). When
it does not (its PyPI wheels do not import beside a CPU-only torch), or it does not take the files
(it reads only unpacked IDX files, and only the published CIFAR files), the small readers here
read the same formats: IDX (MNIST's big-endian arrays, gzipped or not) and CIFAR's pickled
batches. Like torchvision's, the CIFAR reader unpickles, which can run code: point it only at
files you trust.
"""

import dataclasses
import gzip
import os
import pickle
import struct

import numpy as np

NAMES = ("mnist", "fashion-mnist", "cifar10", "cifar100")


@dataclasses.dataclass(frozen=True)
class _IdxSpec:
    torchvision_class: str  # also the folder torchvision keeps the files in
    num_classes: int = 10


@dataclasses.dataclass(frozen=True)
class _CifarSpec:
    torchvision_class: str
    folder: str
    train_files: tuple
    test_files: tuple
    label_key: str
    num_classes: int


_SPECS = {
    "mnist": _IdxSpec("MNIST"),
    "fashion-mnist": _IdxSpec("FashionMNIST"),
    "cifar10": _CifarSpec(
        "CIFAR10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        10,
    ),
    "cifar100": _CifarSpec(
        "CIFAR100", "cifar-100-python", ("train",), ("test",), "fine_labels", 100
    ),
}

# IDX type codes (the third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset as stored: ``images`` uint8 ``(N, H, W, C)``, ``labels`` int64."""

    images: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class DatasetFiles:
    """A dataset read from disk; ``reader`` says what read it (torchvision, or the demo's reader
    and why not torchvision), for the demo's printout."""

    train: Split
    test: Split
    num_classes: int
    reader: str


READERS = ("auto", "torchvision", "demo")


def load(name, data_dir, *, reader="auto"):
    """Reads both splits of a dataset from ``data_dir``.

    Args:
        name: one of ``NAMES``.
        data_dir: the directory holding the dataset's folder (see the module docstring).
        reader: ``"auto"``: torchvision where it imports and takes the files, else the demo's
            readers; ``"torchvision"`` or ``"demo"`` to insist on one.

    Returns:
        A ``DatasetFiles``.

    Raises:
        ValueError: unknown ``name``, or a file that is not in the dataset's format.
        FileNotFoundError: the files are missing; the message lists the paths looked for.
        RuntimeError: ``reader="torchvision"``, and torchvision does not import or take the files.
    """
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"dataset must be one of {NAMES}, got {name!r}")
    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"--data-dir {data_dir!r} is not a directory; pass the directory that holds "
            f"{_expected_folder(spec)}/"
        )
    splits, why_not_torchvision = None, "reader='demo'"
    if reader != "demo":
        splits, why_not_torchvision = _read_with_torchvision(spec, data_dir)
    if splits is not None:
        reader = "torchvision"
    elif reader == "torchvision":
        raise RuntimeError(f"cannot read {name} from {data_dir!r}: {why_not_torchvision}")
    else:
        read = _read_idx_split if isinstance(spec, _IdxSpec) else _read_cifar_split
        splits = [read(spec, data_dir, train=train) for train in (True, False)]
        reader = f"the demo's reader ({why_not_torchvision})"
    for split, split_name in zip(splits, ("train", "test")):
        labels = split.labels
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise ValueError(
                f"{name} {split_name} labels must lie in [0, {spec.num_classes}), got "
                f"{labels.min()}..{labels.max()}"
            )
    return DatasetFiles(splits[0], splits[1], spec.num_classes, reader)


def read_idx(path):
    """Reads an IDX file (MNIST's format), gzipped when ``path`` ends in ``.gz``.

    Returns:
        A numpy array of the file's shape, in native byte order.

    Raises:
        ValueError: the file is not IDX, or holds fewer values than its header promises.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: it does not start with 0x00 0x00 <type code>")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is cut short inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} holds {len(raw) - header} bytes of data, but its header {shape} needs "
            f"{expected}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_cifar_batch(path, label_key):
    """Reads one pickled CIFAR batch: ``(images uint8 (N, 32, 32, 3), labels int64 (N,))``.

    Args:
        path: a batch file (``data_batch_1``, ``test_batch``, CIFAR-100's ``train``, ...).
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).

    Raises:
        ValueError: the file does not hold CIFAR's ``data`` and label entries.
    """
    with open(path, "rb") as f:
        # The published batches were pickled by Python 2; latin1 reads their strings and arrays.
        entry = pickle.load(f, encoding="latin1")
    if not isinstance(entry, dict):
        raise ValueError(
            f"{path} is not a CIFAR batch: it holds a {type(entry).__name__}, not a dict"
        )
    entry = {key.decode() if isinstance(key, bytes) else key: value for key, value in entry.items()}
    for key in ("data", label_key):
        if key not in entry:
            raise ValueError(f"{path} is not a CIFAR batch: it has no {key!r} entry")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but {labels.size} labels")
    # Each row is the red plane, then green, then blue, each 32x32 row-major.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _expected_folder(spec):
    return spec.torchvision_class if isinstance(spec, _IdxSpec) else spec.folder


def _read_with_torchvision(spec, data_dir):
    """``(splits, None)`` read by torchvision, or ``(None, why it could not read them)``."""
    try:
        from torchvision import datasets
    except Exception as error:  # ImportError, or RuntimeError when its build does not match torch
        return None, f"torchvision does not import: {type(error).__name__}: {error}".splitlines()[0]
    dataset_class = getattr(datasets, spec.torchvision_class)
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(data_dir, train=train, download=False)
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
            return None, f"torchvision did not take the files: {error}"
        images = np.asarray(dataset.data, dtype=np.uint8)
        if images.ndim == 3:  # (F)MNIST: (N, 28, 28), no channel axis
            images = images[..., None]
        splits.append(Split(images, np.asarray(dataset.targets, dtype=np.int64)))
    return splits, None


def _find(paths):
    for path in paths:
        if os.path.isfile(path):
            return path
    return None


def _read_idx_split(spec, data_dir, train):
    folder = os.path.join(data_dir, spec.torchvision_class, "raw")
    prefix = "train" if train else "t10k"
    arrays = []
    for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        candidates = [os.path.join(folder, stem), os.path.join(folder, stem + ".gz")]
        path = _find(candidates)
        if path is None:
            raise FileNotFoundError(
                f"no {stem} in --data-dir: looked for {' and '.join(candidates)}"
            )
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{prefix} images must be uint8 (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),):
        raise ValueError(f"{prefix}: {len(images)} images but labels of shape {labels.shape}")
    return Split(images[..., None], labels.astype(np.int64))


def _read_cifar_split(spec, data_dir, train):
    folder = os.path.join(data_dir, spec.folder)
    images, labels = [], []
    for name in spec.train_files if train else spec.test_files:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {name} in --data-dir: looked for {path}")
        batch_images, batch_labels = read_cifar_batch(path, spec.label_key)
        images.append(batch_images)
        labels.append(batch_labels)
    return Split(np.concatenate(images), np.concatenate(labels))
