"""Intensity normalisation and resizing, as the study prepares its images.

Order follows the study: histogram normalisation on the full-resolution image, then a bilinear
resize to a square `size`, stored as 8-bit grayscale. Everything stays uint8 in PIL where it can
(histogram, lookup table, resize are C loops there), because this runs on thousands of
1-2 Mpx images and the decode already dominates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Normalisation = Literal["equalize", "clahe", "none"]
NORMALISATIONS: tuple[str, ...] = ("equalize", "clahe", "none")


@dataclass(frozen=True)
class PreprocessSettings:
    """How images are normalised and resized (config section `preprocess`)."""

    size: int = 256  # output side length in px (square, as the study's models expect)
    normalisation: Normalisation = "equalize"  # global histogram equalisation, CLAHE or none
    clahe_clip_limit: float = 0.01  # CLAHE contrast limit (skimage's clip_limit, 0-1)
    clahe_kernel_fraction: float = 0.125  # CLAHE tile size as a fraction of the shorter side
    jpeg_draft: bool = True  # decode large JPEGs at a DCT scale that keeps >= 2 * size px

    @property
    def draft_min_side(self) -> int | None:
        """Smallest side a JPEG may be decoded at (None: always full resolution).

        Twice the output size keeps the bilinear resize's input well above its output, so the
        prepared image differs from a full decode by rounding only (tests bound it).
        """
        return 2 * self.size if self.jpeg_draft else None

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"preprocess.normalisation must be one of {', '.join(NORMALISATIONS)}, "
                f"not {self.normalisation!r}"
            )
        if self.size < 8:
            raise ValueError(f"preprocess.size must be at least 8 px, not {self.size}")


@dataclass(frozen=True)
class PreparedPixels:
    """One prepared image and the intensity histograms the data QC plots."""

    image: np.ndarray  # (size, size) uint8
    hist_before: np.ndarray  # (256,) int64: the decoded image on an 8-bit scale
    hist_after: np.ndarray  # (256,) int64: the prepared image


def equalisation_lut(hist: np.ndarray) -> np.ndarray:
    """Lookup table (uint8, len(hist)) mapping levels so the cumulative histogram is linear.

    The lowest occupied level maps to 0 and the highest to 255, the classic global histogram
    equalisation. A constant image (one occupied level) maps to 0 rather than dividing by zero.
    """
    cdf = np.cumsum(hist, dtype=np.int64)
    occupied = np.flatnonzero(hist)
    if occupied.size == 0:
        return np.zeros(len(hist), dtype=np.uint8)
    cdf_min = cdf[occupied[0]]
    total = cdf[-1]
    if total == cdf_min:
        return np.zeros(len(hist), dtype=np.uint8)
    scaled = (cdf - cdf_min).clip(min=0) * 255.0 / (total - cdf_min)
    return np.rint(scaled).astype(np.uint8)


def _to_8bit_hist(pixels: np.ndarray, hist: np.ndarray) -> np.ndarray:
    """A 256-bin histogram of the image on an 8-bit scale, from its native histogram."""
    if pixels.dtype == np.uint8:
        return hist.astype(np.int64)
    return hist.reshape(256, -1).sum(axis=1).astype(np.int64)


def _native_hist(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels).histogram(), dtype=np.int64)
    return np.bincount(pixels.ravel(), minlength=65536).astype(np.int64)


def _clahe(pixels: np.ndarray, settings: PreprocessSettings) -> np.ndarray:
    from skimage.exposure import equalize_adapthist  # import here: heavy, and optional

    scale = float(np.iinfo(pixels.dtype).max)
    kernel = max(8, round(min(pixels.shape) * settings.clahe_kernel_fraction))
    out = equalize_adapthist(
        pixels / scale, kernel_size=kernel, clip_limit=settings.clahe_clip_limit
    )
    return np.rint(out * 255.0).astype(np.uint8)


def normalise_intensity(
    pixels: np.ndarray, settings: PreprocessSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise a decoded grayscale image (uint8 or uint16) to a full-resolution uint8 image.

    Returns (normalised uint8 image, 256-bin histogram of the input on an 8-bit scale).
    `none` only rescales 16-bit data to 8 bits by its bit depth.
    """
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8/uint16 image, got {pixels.dtype} {pixels.shape}")
    hist = _native_hist(pixels)
    hist8 = _to_8bit_hist(pixels, hist)
    if settings.normalisation == "equalize" and pixels.dtype == np.uint8:
        # PIL's point() applies a lookup table about 3x faster than numpy fancy indexing.
        lut = equalisation_lut(hist).tolist()
        out = np.asarray(Image.fromarray(pixels).point(lut))
    elif settings.normalisation == "equalize":
        out = equalisation_lut(hist)[pixels]
    elif settings.normalisation == "clahe":
        out = _clahe(pixels, settings)
    elif pixels.dtype == np.uint16:
        out = (pixels >> 8).astype(np.uint8)
    else:
        out = pixels
    return out, hist8


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a uint8 image to (size, size).

    PIL widens the bilinear kernel when shrinking, so a 2000 px image is averaged rather than
    aliased on its way to 256 px.
    """
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def preprocess_pixels(pixels: np.ndarray, settings: PreprocessSettings) -> PreparedPixels:
    """Normalise then resize one decoded image; also return its before/after histograms."""
    if (
        pixels.ndim == 2
        and pixels.dtype == np.uint8
        and settings.normalisation in ("equalize", "none")
    ):
        # The common case (8-bit JPEG) in one PIL image from start to end, the same steps as
        # below without copying the decoded image into and out of numpy between them.
        im = Image.fromarray(pixels)  # shares the array's memory
        hist_before = np.asarray(im.histogram(), dtype=np.int64)
        if settings.normalisation == "equalize":
            im = im.point(equalisation_lut(hist_before).tolist())
        small = im.resize((settings.size, settings.size), Image.Resampling.BILINEAR)
        return PreparedPixels(
            image=np.asarray(small),
            hist_before=hist_before,
            hist_after=np.asarray(small.histogram(), dtype=np.int64),
        )
    normalised, hist_before = normalise_intensity(pixels, settings)
    image = resize_bilinear(normalised, settings.size)
    hist_after = np.bincount(image.ravel(), minlength=256).astype(np.int64)
    return PreparedPixels(image=image, hist_before=hist_before, hist_after=hist_after)
