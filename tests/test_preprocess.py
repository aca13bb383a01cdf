"""Histogram normalisation and resizing, checked numerically."""

import numpy as np
import pytest

from cxrlib.data.preprocess import (
    PreprocessSettings,
    equalisation_lut,
    normalise_intensity,
    preprocess_pixels,
    resize_bilinear,
)


def _gradient(h: int = 120, w: int = 90, dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.linspace(0, top // 3, h * w).reshape(h, w).astype(dtype)


def test_equalisation_spreads_a_narrow_histogram_over_the_full_range() -> None:
    img = _gradient()  # values 0..85 only
    out, hist = normalise_intensity(img, PreprocessSettings(normalisation="equalize"))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out.min() == 0 and out.max() == 255
    assert hist.sum() == img.size and hist[86:].sum() == 0
    # equalised levels of a uniform ramp are close to uniform: each quarter of the range holds ~25%
    quarters = np.histogram(out, bins=4, range=(0, 256))[0] / out.size
    assert np.allclose(quarters, 0.25, atol=0.03)
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # monotone mapping keeps order


def test_equalisation_lut_handles_constant_and_empty_histograms() -> None:
    hist = np.zeros(256, dtype=np.int64)
    assert not equalisation_lut(hist).any()
    hist[17] = 100
    assert not equalisation_lut(hist).any()


def test_sixteen_bit_input_is_equalised_on_its_own_levels() -> None:
    img = _gradient(dtype=np.uint16)  # 0..21845
    out, hist = normalise_intensity(img, PreprocessSettings(normalisation="equalize"))
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert hist.shape == (256,) and hist.sum() == img.size
    none, _ = normalise_intensity(img, PreprocessSettings(normalisation="none"))
    assert none.max() == 21845 >> 8  # "none" only maps bit depth


def test_none_leaves_8bit_pixels_untouched() -> None:
    img = _gradient()
    out, _ = normalise_intensity(img, PreprocessSettings(normalisation="none"))
    assert np.array_equal(out, img)


def test_clahe_raises_local_contrast() -> None:
    rng = np.random.default_rng(0)
    img = (100 + 10 * rng.random((128, 128))).astype(np.uint8)
    img[:, 64:] += 60
    out, _ = normalise_intensity(img, PreprocessSettings(normalisation="clahe"))
    assert out.dtype == np.uint8
    assert out[:, :64].std() > 2 * img[:, :64].std()


def test_resize_is_bilinear_and_square() -> None:
    img = np.zeros((300, 200), dtype=np.uint8)
    img[:, 100:] = 200
    out = resize_bilinear(img, 64)
    assert out.shape == (64, 64)
    assert out[:, 0].max() == 0 and out[:, -1].min() == 200
    # the edge is blended, not nearest-neighbour
    assert ((out > 0) & (out < 200)).any()


def test_preprocess_pixels_returns_both_histograms() -> None:
    prepared = preprocess_pixels(_gradient(), PreprocessSettings(size=32))
    assert prepared.image.shape == (32, 32)
    assert prepared.hist_after.sum() == 32 * 32
    assert prepared.hist_before.sum() == 120 * 90


@pytest.mark.parametrize("normalisation", ["equalize", "none"])
@pytest.mark.parametrize("shape", [(517, 389), (64, 64), (3, 700)])
def test_one_image_fast_path_equals_the_stepwise_preparation(normalisation, shape) -> None:
    # preprocess_pixels keeps 8-bit images in one PIL image; the result must be exactly the
    # stepwise normalise_intensity + resize_bilinear (+ numpy histograms) of the other inputs.
    rng = np.random.default_rng(shape[0])
    pixels = (rng.normal(90, 25, shape).clip(0, 255)).astype(np.uint8)
    settings = PreprocessSettings(size=48, normalisation=normalisation)
    prepared = preprocess_pixels(pixels, settings)
    normalised, hist_before = normalise_intensity(pixels, settings)
    image = resize_bilinear(normalised, settings.size)
    np.testing.assert_array_equal(prepared.image, image)
    np.testing.assert_array_equal(prepared.hist_before, hist_before)
    np.testing.assert_array_equal(prepared.hist_after, np.bincount(image.ravel(), minlength=256))
    np.testing.assert_array_equal(hist_before, np.bincount(pixels.ravel(), minlength=256))


@pytest.mark.parametrize("kwargs", [{"normalisation": "histeq"}, {"size": 4}])
def test_bad_settings_are_rejected(kwargs) -> None:
    with pytest.raises(ValueError, match="preprocess"):
        PreprocessSettings(**kwargs)


def test_jpeg_draft_decode_is_faster_work_and_close_to_a_full_decode(tmp_path) -> None:
    """DCT-scaled decoding of a large JPEG changes the prepared image by rounding only."""
    from PIL import Image

    from cxrlib.data.phantom import render_radiograph
    from cxrlib.data.readers import read_image

    path = tmp_path / "big.jpeg"
    Image.fromarray(render_radiograph(np.random.default_rng(3), 1100, 1000, True)).save(
        path, "JPEG", quality=90
    )
    settings = PreprocessSettings(size=128)
    full = read_image(path)
    draft = read_image(path, draft_min_side=settings.draft_min_side)
    assert full.decode_scale == 1.0 and draft.decode_scale == 0.5
    assert (draft.width, draft.height) == (full.width, full.height) == (1000, 1100)
    assert draft.pixels.shape == (550, 500)  # 1/4 would be 250 px < 2 x 128
    a = preprocess_pixels(full.pixels, settings).image.astype(int)
    b = preprocess_pixels(draft.pixels, settings).image.astype(int)
    assert np.abs(a - b).mean() < 1.5 and np.percentile(np.abs(a - b), 99) <= 6
    assert PreprocessSettings(size=128, jpeg_draft=False).draft_min_side is None
