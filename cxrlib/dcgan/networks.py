"""DCGAN (Radford et al. 2016) in the layout of the PyTorch DCGAN tutorial, as the study uses it.

At 64x64 (the study's size), with nz=100 and ngf=ndf=64:

    Generator      z (N, 100, 1, 1)
      ConvT 4x4 s1 p0 -> (N, 512, 4, 4)   BN ReLU
      ConvT 4x4 s2 p1 -> (N, 256, 8, 8)   BN ReLU
      ConvT 4x4 s2 p1 -> (N, 128, 16, 16) BN ReLU
      ConvT 4x4 s2 p1 -> (N, 64, 32, 32)  BN ReLU
      ConvT 4x4 s2 p1 -> (N, C, 64, 64)   tanh          C = 1 (gray) or 3 (gray repeated)

    Discriminator  x (N, C, 64, 64)
      Conv 4x4 s2 p1  -> (N, 64, 32, 32)  LeakyReLU(0.2)       (no BN on the input layer)
      Conv 4x4 s2 p1  -> (N, 128, 16, 16) BN LeakyReLU(0.2)
      Conv 4x4 s2 p1  -> (N, 256, 8, 8)   BN LeakyReLU(0.2)
      Conv 4x4 s2 p1  -> (N, 512, 4, 4)   BN LeakyReLU(0.2)
      Conv 4x4 s1 p0  -> (N,)             logit; sigmoid(logit) = P(real)

Other sizes add or drop one stride-2 stage per factor of two (32 for tiny tests, 128), the
channel width doubling per stage away from the image as above. The discriminator returns the
logit rather than the sigmoid: training uses `BCEWithLogits`, the same loss computed without
the overflow of log(sigmoid); the architecture is unchanged. Convolutions carry no bias (BN
follows them, or they are the output layer, as in the tutorial).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from cxrlib.dcgan.settings import CHANNELS, IMAGE_SIZES


def _stages(image_size: int) -> int:
    """Number of stride-2 (de)convolutions between 4x4 and `image_size` (64 -> 4)."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
    return int(math.log2(image_size)) - 2


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    """Double the side: ConvT 4x4 stride 2 + BN + ReLU."""
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _down(c_in: int, c_out: int, norm: bool) -> list[nn.Module]:
    """Halve the side: Conv 4x4 stride 2 (+ BN) + LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    return [*layers, nn.LeakyReLU(0.2)]


class Generator(nn.Module):
    """z (N, nz, 1, 1) -> images (N, channels, image_size, image_size) in [-1, 1]."""

    def __init__(
        self,
        nz: int = 100,  # latent dimension
        ngf: int = 64,  # feature maps in the last hidden layer (doubling towards z)
        channels: int = 1,  # 1 = grayscale, 3 = the gray image repeated (the study's RGB)
        image_size: int = 64,  # side length of the output, 32, 64 or 128
    ):
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {channels}")
        stages = _stages(image_size)
        self.nz, self.ngf, self.channels, self.image_size = nz, ngf, channels, image_size
        widths = [ngf * 2 ** (stages - 1 - i) for i in range(stages)]  # 64 px: 512 256 128 64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in pairwise(widths):
            layers += _up(c_in, c_out)
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def kwargs(self) -> dict[str, int]:
        """Constructor arguments, plain Python: what a snapshot stores to rebuild the network."""
        return {
            "nz": self.nz,
            "ngf": self.ngf,
            "channels": self.channels,
            "image_size": self.image_size,
        }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 4 or z.shape[1:] != (self.nz, 1, 1):
            raise ValueError(f"z must be (N, {self.nz}, 1, 1), got {tuple(z.shape)}")
        return self.main(z)

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator, **options: Any) -> torch.Tensor:
        """`n` images (n, C, H, W) float32 in [-1, 1] from latents drawn from `rng` (CPU).

        z is drawn on the CPU, so a seed gives the same images on any device. The network
        runs in eval mode (BN with its running statistics), so an image depends only on its
        own z, not on the batch around it; the module's mode is restored afterwards. Option
        `batch_size` bounds memory by running the network in chunks of that many latents.
        """
        batch_size = int(options.pop("batch_size", 0) or max(n, 1))
        if options:
            raise TypeError(f"DCGAN sample() got unknown options: {', '.join(sorted(options))}")
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got {n} and {batch_size}")
        param = next(self.parameters())
        z = torch.randn(n, self.nz, 1, 1, generator=rng)
        was_training = self.training
        self.eval()
        try:
            chunks = [self(c.to(param.device, param.dtype)).float() for c in z.split(batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(chunks)


class Discriminator(nn.Module):
    """images (N, channels, image_size, image_size) -> logits (N,), sigmoid = P(real)."""

    def __init__(
        self,
        ndf: int = 64,  # feature maps in the first layer (doubling towards the output)
        channels: int = 1,  # input channels, as the generator's
        image_size: int = 64,  # input side length, 32, 64 or 128
    ):
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {channels}")
        stages = _stages(image_size)
        self.channels, self.image_size = channels, image_size
        widths = [ndf * 2**i for i in range(stages)]  # 64 px: 64 128 256 512
        layers = _down(channels, widths[0], norm=False)
        for c_in, c_out in pairwise(widths):
            layers += _down(c_in, c_out, norm=True)
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or x.shape[1:] != expected:
            raise ValueError(f"images must be (N, {', '.join(map(str, expected))}), got {x.shape}")
        return self.main(x).flatten()


def init_weights(module: nn.Module, rng: torch.Generator | None = None) -> None:
    """DCGAN init: conv weights N(0, 0.02), BN weight N(1, 0.02), BN bias 0.

    `rng` makes the init reproducible without touching the global RNG (training passes a
    seeded generator); None draws from the global RNG.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=rng)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=rng)
            nn.init.zeros_(m.bias)
