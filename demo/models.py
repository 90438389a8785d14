"""The models of the demo's experiments, and reference models for the tests and benchmarks.

Written here rather than imported from torchvision, which is optional (its PyPI wheels do not
import beside a CPU-only torch).

- ``LeNet5``: LeNet-5; with 3x3 kernels on 1x32x32 inputs it is the variant of Nemcova's paper.
  ``FunctionalLeNet5`` and ``sequential_lenet5`` are the same network written two other ways.
- ``StripeNet``: the small all-convolutional nets of the stripe task ("Inside Neural Network
  Training", kevindoran/dip): ``stripe_4layer``, ``stripe_4layer_wide``, ``stripe_6layer``.
- ``SmallResNet``: a ResNet with named stages (``stem``, ``stage1`` .. ``stage3``, ``head``).
- ``one_hidden_layer_mlp``: the population experiment's perceptron.
- ``mlp``: a multilayer perceptron of any depth, for the tests and benchmarks.
- ``ResNet18``: torchvision's ResNet-18 layout, for the tests and benchmarks.
"""

from collections import OrderedDict

from torch import nn
from torch.nn import functional as F


def mlp(in_features=784, hidden=(512, 256), num_classes=10):
    """A multilayer perceptron, 784-512-256-10 by default (536K parameters, 6 tensors).

    ``nn.Sequential`` names its layers by position: ``nn.Flatten`` is ``"0"``, the first
    ``nn.Linear`` ``"1"``, the next ``"3"`` and so on (the ReLUs sit between).
    """
    layers = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def one_hidden_layer_mlp(in_features, hidden=100, num_classes=10):
    """The population's perceptron: ``hidden`` ReLU units, then the outputs (784-100-10 on MNIST,
    as in the population slides). Its layers are named ``hidden`` and ``output``."""
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            hidden=nn.Linear(in_features, hidden),
            act=nn.ReLU(),
            output=nn.Linear(hidden, num_classes),
        )
    )


class LeNet5(nn.Module):
    """LeNet-5: two convolutions with max pooling, then three fully connected layers.

    With the defaults (5x5 kernels, 1x32x32 inputs) it has 61.7K parameters in 10 tensors.
    ``kernel_size=3`` gives the variant of Nemcova's paper, whose Table 1 counts conv1 60, conv2
    880, fc1 69240, fc2 10164 and fc3 850 parameters: conv1 6x1x3x3 + 6, conv2 16x6x3x3 + 16,
    and the 32x32 input shrinks to 30, 15, 13 and 6, so fc1 sees 16x6x6 = 576 features
    (120x576 + 120), fc2 is 84x120 + 84 and fc3 10x84 + 10.

    Args:
        num_classes: outputs of ``fc3``.
        kernel_size: side of both convolutions' kernels (no padding).
        in_channels: image channels (1 for digits, 3 for CIFAR).
        image_size: side of the square input images.
    """

    def __init__(self, num_classes=10, kernel_size=5, in_channels=1, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size)
        self.conv2 = nn.Conv2d(6, 16, kernel_size)
        side = ((image_size - kernel_size + 1) // 2 - kernel_size + 1) // 2
        if side < 1:
            raise ValueError(
                f"image_size {image_size} is too small for two {kernel_size}x{kernel_size} "
                "convolutions with 2x2 pooling; use 32 (the demo's digits are resized to it)"
            )
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = x.flatten(1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


def lenet5(**kwargs):
    return LeNet5(**kwargs)


class FunctionalLeNet5(nn.Module):
    """LeNet-5 (5x5 kernels, 1x32x32 inputs) whose activations, pooling and reshaping are
    functional calls in its forward (``F.relu``, ``F.max_pool2d``, ``view``), as many models are
    written; its layers are named as in ``LeNet5``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def sequential_lenet5():
    """LeNet-5 as an ``nn.Sequential``, its layers named as in ``LeNet5``."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 6, 5), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 16, 5), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2), flatten=nn.Flatten(),
        fc1=nn.Linear(400, 120), relu3=nn.ReLU(), fc2=nn.Linear(120, 84), relu4=nn.ReLU(),
        fc3=nn.Linear(84, 10),
    ))


class StripeNet(nn.Sequential):
    """A stack of same-padded convolutions that maps a 1-channel image to a 1-channel image.

    As in kevindoran/dip's experiment: every inner layer is followed by ReLU6 (ReLU capped at
    6), the last by tanh, so the output lies in (-1, 1) like the target image. The convolutions
    are named ``conv1`` .. ``convN``, input to output, and their activations ``act1`` ..
    ``actN``.

    Args:
        channels: output channels of each inner layer; the last layer has one.
        kernel_sizes: one odd kernel side per layer (inner layers and the last).
    """

    def __init__(self, channels, kernel_sizes):
        if len(kernel_sizes) != len(channels) + 1:
            raise ValueError(
                f"kernel_sizes needs one entry per layer ({len(channels) + 1}: the inner ones and "
                f"the last), got {len(kernel_sizes)}"
            )
        super().__init__()
        widths = [1, *channels, 1]
        for i, kernel_size in enumerate(kernel_sizes):
            if kernel_size % 2 == 0:
                raise ValueError(
                    f"kernel sizes must be odd to keep the image size, got {kernel_size}"
                )
            conv = nn.Conv2d(widths[i], widths[i + 1], kernel_size, padding=kernel_size // 2)
            self.add_module(f"conv{i + 1}", conv)
            last = i == len(kernel_sizes) - 1
            self.add_module(f"act{i + 1}", nn.Tanh() if last else nn.ReLU6())


def stripe_4layer():
    """The 4-layer net: three 3x3 convolutions of 8 channels, then a 3x3 one to the output."""
    return StripeNet(channels=(8, 8, 8), kernel_sizes=(3, 3, 3, 3))


def stripe_4layer_wide():
    """Its variant: 10 inner channels instead of 8, and a 1x1 last filter."""
    return StripeNet(channels=(10, 10, 10), kernel_sizes=(3, 3, 3, 1))


def stripe_6layer():
    """The variant extended to 6 layers: five 3x3 convolutions of 10 channels, a 1x1 last one.

    The source shows this structure only as a picture and calls it the previous model extended
    to 6 layers; this reads "previous" as the 10-channel variant with its 1x1 last filter.
    """
    return StripeNet(channels=(10, 10, 10, 10, 10), kernel_sizes=(3, 3, 3, 3, 3, 1))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    """A small ResNet for 32x32 images whose top-level children are its stages.

    ``stem`` (3x3 convolution and BatchNorm), ``stage1`` .. ``stage3`` (two ``BasicBlock`` each;
    stages 2 and 3 halve the resolution and double the width), ``head`` (global average pooling
    and the classifier). Logged with ``block_groups=True`` (the default), every child with two or
    more layers becomes a group, so the Layer Dynamics tab's block view shows the stem and the
    three stages side by side.

    Args:
        num_classes: outputs of the classifier.
        in_channels: image channels.
        width: channels of the stem and the first stage (then twice and four times that).
    """

    def __init__(self, num_classes=10, in_channels=1, width=8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.stage1 = _stage(width, width, stride=1)
        self.stage2 = _stage(width, 2 * width, stride=2)
        self.stage3 = _stage(2 * width, 4 * width, stride=2)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)
        )

    def forward(self, x):
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))


def _stage(in_planes, planes, stride):
    return nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's layout and names (11.17M parameters, 62 tensors for 10 classes).

    Blocks are the top-level children ``layer1`` .. ``layer4``, as in the RWC paper's figures.
    """

    def __init__(self, num_classes=10, in_channels=3, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes = [width, width * 2, width * 4, width * 8]
        self.layer1 = _stage(width, planes[0], 1)
        self.layer2 = _stage(planes[0], planes[1], 2)
        self.layer3 = _stage(planes[1], planes[2], 2)
        self.layer4 = _stage(planes[2], planes[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3], num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(**kwargs):
    return ResNet18(**kwargs)
