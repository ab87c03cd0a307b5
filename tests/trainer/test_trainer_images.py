"""Reading PNG, JPEG and TIFF (8/16 bit, grey, RGB, multichannel), normalising, and previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from segpipe.models.trainer_io import Normalization
from segpipe_trainer.images import (
    ImageReadError,
    check_size,
    match_channels,
    normalize,
    preview,
    read_image,
    write_preview,
)

RNG = np.random.default_rng(0)


def _grey8() -> np.ndarray:
    return RNG.integers(0, 256, size=(24, 40), dtype=np.uint8)


def _grey16() -> np.ndarray:
    return RNG.integers(0, 65536, size=(24, 40), dtype=np.uint16)


def _rgb8() -> np.ndarray:
    return RNG.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("name", "pixels", "expected"),
    [
        ("grey.png", _grey8(), lambda a: a[None]),
        ("grey16.png", _grey16(), lambda a: a[None]),
        ("rgb.png", _rgb8(), lambda a: np.moveaxis(a, -1, 0)),
        ("grey.tif", _grey16(), lambda a: a[None]),
        ("rgb.tif", _rgb8(), lambda a: np.moveaxis(a, -1, 0)),
    ],
)
def test_lossless_files_read_back_exactly_channels_first(
    tmp_path: Path, name: str, pixels: np.ndarray, expected: object
) -> None:
    path = tmp_path / name
    if name.endswith(".png"):
        Image.fromarray(pixels).save(path)
    else:
        tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")

    read = read_image(path)

    want = expected(pixels)  # type: ignore[operator]
    assert read.dtype == pixels.dtype
    np.testing.assert_array_equal(read, want)


def test_multichannel_tiff_keeps_every_channel(tmp_path: Path) -> None:
    stack = RNG.integers(0, 4096, size=(5, 24, 40), dtype=np.uint16)
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "CYX"})

    np.testing.assert_array_equal(read_image(path), stack)


def test_compressed_float_tiff(tmp_path: Path) -> None:
    pixels = RNG.random((3, 20, 30), dtype=np.float32)
    path = tmp_path / "float.tiff"
    tifffile.imwrite(path, pixels, compression="zlib", photometric="minisblack", metadata={"axes": "CYX"})

    np.testing.assert_array_equal(read_image(path), pixels)


def test_jpeg_and_rgba_png_become_rgb(tmp_path: Path) -> None:
    Image.fromarray(_rgb8()).save(tmp_path / "photo.jpg", quality=95)
    Image.fromarray(RNG.integers(0, 256, size=(24, 40, 4), dtype=np.uint8)).save(tmp_path / "rgba.png")

    assert read_image(tmp_path / "photo.jpg").shape == (3, 24, 40)
    assert read_image(tmp_path / "rgba.png").shape == (3, 24, 40)


def test_a_corrupt_file_is_one_clear_sentence(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.tif"
    path.parent.mkdir()
    path.write_bytes(b"II*\x00 this is not a tiff")

    with pytest.raises(ImageReadError) as caught:
        read_image(path, file_name="a/b.tif")

    assert str(caught.value).startswith("Image 'a/b.tif' could not be read: ")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ImageReadError, match=r"'gone\.png' could not be read: the file is not in the dataset"
    ):
        read_image(tmp_path / "gone.png", file_name="gone.png")


def test_size_must_match_the_manifest() -> None:
    pixels = np.zeros((1, 24, 40))

    check_size(pixels, file_name="x.png", width=40, height=24)
    with pytest.raises(ImageReadError, match=r"40x24 pixels but annotations\.json says 24x40"):
        check_size(pixels, file_name="x.png", width=24, height=40)


def test_normalisation_matches_numpy_percentiles_per_channel() -> None:
    pixels = np.stack([RNG.normal(100, 10, (50, 60)), RNG.normal(3000, 500, (50, 60))]).astype(np.uint16)

    out = normalize(pixels, normalization=Normalization(low=2, high=98))

    for channel in range(2):
        low, high = np.percentile(pixels[channel].astype(np.float32), [2, 98])
        expected = (pixels[channel].astype(np.float32) - low) / (high - low)
        np.testing.assert_allclose(out[channel], expected, rtol=1e-5, atol=1e-5)


def test_joint_normalisation_uses_one_scale_for_all_channels() -> None:
    pixels = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 20.0)])

    out = normalize(pixels, normalization=Normalization(low=0, high=100, per_channel=False))

    np.testing.assert_allclose(out, np.stack([np.zeros((4, 4)), np.ones((4, 4))]))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint16, st.tuples(st.integers(1, 3), st.integers(2, 12), st.integers(2, 12))))
def test_normalised_values_are_finite_and_flat_channels_are_zero(pixels: np.ndarray) -> None:
    out = normalize(pixels, normalization=Normalization())

    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    for channel in range(pixels.shape[0]):
        if pixels[channel].min() == pixels[channel].max():
            assert not out[channel].any()


@pytest.mark.parametrize(("have", "want"), [(1, 3), (3, 3), (4, 3), (2, 3), (3, 1)])
def test_channels_are_matched_to_the_model(have: int, want: int) -> None:
    image = RNG.random((have, 5, 6)).astype(np.float32)

    out = match_channels(image, channels=want)

    assert out.shape == (want, 5, 6)
    shared = min(have, want)
    if have == 1:
        assert all(np.array_equal(out[c], image[0]) for c in range(want))
    else:
        np.testing.assert_array_equal(out[:shared], image[:shared])
        assert not out[shared:].any()


def test_preview_of_a_large_sixteen_bit_image_is_downscaled_eight_bit(tmp_path: Path) -> None:
    image = normalize(_grey16()[None].repeat(50, axis=1), normalization=Normalization())  # 1 x 1200 x 40

    write_preview(image, path=tmp_path / "p.png")

    with Image.open(tmp_path / "p.png") as written:
        assert written.mode == "L"
        assert written.size == (34, 1024)


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "RGB"), (3, "RGB"), (5, "RGB")])
def test_preview_modes(channels: int, mode: str) -> None:
    image = RNG.random((channels, 16, 20)).astype(np.float32)

    picture = preview(image)

    assert (picture.mode, picture.size) == (mode, (20, 16))
    pixels = np.asarray(picture)
    if channels == 2:
        assert not pixels[..., 2].any()
    np.testing.assert_array_equal(
        pixels if channels == 1 else pixels[..., 0], np.clip(image[0] * 255 + 0.5, 0, 255).astype(np.uint8)
    )
