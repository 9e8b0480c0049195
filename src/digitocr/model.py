"""The networks: layers and forward only. Input (B, 1, 28, 28) floats in [0, 1]; output (B, 10) logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .constants import IMAGE_SIZE, NUM_CHANNELS
from .errors import DigitocrError

POOL = 2  # 2x2 max-pooling, stride 2


class SeedNet(nn.Module):
    """The notebook's CNN. Pooling comes before ReLU, as there (relu(maxpool(x)) == maxpool(relu(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # padding="same" == TensorFlow's SAME for odd kernels and stride 1
        self.conv1 = nn.Conv2d(NUM_CHANNELS, cfg.num_filters1, cfg.filter_size1, padding="same")
        self.conv2 = nn.Conv2d(cfg.num_filters1, cfg.num_filters2, cfg.filter_size2, padding="same")
        side = IMAGE_SIZE // POOL // POOL  # 7
        self.fc1 = nn.Linear(cfg.num_filters2 * side * side, cfg.fc_size)  # 1764 -> 128
        self.fc2 = nn.Linear(cfg.fc_size, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.cfg.init == "default":  # keep PyTorch's Kaiming-uniform weights and fan-in biases
            return
        # tf.truncated_normal(stddev) redraws values beyond two standard deviations
        std = self.cfg.init_std
        for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.constant_(layer.bias, self.cfg.init_bias)

    def conv_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two conv blocks' outputs, for the activation figures."""
        c1 = F.relu(F.max_pool2d(self.conv1(x), POOL))  # (B, 16, 14, 14)
        c2 = F.relu(F.max_pool2d(self.conv2(c1), POOL))  # (B, 36, 7, 7)
        return c1, c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c2 = self.conv_layers(x)
        h = F.relu(self.fc1(c2.flatten(1)))  # (B, 128)
        return self.fc2(h)  # (B, 10) logits; softmax lives in the loss


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class BestNet(nn.Module):
    """A stronger single network (after cdeotte's MNIST-CNN-99.75): small convs + BatchNorm, strided 5x5
    convs instead of pooling, dropout between stages."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        self.stage1 = nn.Sequential(  # (B, 1, 28, 28) -> (B, w1, 12, 12)
            _conv_bn(NUM_CHANNELS, w1, 3), _conv_bn(w1, w1, 3), _conv_bn(w1, w1, 5, stride=2, padding=2),
            nn.Dropout(cfg.dropout))
        self.stage2 = nn.Sequential(  # -> (B, w2, 4, 4)
            _conv_bn(w1, w2, 3), _conv_bn(w2, w2, 3), _conv_bn(w2, w2, 5, stride=2, padding=2),
            nn.Dropout(cfg.dropout))
        self.stage3 = nn.Sequential(_conv_bn(w2, w3, 4), nn.Flatten(), nn.Dropout(cfg.dropout))  # -> (B, w3)
        self.head = nn.Linear(w3, cfg.num_classes)

    def conv_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s1 = self.stage1(x)
        return s1, self.stage2(s1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage3(self.stage2(self.stage1(x))))


class SimpleNet(nn.Module):
    """An et al. 2020's simple CNN: unpadded k x k convs with BatchNorm, no pooling, so each conv shrinks the
    image by k - 1 (5x5: 28 -> 24 -> 20 -> 16 -> 12 -> 8), then flatten, BatchNorm and one linear layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        side = IMAGE_SIZE - len(cfg.channels) * (cfg.kernel - 1)
        if side < 1:
            raise DigitocrError(f"{len(cfg.channels)} convs of {cfg.kernel}x{cfg.kernel} leave no image")
        ins = (NUM_CHANNELS, *cfg.channels[:-1])
        self.convs = nn.Sequential(*(_conv_bn(a, b, cfg.kernel) for a, b in zip(ins, cfg.channels, strict=True)))
        flat = cfg.channels[-1] * side * side
        self.head = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(flat), nn.Linear(flat, cfg.num_classes))

    def conv_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1 = self.convs[0](x)
        return c1, self.convs[1:](c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x))  # (B, C, side, side) -> (B, 10)


ARCHS = {"seed": SeedNet, "best": BestNet, "simple": SimpleNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    return ARCHS[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
