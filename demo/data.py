"""The demo's data, all in memory: image classification sets, the stripe task, minibatches.

- ``load("digits")``: scikit-learn's bundled handwritten digits (1,797 8x8 images, nothing to
  download), the default; without scikit-learn, seven-segment digits drawn in code (``glyphs``),
  with a printed note.
- ``load("mnist" | "fashion-mnist" | "cifar10" | "cifar100", data_dir)``: the published files in
  ``data_dir`` (see ``dataset_files``).
- ``stripe_task()``: a fixed noisy image and the black vertical stripe on white it should become.
- ``batches()``: shuffled minibatches, forever.
"""

import dataclasses

import torch
from torch.nn import functional as F

from demo import dataset_files
from demo import glyphs

DATASETS = ("digits",) + dataset_files.NAMES
DIGITS_IMAGES = 1797  # in scikit-learn's copy of the UCI handwritten digits
DIGITS_TEST_IMAGES = 360  # a fifth of them, held out


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A classification dataset as float tensors, standardised with the training images' mean and
    standard deviation per channel.

    Attributes:
        train_images, test_images: float32 ``(N, C, H, W)``.
        train_labels, test_labels: int64 ``(N,)`` class indices.
        num_classes: number of classes.
        description: one line saying what the data is and where it came from.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    description: str

    @property
    def image_shape(self):
        """``(C, H, W)`` of one image."""
        return tuple(self.train_images.shape[1:])


def load(name="digits", data_dir=None, *, image_size=None):
    """Loads a classification dataset into memory.

    Args:
        name: one of ``DATASETS``.
        data_dir: where the files of the datasets other than ``"digits"`` are.
        image_size: resize the images to this side (bilinear), e.g. 32 for LeNet-5; ``None``
            keeps them as stored (8 for the digits, 28 for (Fashion-)MNIST, 32 for CIFAR).

    Returns:
        An ``ImageData``.

    Raises:
        ValueError: unknown ``name``, or a dataset other than the digits without ``data_dir``.
        FileNotFoundError: the dataset's files are not in ``data_dir``.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if name == "digits":
        return digits(image_size=image_size)
    if data_dir is None:
        raise ValueError(
            f"the {name} dataset is read from files: pass --data-dir DIR (nothing is downloaded)"
        )
    files = dataset_files.load(name, data_dir)
    train_images, test_images = (
        torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 255
        for split in (files.train, files.test)
    )
    description = (
        f"{name}, {len(train_images):,} training and {len(test_images):,} test images from "
        f"{data_dir} (read by {files.reader})"
    )
    return _prepared(
        train_images,
        torch.from_numpy(files.train.labels),
        test_images,
        torch.from_numpy(files.test.labels),
        files.num_classes,
        description,
        image_size,
    )


def digits(*, image_size=None, test_images=DIGITS_TEST_IMAGES):
    """scikit-learn's handwritten digits, split into training and test images by a fixed shuffle.

    Without scikit-learn, prints a note and returns seven-segment digits drawn in code instead
    (1,437 training and 360 test images, at ``image_size`` or 32).

    Args:
        image_size: resize the 8x8 images to this side (bilinear); ``None`` keeps 8x8.
        test_images: how many of the 1,797 images are held out.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print(
            "  note: scikit-learn is not installed, so the demo trains on seven-segment digits "
            "drawn in code;\n  `pip install scikit-learn` (or bash scripts/setup.sh) gives it "
            "the real handwritten digits."
        )
        size = image_size or 32
        train = glyphs.glyphs(DIGITS_IMAGES - test_images, image_size=size, seed=0)
        test = glyphs.glyphs(test_images, image_size=size, seed=1)
        description = (
            f"seven-segment digits drawn in code, {size}x{size}, {len(train[1]):,} training and "
            f"{len(test[1]):,} test images (scikit-learn missing)"
        )
        return _prepared(*train, *test, glyphs.NUM_CLASSES, description, None)
    bunch = load_digits()
    # Pixel values are counts of 0..16 set pixels in 4x4 blocks of the original 32x32 bitmaps.
    images = torch.from_numpy(bunch.images).float()[:, None] / 16
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    test, train = order[:test_images], order[test_images:]
    size = image_size or 8
    shape = "8x8" if size == 8 else f"8x8 upsampled to {size}x{size}"
    description = (
        f"scikit-learn's handwritten digits ({shape}), {len(train):,} training and {len(test):,} "
        "test images"
    )
    return _prepared(
        images[train], labels[train], images[test], labels[test], 10, description, image_size
    )


def _prepared(train_images, train_labels, test_images, test_labels, num_classes, description,
              image_size):
    """Resizes both splits and standardises them with the training images' statistics."""
    if image_size is not None and train_images.shape[-1] != image_size:
        train_images, test_images = (
            F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
            for x in (train_images, test_images)
        )
    mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
    std = train_images.std(dim=(0, 2, 3), keepdim=True)
    return ImageData(
        ((train_images - mean) / std).contiguous(),
        train_labels,
        ((test_images - mean) / std).contiguous(),
        test_labels,
        num_classes,
        description,
    )


def stripe_task(size=16, stripe_width=4, seed=0):
    """The stripe task: turn a fixed noisy image into a black vertical stripe on white.

    As in kevindoran/dip's experiment, pixels lie in [-1, 1] (-1 black, 1 white): the input is
    uniform noise, the target white with a centred black stripe of ``stripe_width`` columns.

    Args:
        size: side of both square images.
        stripe_width: columns of the stripe.
        seed: seeds the noise (a private generator; the global RNG is left untouched).

    Returns:
        ``(noise, target)``, float32 ``(1, 1, size, size)`` each.
    """
    if not 0 < stripe_width < size:
        raise ValueError(
            f"stripe_width must be between 1 and size - 1 ({size - 1}), got {stripe_width}"
        )
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 1, size, size, generator=gen) * 2 - 1
    target = torch.ones(1, 1, size, size)
    left = (size - stripe_width) // 2
    target[..., left : left + stripe_width] = -1
    return noise, target


def batches(images, labels, batch_size, *, seed):
    """Yields shuffled ``(images, labels)`` minibatches forever, reshuffling every epoch.

    Args:
        images, labels: the dataset.
        batch_size: images per batch; the last incomplete batch of an epoch is dropped.
        seed: seeds the shuffling generator, so a run's batch order depends on its seed only.
    """
    if batch_size < 1 or batch_size > len(labels):
        raise ValueError(
            f"batch_size must be between 1 and the dataset size {len(labels)}, got {batch_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    per_epoch = len(labels) // batch_size
    while True:
        order = torch.randperm(len(labels), generator=gen)
        for i in range(per_epoch):
            index = order[i * batch_size : (i + 1) * batch_size]
            yield images[index], labels[index]
