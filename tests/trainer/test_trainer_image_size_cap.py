"""An image is measured from its header before its pixels are decoded; one too large is refused."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segpipe_trainer.images import MAX_IMAGE_BYTES, ImageReadError, read_image


def _png_header_only(path: Path, *, width: int, height: int) -> Path:
    """A PNG whose header claims `width` x `height` 8-bit grey pixels but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


def test_a_tiff_whose_header_is_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    # Given a (sparse) TIFF that says it holds 40000 x 40000 16-bit pixels: 3.2 GB decoded
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, shape=(40000, 40000), dtype=np.uint16)

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ImageReadError) as raised:
            read_image(path, file_name="slides/huge.tif")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    message = str(raised.value)
    assert message.startswith("Image 'slides/huge.tif' could not be read: it would take 3200000000 bytes")
    assert f"more than the {MAX_IMAGE_BYTES} bytes" in message
    assert peak < 16 * 1024 * 1024 and time.perf_counter() - started < 5


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_the_cap_counts_width_height_channels_and_bytes(tmp_path: Path, suffix: str) -> None:
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)  # 1800 bytes decoded
    path = tmp_path / f"rgb{suffix}"
    if suffix == ".png":
        Image.fromarray(pixels).save(path)
    else:
        tifffile.imwrite(path, pixels, photometric="rgb")

    assert read_image(path, max_bytes=1800).shape == (3, 20, 30)
    with pytest.raises(ImageReadError, match="1800 bytes once decoded"):
        read_image(path, max_bytes=1799)


def test_a_png_whose_header_is_over_the_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "wide.png", width=9000, height=9000)

    with pytest.raises(ImageReadError, match="81000000 bytes once decoded"):
        read_image(path, max_bytes=80_000_000)
