"""Seven-segment digits drawn in code: the demo's stand-in for real digits without scikit-learn.

Each image is a seven-segment digit (0-9) rendered with a random pose (scale, rotation, shear,
shift), a random stroke width, and Gaussian pixel noise. The classes are easy to tell apart in
principle but vary enough that a small network needs a few hundred steps to learn them, so accuracy
visibly rises and the layers visibly move.
"""

import torch

# Segments of a seven-segment display as line segments (x0, y0, x1, y1) in a box of half-width
# 0.5 and half-height 0.9, y pointing up: top, upper right, lower right, bottom, lower left,
# upper left, middle.
_SEGMENTS = torch.tensor(
    [
        [-0.5, 0.9, 0.5, 0.9],
        [0.5, 0.9, 0.5, 0.0],
        [0.5, 0.0, 0.5, -0.9],
        [-0.5, -0.9, 0.5, -0.9],
        [-0.5, 0.0, -0.5, -0.9],
        [-0.5, 0.9, -0.5, 0.0],
        [-0.5, 0.0, 0.5, 0.0],
    ]
)

# Which segments each digit lights, in the order of _SEGMENTS.
_DIGITS = torch.tensor(
    [
        [1, 1, 1, 1, 1, 1, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 1, 1, 0, 1],
        [1, 1, 1, 1, 0, 0, 1],
        [0, 1, 1, 0, 0, 1, 1],
        [1, 0, 1, 1, 0, 1, 1],
        [1, 0, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 1, 1],
    ],
    dtype=torch.bool,
)

NUM_CLASSES = len(_DIGITS)


def glyphs(count, *, image_size=32, noise=0.35, seed=0):
    """Draws ``count`` noisy seven-segment digits.

    Args:
        count: number of images.
        image_size: side of the square images in pixels.
        noise: standard deviation of the Gaussian noise added to pixels in [0, 1].
        seed: seed of a private generator; the global RNG is left untouched.

    Returns:
        ``(images, labels)``: float32 ``(count, 1, image_size, image_size)`` standardised to zero
        mean and unit variance, and int64 ``(count,)`` labels in ``[0, 10)``.
    """
    if count < 1:
        raise ValueError(f"count must be a positive number of images, got {count}")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=gen)

    def uniform(low, high):
        return low + (high - low) * torch.rand(count, generator=gen)

    # Per-image pose; pixel coordinates are mapped back into the glyph's frame (inverse pose).
    scale = uniform(0.45, 0.7)
    angle = uniform(-0.25, 0.25)
    shear = uniform(-0.3, 0.3)
    shift_x, shift_y = uniform(-0.2, 0.2), uniform(-0.15, 0.15)
    width = uniform(0.1, 0.2)

    axis = torch.linspace(-1.0, 1.0, image_size)
    y, x = torch.meshgrid(-axis, axis, indexing="ij")
    x = (x.reshape(1, -1) - shift_x[:, None]) / scale[:, None]
    y = (y.reshape(1, -1) - shift_y[:, None]) / scale[:, None]
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    x, y = cos * x + sin * y, -sin * x + cos * y
    x = x - shear[:, None] * y

    # Distance from every pixel to every segment: (count, pixels, segments).
    start, end = _SEGMENTS[:, :2], _SEGMENTS[:, 2:]
    direction = end - start
    points = torch.stack([x, y], dim=-1)[:, :, None, :]
    along = ((points - start) * direction).sum(-1) / (direction * direction).sum(-1)
    nearest = start + along.clamp(0.0, 1.0)[..., None] * direction
    distance = (points - nearest).norm(dim=-1)

    ink = torch.sigmoid((width[:, None, None] - distance) * 40.0)
    ink = ink * _DIGITS[labels][:, None, :]
    images = ink.amax(dim=-1).reshape(count, 1, image_size, image_size)
    images = images + noise * torch.randn(images.shape, generator=gen)
    images = (images - images.mean()) / images.std()
    return images, labels
