"""Reading microscopy and photo images into C x H x W arrays, normalising them, and 8-bit previews.

PNG and JPEG go through Pillow, TIFF through tifffile (with imagecodecs for its compressions).
8 and 16 bit, grey, RGB and multichannel. Every array here is channels-first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from segpipe.models.trainer_io import Normalization
from segpipe_trainer import atomic
from segpipe_trainer.errors import TrainerError

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".btf", ".tf8", ".tf2"})
#: Percentiles are computed on at most this many values per channel (a regular subsample).
PERCENTILE_SAMPLES = 1 << 22
PREVIEW_MAX_SIDE = 1024
#: The most bytes one image may take once decoded (width x height x channels x bytes per sample),
#: checked from the file's header before any pixel is read.
MAX_IMAGE_BYTES = 2 * 1024**3


class ImageReadError(TrainerError):
    """An image file is missing, unreadable, or not what annotations.json says it is."""

    @classmethod
    def of(cls, file_name: str, reason: str) -> ImageReadError:
        return cls(f"Image '{file_name}' could not be read: {reason}")


def read_image(path: Path, *, file_name: str | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """The pixels of `path` as C x H x W, in the file's own dtype (RGBA loses its alpha channel).

    An image whose header says it would decode to more than `max_bytes` is refused unread.
    """
    name = file_name or path.name
    if not path.is_file():
        raise ImageReadError.of(name, "the file is not in the dataset")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            pixels = _read_tiff(path, name=name, max_bytes=max_bytes)
        else:
            pixels = _read_pillow(path, name=name, max_bytes=max_bytes)
    except ImageReadError:
        raise
    except Exception as exc:  # every decoder raises its own types; all mean "unreadable"
        raise ImageReadError.of(name, f"{type(exc).__name__}: {exc}") from exc
    if pixels.ndim != 3 or min(pixels.shape) == 0:
        raise ImageReadError.of(name, f"unexpected pixel array shape {pixels.shape}")
    if pixels.dtype.kind not in "uifb":
        raise ImageReadError.of(name, f"unsupported pixel type {pixels.dtype}")
    return pixels


def _check_decoded_size(name: str, *, shape: tuple[int, ...], sample_bytes: int, max_bytes: int) -> None:
    decoded = int(np.prod(shape, dtype=np.int64)) * sample_bytes
    if decoded > max_bytes:
        dimensions = " x ".join(str(size) for size in shape)
        raise ImageReadError.of(
            name,
            f"it would take {decoded} bytes once decoded ({dimensions} samples of {sample_bytes} bytes), "
            f"more than the {max_bytes} bytes the trainer reads per image; split it into smaller tiles",
        )


def _read_tiff(path: Path, *, name: str, max_bytes: int) -> np.ndarray:
    """Y and X of the first series go last; every other axis (C, S, Z, T, ...) becomes a channel."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        _check_decoded_size(
            name, shape=tuple(series.shape), sample_bytes=series.dtype.itemsize, max_bytes=max_bytes
        )
        pixels = series.asarray()
    if "Y" in axes and "X" in axes:
        others = [i for i, axis in enumerate(axes) if axis not in "YX"]
        pixels = np.transpose(pixels, [*others, axes.index("Y"), axes.index("X")])
    elif pixels.ndim == 3 and pixels.shape[-1] <= 4:
        pixels = np.moveaxis(pixels, -1, 0)
    return pixels.reshape(-1, *pixels.shape[-2:])


def _pillow_sample_bytes(mode: str) -> int:
    """Bytes per sample once decoded (an upper bound for packed and palette modes)."""
    if mode in {"I", "F"}:
        return 4
    return 2 if mode.startswith("I;16") else 1


def _read_pillow(path: Path, *, name: str, max_bytes: int) -> np.ndarray:
    with Image.open(path) as image:  # reads the header only; pixels are decoded by load()
        grey = image.mode in {"1", "L", "LA", "I", "F"} or image.mode.startswith("I;16")
        bands = max(len(image.getbands()), 1 if grey else 3)  # colour is decoded, then made RGB
        _check_decoded_size(
            name,
            shape=(image.height, image.width, bands),
            sample_bytes=_pillow_sample_bytes(image.mode),
            max_bytes=max_bytes,
        )
        image.load()
        converted = _pillow_mode(image)
        pixels = np.asarray(converted)
    if pixels.ndim == 2:
        return pixels[np.newaxis]
    return np.moveaxis(pixels, -1, 0)


def _pillow_mode(image: Image.Image) -> Image.Image:
    """Grey stays grey (8, 16, 32 bit, float), colour becomes RGB."""
    if image.mode in {"L", "I", "F"} or image.mode.startswith("I;16"):
        return image
    if image.mode in {"1", "LA"}:
        return image.convert("L")
    return image.convert("RGB")


def check_size(pixels: np.ndarray, *, file_name: str, width: int, height: int) -> None:
    """The manifest's width and height must be the file's, or annotations would be misplaced."""
    actual_height, actual_width = pixels.shape[-2:]
    if (actual_width, actual_height) != (width, height):
        raise ImageReadError.of(
            file_name,
            f"it is {actual_width}x{actual_height} pixels but annotations.json says {width}x{height}",
        )


def normalize(pixels: np.ndarray, *, normalization: Normalization) -> np.ndarray:
    """Percentile normalisation: C x H x W (any dtype) -> float32 C x H x W, low percentile at 0, high at 1.

    Per channel, or over all channels at once when `normalization.per_channel` is false. A flat
    channel becomes all zeros. Values outside the percentiles are kept (not clipped).
    """
    image = pixels.astype(np.float32, copy=False)
    groups = [image[c : c + 1] for c in range(image.shape[0])] if normalization.per_channel else [image]
    out = np.empty_like(image, dtype=np.float32)
    start = 0
    for group in groups:
        low, high = _percentiles(group, low=normalization.low, high=normalization.high)
        scale = 1.0 / (high - low) if high > low else 0.0
        out[start : start + group.shape[0]] = (group - low) * scale
        start += group.shape[0]
    return out


def _percentiles(values: np.ndarray, *, low: float, high: float) -> tuple[float, float]:
    flat = values.reshape(-1)
    step = max(1, flat.size // PERCENTILE_SAMPLES)
    sample = flat[::step]
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


def match_channels(image: np.ndarray, *, channels: int) -> np.ndarray:
    """C x H x W -> `channels` x H x W: grey is repeated, extra channels dropped, missing ones zero."""
    have = image.shape[0]
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=0)
    if have > channels:
        return image[:channels]
    pad = np.zeros((channels - have, *image.shape[1:]), dtype=image.dtype)
    return np.concatenate([image, pad], axis=0)


def preview(image: np.ndarray, *, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """An 8-bit grey or RGB picture of a normalised C x H x W image, downscaled to `max_side` at most.

    One channel is grey; two become red and green; three or more show the first three as RGB.
    """
    scaled = np.clip(np.nan_to_num(image[:3], nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scaled.shape[0] == 1:
        picture = Image.fromarray(scaled[0])
    else:
        rgb = match_channels(scaled, channels=3) if scaled.shape[0] == 3 else _two_channels(scaled)
        picture = Image.fromarray(np.ascontiguousarray(np.moveaxis(rgb, 0, -1)))
    long_side = max(picture.size)
    if long_side > max_side:
        factor = max_side / long_side
        size = (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
        picture = picture.resize(size, Image.Resampling.BOX)
    return picture


def _two_channels(scaled: np.ndarray) -> np.ndarray:
    return np.concatenate([scaled, np.zeros((1, *scaled.shape[1:]), dtype=np.uint8)], axis=0)


def write_preview(image: np.ndarray, *, path: Path, max_side: int = PREVIEW_MAX_SIDE) -> None:
    """Write `preview(image)` as a PNG (atomically)."""
    with atomic.atomic_path(path) as temporary:
        preview(image, max_side=max_side).save(temporary, format="PNG", optimize=False)
