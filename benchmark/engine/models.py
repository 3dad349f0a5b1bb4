"""Classifier architectures, looked up by name.

Offline presets use small models trained in seconds on a CPU (``small_cnn``, ``mlp``); paper-scale
presets use ResNet-18 with the CIFAR stem and VGG-19 (batch-norm) from timm, as in README.md, Presets.

Every model exposes ``features(x)`` (penultimate features) and ``head`` (the last linear layer) so that
methods needing either (TRW's class representations, Boundary Expanding's extra neuron) work on any of
them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmark.core.registry import Registry

ModelBuilder = Callable[..., nn.Module]


def _check_builder(builder: object) -> None:
    if not callable(builder):
        raise TypeError(f"{builder!r} is not a model builder (a callable returning an nn.Module)")


MODELS: Registry[ModelBuilder] = Registry("model", check=_check_builder)
# Convolutional models that train in channels-last layout: on CPU (oneDNN) a small_cnn step on 28x28 MNIST is
# about 1.5-1.8x faster that way (`bench perf`, figure j). The layout changes the last bits of every weight,
# so it is part of the model's cache key (model_layout).
_CHANNELS_LAST: set[str] = set()


def register_model(name: str, *, channels_last: bool = False) -> Callable[[ModelBuilder], ModelBuilder]:
    """``@register_model("name")`` adds a builder taking ``num_classes``, ``in_channels`` and ``image_size``.

    Args:
        name: the model's key.
        channels_last: build the model's weights, and feed its inputs, in channels-last memory layout (for a
            :class:`Classifier`; other modules get channels-last weights only).
    """
    register = MODELS.decorator(name)

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        register(builder)
        if channels_last:
            _CHANNELS_LAST.add(name)
        return builder
    return decorate


def model_layout(name: str) -> dict[str, str]:
    """What of model ``name``'s memory layout enters cache keys: nothing for the default layout (so that keys
    written before layouts existed stay valid), ``{"memory_format": "channels_last"}`` otherwise."""
    return {"memory_format": "channels_last"} if name in _CHANNELS_LAST else {}


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build a freshly initialised model (seed the RNG first for a reproducible init).

    Args:
        name: a key of :data:`MODELS` (``small_cnn``, ``mlp``, ``resnet18``, ``vgg19``).
        num_classes: output classes.
        in_channels: image channels.
        image_size: image height (= width).
    """
    model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    if name in _CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
        if isinstance(model, Classifier):
            model.channels_last = True
    return model


class Classifier(nn.Module):
    """A feature extractor followed by one linear head: the shape every model here shares."""

    channels_last = False  # set by build_model for models registered channels-last: inputs follow the weights

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register_model("small_cnn", channels_last=True)
def small_cnn(*, num_classes: int, in_channels: int, image_size: int, width: int = 16) -> Classifier:
    """Three conv blocks and a global pool: about 14k weights, 97%+ on the offline presets in seconds."""
    body = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),  # 28x28 MNIST -> 14x14, 8x8 digits -> 4x4
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2) if image_size >= 16 else nn.Identity(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return Classifier(body, 2 * width, num_classes)


@register_model("mlp")
def mlp(*, num_classes: int, in_channels: int, image_size: int, hidden: int = 256) -> Classifier:
    body = nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden // 2), nn.ReLU(),
    )
    return Classifier(body, hidden // 2, num_classes)


class TimmClassifier(nn.Module):
    """A timm model seen through the same ``features`` / ``head`` surface as :class:`Classifier`."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @property
    def head(self) -> nn.Linear:
        return self.net.get_classifier()

    def features(self, x: Tensor) -> Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register_model("resnet18")
def resnet18(*, num_classes: int, in_channels: int, image_size: int) -> TimmClassifier:
    """ResNet-18 with the CIFAR stem (3x3 stride-1 first conv, no max-pool) for small images."""
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, in_chans=in_channels)
    if image_size <= 64:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return TimmClassifier(net)


@register_model("vgg19")
def vgg19(*, num_classes: int, in_channels: int, image_size: int) -> TimmClassifier:
    """VGG-19 with batch norm (timm ``vgg19_bn``)."""
    import timm

    net = timm.create_model("vgg19_bn", pretrained=False, num_classes=num_classes, in_chans=in_channels)
    return TimmClassifier(net)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """Logits of ``model`` in eval mode, batched, on the model's device; returned on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


class FastBlock(nn.Module):
    """One stage of :func:`fast_resnet`: conv, 2x2 max-pool, batch norm, GELU, then a residual conv-BN-GELU.

    Pooling straight after the first conv (before the norm) runs every later layer of the stage at a quarter
    of the pixels, which keeps the network cheap; the residual branch gives each stage a second conv of depth
    without making the short schedule's optimisation harder.
    """

    def __init__(self, c_in: int, c_out: int, pool: bool = True) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2) if pool else nn.Identity(),
            nn.BatchNorm2d(c_out), nn.GELU(),
        )
        self.residual = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                      nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        return x + self.residual(x)


@register_model("fast_resnet", channels_last=True)
def fast_resnet(*, num_classes: int, in_channels: int, image_size: int, stem: int = 32,
                widths: tuple[int, ...] = (64, 256, 256)) -> Classifier:
    """A small residual net for fast CIFAR-10 training (preset ``cifar10_fast``).

    After the idea of the fast-training recipes (airbench, Jordan 2024, arXiv 2404.00498): a conv stem, then
    three stages that each halve the resolution (32 -> 16 -> 8 -> 4) with widths 64-256-256, a global
    max-pool and one linear head: 1.98M weights and 0.15G multiply-adds per 32x32 image (ResNet-18: 11.2M
    and 0.56G), so that ten epochs at batch 512 replace the paper recipe's two hundred at 128. This is
    its own small design (:class:`FastBlock`), not airbench's code: a plain 3x3 stem (no whitening), no frozen norm
    weights, no logit scaling, PyTorch's default initialisation throughout (so ``retrain``'s
    re-initialisation gives the same distribution as a fresh build) and no dropout (bank models can then
    train as one group when augmentation is off). Images smaller than 8x8 skip the pools they cannot take.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.GELU()]
    size, width = image_size, stem
    for out in widths:
        layers.append(FastBlock(width, out, pool=size >= 2))
        size, width = size // 2 if size >= 2 else size, out
    body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
    return Classifier(body, width, num_classes)
