"""Image headers read in pure Python agree with Pillow and tifffile, and never raise anything else."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segpipe.logic.image_headers import (
    HEADER_BYTES,
    HeaderBeyondHead,
    ImageHeader,
    UnreadableHeader,
    UnsupportedFormat,
    read_header,
)

#: Pillow mode -> (channels, bits per sample) as segpipe reports them.
PIL_MODES = {
    "1": (1, 1),
    "L": (1, 8),
    "LA": (2, 8),
    "RGB": (3, 8),
    "RGBA": (4, 8),
    "P": (3, 8),
    "I;16": (1, 16),
}


def pillow_bytes(mode: str, size: tuple[int, int], image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray, **options: Any) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def tiff_oracle(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, samples per pixel, bits per sample) of the first page, as tifffile reads it."""
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages.first
        return page.imagewidth, page.imagelength, page.samplesperpixel, page.bitspersample


@pytest.mark.parametrize("mode", sorted(PIL_MODES))
def test_png_headers_match_pillow(mode: str) -> None:
    # Given a PNG that Pillow writes in this mode
    data = pillow_bytes(mode, (37, 21), "PNG")

    # When its header is read
    header = read_header(data[:HEADER_BYTES])

    # Then size, channels and bit depth are Pillow's
    with Image.open(io.BytesIO(data)) as image:
        assert (header.width, header.height) == image.size
    assert header == ImageHeader("png", 37, 21, *PIL_MODES[mode])


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("CMYK", 4)])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_headers_match_pillow(mode: str, channels: int, progressive: bool) -> None:
    # Given a JPEG with EXIF data before its frame header
    exif = Image.Exif()
    exif[0x010E] = "segpipe test image " * 50  # ImageDescription: a long APP1 segment
    data = pillow_bytes(mode, (300, 201), "JPEG", progressive=progressive, exif=exif.tobytes())

    header = read_header(data[:HEADER_BYTES])

    assert header == ImageHeader("jpeg", 300, 201, channels, 8)


def test_a_jpeg_frame_past_the_head_is_reported_as_such() -> None:
    # Given a JPEG whose ICC profile (APP2 segments) pushes the frame header past 64 KiB
    data = pillow_bytes("RGB", (64, 48), "JPEG", icc_profile=b"\x00" * 100_000)

    # Then the head alone is not enough, and the whole file is
    with pytest.raises(HeaderBeyondHead):
        read_header(data[:HEADER_BYTES])
    assert read_header(data) == ImageHeader("jpeg", 64, 48, 3, 8)


@pytest.mark.parametrize(
    ("shape", "dtype", "options"),
    [
        ((33, 65), np.uint8, {}),
        ((33, 65), np.uint16, {"byteorder": ">"}),
        ((33, 65, 3), np.uint8, {"photometric": "rgb"}),
        ((33, 65, 5), np.uint16, {"photometric": "minisblack", "planarconfig": "contig"}),
        ((33, 65), np.float32, {"bigtiff": True}),
        ((33, 65, 3), np.uint16, {"photometric": "rgb", "bigtiff": True, "byteorder": ">"}),
        ((70_000, 2), np.uint8, {"compression": "zlib"}),
    ],
)
def test_tiff_headers_match_tifffile(shape: tuple[int, ...], dtype: type, options: dict[str, Any]) -> None:
    # Given a TIFF written by tifffile: classic or BigTIFF, either byte order, 1 to 5 samples
    data = tiff_bytes(np.zeros(shape, dtype=dtype), **options)

    header = read_header(data[:HEADER_BYTES])

    width, height, samples, bits = tiff_oracle(data)
    assert header == ImageHeader("tiff", width, height, samples, bits)


@settings(max_examples=30, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    samples=st.sampled_from([1, 2, 3, 4, 6]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
    bigtiff=st.booleans(),
    byteorder=st.sampled_from(["<", ">"]),
)
def test_any_tiff_header_matches_tifffile(
    width: int, height: int, samples: int, dtype: type, bigtiff: bool, byteorder: str
) -> None:
    shape = (height, width) if samples == 1 else (height, width, samples)
    photometric = "rgb" if samples == 3 else "minisblack"
    data = tiff_bytes(
        np.zeros(shape, dtype=dtype), photometric=photometric, bigtiff=bigtiff, byteorder=byteorder
    )

    assert read_header(data[:HEADER_BYTES]) == ImageHeader("tiff", *tiff_oracle(data))


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 2000), height=st.integers(1, 2000), mode=st.sampled_from(sorted(PIL_MODES)))
def test_any_png_header_matches_pillow(width: int, height: int, mode: str) -> None:
    data = pillow_bytes(mode, (width, height), "PNG")

    assert read_header(data[:HEADER_BYTES]) == ImageHeader("png", width, height, *PIL_MODES[mode])


@pytest.mark.parametrize(("image_format", "name"), [("GIF", "gif"), ("BMP", "bmp"), ("WEBP", "webp")])
def test_other_image_formats_are_named_as_unsupported(image_format: str, name: str) -> None:
    data = pillow_bytes("RGB", (8, 8), image_format)

    with pytest.raises(UnsupportedFormat) as raised:
        read_header(data)

    assert raised.value.format_name == name


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, world",
        b"\x89PNG\r\n\x1a\n\x00\x00",  # truncated PNG
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 0, 5, 8, 0, 0, 0, 0),
        b"\xff\xd8\xff\xd9",  # a JPEG that ends before any frame
        b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0),  # a TIFF directory without entries
    ],
)
def test_garbage_and_corrupt_headers_are_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableHeader):
        read_header(data)


def test_a_tiff_directory_past_the_head_is_reported_as_such() -> None:
    # Given a TIFF whose first directory sits after the pixel data (some writers put it at the end)
    data = b"II*\x00" + struct.pack("<I", 1_000_000) + bytes(100)

    with pytest.raises(HeaderBeyondHead):
        read_header(data)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"]
    ),
    rest=st.binary(max_size=200),
)
def test_no_bytes_make_it_raise_anything_but_unreadable_header(prefix: bytes, rest: bytes) -> None:
    # Whatever a file holds, reading its header either works or says it cannot
    try:
        header = read_header(prefix + rest)
    except UnreadableHeader:
        return
    assert header.width > 0 and header.height > 0
