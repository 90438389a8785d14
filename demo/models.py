"""Small reference models used by the demo, the tests and the benchmarks.

Written here rather than imported from torchvision, which is optional (its PyPI wheels do not
import on a CPU-only torch).
"""

from torch import nn


def mlp(in_features=784, hidden=(512, 256), num_classes=10):
    """A multilayer perceptron, 784-512-256-10 by default (536K parameters, 6 tensors)."""
    layers = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class LeNet5(nn.Module):
    """LeNet-5 for 1x32x32 inputs (61.7K parameters with 5x5 kernels, 10 tensors).

    ``kernel_size=3`` gives the variant of Nemcova's thesis (conv1 60, conv2 880, fc1 69240,
    fc2 10164, fc3 850 parameters).
    """

    def __init__(self, num_classes=10, kernel_size=5, in_channels=1, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size)
        self.conv2 = nn.Conv2d(6, 16, kernel_size)
        side = ((image_size - kernel_size + 1) // 2 - kernel_size + 1) // 2
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
        self.layer1 = self._stage(width, planes[0], 1)
        self.layer2 = self._stage(planes[0], planes[1], 2)
        self.layer3 = self._stage(planes[1], planes[2], 2)
        self.layer4 = self._stage(planes[2], planes[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3], num_classes)

    @staticmethod
    def _stage(in_planes, planes, stride):
        return nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(**kwargs):
    return ResNet18(**kwargs)
