"""Read image size, channels and bit depth from the first bytes of PNG, JPEG and TIFF files.

Pure Python, no imaging library: a Lambda reads the first 64 KiB of a few sampled images
(`DatasetStore.read_head`) and checks them against the COCO `width`/`height`. Only the header is
parsed; pixel data is never decoded.

- PNG: the IHDR chunk (always first).
- JPEG: the first SOFn segment, after skipping APPn/EXIF/ICC segments by their lengths.
- TIFF: the first IFD, classic (`II*\\0`, `MM\\0*`) and BigTIFF (`II+\\0`, `MM\\0+`), both byte
  orders. `channels` is SamplesPerPixel; channels stored as separate pages (some OME-TIFF and
  ImageJ stacks) are not counted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

#: Bytes read from each sampled image; enough for PNG, nearly every JPEG and tifffile/libtiff TIFFs.
HEADER_BYTES = 64 * 1024

ImageFormat = Literal["png", "jpeg", "tiff"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> samples per pixel (palette images decode to RGB).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4, C8 or CC.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: JPEG markers that stand alone, without a length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
#: Formats recognised by their magic bytes but not accepted for training.
_OTHER_FORMATS = {b"GIF8": "gif", b"BM": "bmp", b"RIFF": "webp", b"\x00\x00\x00\x0cjP  ": "jpeg2000"}

_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES = 256, 257, 258, 277
#: TIFF field type -> (struct code, size): SHORT, LONG, LONG8 (BigTIFF).
_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says about its pixels."""

    format: ImageFormat
    width: int
    height: int
    channels: int
    bit_depth: int


class UnreadableHeader(ValueError):
    """The bytes are not a PNG, JPEG or TIFF header, or the header is corrupt."""


class UnsupportedFormat(UnreadableHeader):
    """A recognised image format that segpipe does not train on (GIF, BMP, WebP, JPEG 2000)."""

    def __init__(self, format_name: str) -> None:
        super().__init__(f"{format_name} images are not supported; convert them to PNG or TIFF")
        self.format_name = format_name


class HeaderBeyondHead(UnreadableHeader):
    """The header lies past the bytes read (a TIFF whose first IFD is at the end of the file)."""


def read_header(head: bytes) -> ImageHeader:
    """Parse the header at the start of an image file.

    `head` is the first bytes of the file (`HEADER_BYTES` is plenty for most files). Raises
    `UnsupportedFormat`, `HeaderBeyondHead` or `UnreadableHeader` (the base of both).
    """
    if head.startswith(_PNG_SIGNATURE):
        return _png(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(head)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff(head)
    for magic, name in _OTHER_FORMATS.items():
        if head.startswith(magic):
            raise UnsupportedFormat(name)
    raise UnreadableHeader("not a PNG, JPEG or TIFF file")


def _png(head: bytes) -> ImageHeader:
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise UnreadableHeader("PNG file without an IHDR chunk")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    if colour_type not in _PNG_CHANNELS or not (width and height):
        raise UnreadableHeader("PNG header with an invalid size or colour type")
    return ImageHeader("png", width, height, _PNG_CHANNELS[colour_type], 8 if colour_type == 3 else bit_depth)


def _jpeg(head: bytes) -> ImageHeader:
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            raise UnreadableHeader("JPEG segment does not start with a marker")
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            break
        (length,) = struct.unpack(">H", head[position + 2 : position + 4])
        if marker in _JPEG_SOF:
            return _jpeg_frame(head[position + 4 : position + 2 + length])
        position += 2 + length
    if position + 4 > len(head):
        raise HeaderBeyondHead("the JPEG frame header lies past the bytes read")
    raise UnreadableHeader("JPEG file without a frame header")


def _jpeg_frame(segment: bytes) -> ImageHeader:
    if len(segment) < 6:
        raise HeaderBeyondHead("the JPEG frame header lies past the bytes read")
    precision, height, width, components = struct.unpack(">BHHB", segment[:6])
    if not (width and height and components):
        raise UnreadableHeader("JPEG frame header with a zero size (DNL) or no components")
    return ImageHeader("jpeg", width, height, components, precision)


def _tiff(head: bytes) -> ImageHeader:
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        offset = _unpack(head, order + "Q", 8)
        count = _unpack(head, order + "Q", offset)
        entries, entry_size, inline = offset + 8, 20, 8
    else:
        offset = _unpack(head, order + "I", 4)
        count = _unpack(head, order + "H", offset)
        entries, entry_size, inline = offset + 2, 12, 4
    tags: dict[int, list[int]] = {}
    for index in range(count):
        start = entries + index * entry_size
        tag, field_type = struct.unpack(order + "HH", _slice(head, start, 4))
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES) and field_type in _TIFF_TYPES:
            tags[tag] = _tiff_values(
                head, order=order, entry=start + 4, field_type=field_type, big=big, inline=inline
            )
    width, height = _first(tags, _TIFF_WIDTH), _first(tags, _TIFF_HEIGHT)
    if not (width and height):
        raise UnreadableHeader("TIFF file without image width and length")
    return ImageHeader("tiff", width, height, _first(tags, _TIFF_SAMPLES) or 1, _first(tags, _TIFF_BITS) or 1)


def _first(tags: dict[int, list[int]], tag: int) -> int:
    """The first value of a tag; 0 when it is missing or empty."""
    values = tags.get(tag)
    return values[0] if values else 0


def _tiff_values(
    head: bytes, *, order: str, entry: int, field_type: int, big: bool, inline: int
) -> list[int]:
    """The values of one IFD entry; `entry` points at its count field."""
    code, size = _TIFF_TYPES[field_type]
    count = _unpack(head, order + ("Q" if big else "I"), entry)
    count = min(count, 64)  # a per-sample list longer than this is not a channel count anyone uses
    value_at = entry + (8 if big else 4)
    if count * size > inline:
        value_at = _unpack(head, order + ("Q" if big else "I"), value_at)
    return list(struct.unpack(f"{order}{count}{code}", _slice(head, value_at, count * size)))


def _unpack(head: bytes, fmt: str, at: int) -> int:
    value: int = struct.unpack(fmt, _slice(head, at, struct.calcsize(fmt)))[0]
    return value


def _slice(head: bytes, at: int, size: int) -> bytes:
    if at + size > len(head):
        raise HeaderBeyondHead("the TIFF directory lies past the bytes read")
    return head[at : at + size]
