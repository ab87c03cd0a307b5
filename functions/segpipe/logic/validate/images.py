"""Image rules: file formats, files present, sizes against the tile, sampled headers, output names.

`read_headers`, `report_unreadable`, `check_output_names` and `spread_indices` are shared with the
analysis checks.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter, mul
from typing import Any

from segpipe.errors import NotFoundError
from segpipe.logic import image_headers
from segpipe.logic.validate.context import Context
from segpipe.logic.validate.issues import Issues, examples, listing
from segpipe.logic.validate.thresholds import EXAMPLES, HEADER_SAMPLE
from segpipe.models.coco import CocoImage
from segpipe.models.report import ErrorCode, ImageStats, WarningCode
from segpipe.models.trainer_io import MAX_STEM_LENGTH, prediction_stem

logger = logging.getLogger(__name__)

#: File extensions the trainer reads, and their format names.
IMAGE_FORMATS: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
}


def extension(file_name: str) -> str:
    """The lower-case extension with its dot ("" when there is none)."""
    base = file_name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def format_of(file_name: str) -> str | None:
    """ "png", "jpeg" or "tiff" by extension; None for anything the trainer does not read."""
    return IMAGE_FORMATS.get(extension(file_name))


def format_name(file_name: str) -> str:
    """The format, or the extension of an unsupported file ("bmp"; "none" without one)."""
    return format_of(file_name) or extension(file_name).lstrip(".") or "none"


# --- The completed images ----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFindings:
    """What the image rules found: the statistics for the details, and the issues."""

    stats: ImageStats
    issues: Issues


def check_image_files(completed: Sequence[CocoImage], *, context: Context) -> ImageFindings:
    """Formats, files in the folder, sizes against the tile, and a sample of headers."""
    if not completed:
        return ImageFindings(stats=ImageStats(), issues=Issues())
    found = _check_formats(completed)
    files = context.source.store.list_files(context.source.project, context.source.dataset)
    missing = [image.file_name for image in completed if image.file_name not in files]
    if missing:
        found.error(
            ErrorCode.MISSING_IMAGE_FILE,
            f"{len(missing)} of {len(completed)} completed images have no file in the dataset folder: "
            f"{listing(missing)}. "
            "Upload them next to annotations.json (file_name is relative to that folder).",
            missing=len(missing),
            examples=examples(missing),
        )
    found.extend(_check_tile(completed, tile_size=context.training.tile_size))
    present = [image for image in completed if image.file_name in files and format_of(image.file_name)]
    headers = check_headers(spread_sample(present, sample=context.rules.header_sample), context=context)
    found.extend(headers.issues)
    return ImageFindings(stats=image_stats(completed, headers=headers.findings), issues=found)


def _check_formats(completed: Sequence[CocoImage]) -> Issues:
    found = Issues()
    unsupported = [image.file_name for image in completed if format_of(image.file_name) is None]
    if unsupported:
        found.error(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"{len(unsupported)} completed images are not PNG, JPEG or TIFF files: {listing(unsupported)}. "
            "Convert them to PNG or TIFF and update their file names.",
            images=len(unsupported),
            examples=examples(unsupported),
        )
    formats = Counter(format_name(image.file_name) for image in completed)
    if len(set(formats) & set(IMAGE_FORMATS.values())) > 1:
        found.warn(
            WarningCode.MIXED_IMAGE_FORMATS,
            f"Completed images come in several formats ({', '.join(sorted(formats))}). "
            "Mixed formats often mean mixed bit depths or channel orders; "
            "convert them to one format if they come from one microscope.",
            formats=dict(formats),
        )
    return found


def _check_tile(completed: Sequence[CocoImage], *, tile_size: int) -> Issues:
    found = Issues()
    small = [image for image in completed if image.width < tile_size or image.height < tile_size]
    if small:
        smallest = min(small, key=lambda image: image.width * image.height)
        found.warn(
            WarningCode.IMAGES_SMALLER_THAN_TILE,
            f"{len(small)} completed images are smaller than the {tile_size} px training tile "
            f"and will be padded (smallest: {smallest.width}x{smallest.height}). "
            "Choose a smaller `training.tile_size` to waste less.",
            images=len(small),
            tile_size=tile_size,
            smallest=[smallest.width, smallest.height],
        )
    return found


def image_stats(completed: Sequence[CocoImage], *, headers: HeaderFindings) -> ImageStats:
    """Sizes and formats of the completed images; channels and bit depths of the sampled headers."""
    if not completed:
        return ImageStats()
    widths = [image.width for image in completed]
    heights = [image.height for image in completed]
    read = headers.headers.values()
    return ImageStats(
        min_width=min(widths),
        max_width=max(widths),
        min_height=min(heights),
        max_height=max(heights),
        distinct_sizes=len(set(zip(widths, heights, strict=True))),
        megapixels=round(sum(map(mul, widths, heights)) / 1e6, 3),
        formats=dict(Counter(format_name(image.file_name) for image in completed)),
        channels=sorted({header.channels for header in read}),
        bit_depths=sorted({header.bit_depth for header in read}),
        sampled=len(headers.headers),
    )


# --- Headers -----------------------------------------------------------------------------------


def spread_sample(images: Sequence[CocoImage], *, sample: int = HEADER_SAMPLE) -> list[CocoImage]:
    """Up to `sample` images evenly spread over the file names (independent of file order)."""
    ordered = sorted(images, key=attrgetter("file_name"))
    return [ordered[index] for index in spread_indices(len(ordered), sample)]


def spread_indices(count: int, sample: int) -> list[int]:
    """Up to `sample` indices evenly spread over `range(count)`, first and last included."""
    if count <= sample:
        return list(range(count))
    step = (count - 1) / (sample - 1)
    return [round(index * step) for index in range(sample)]


@dataclass
class HeaderFindings:
    """What reading the first bytes of some image files found."""

    headers: dict[str, image_headers.ImageHeader] = field(default_factory=dict)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    not_read: list[str] = field(default_factory=list)


def read_headers(file_names: Sequence[str], *, read_head: Callable[[str, int], bytes]) -> HeaderFindings:
    """Parse the header of each file, read through `read_head(file_name, nbytes)`."""
    findings = HeaderFindings()
    for file_name in file_names:
        try:
            header = image_headers.read_header(read_head(file_name, image_headers.HEADER_BYTES))
        except image_headers.UnsupportedFormat as error:
            findings.unsupported.append({"file": file_name, "format": error.format_name})
        except image_headers.HeaderBeyondHead:
            findings.not_read.append(file_name)
        except image_headers.UnreadableHeader as error:
            findings.unreadable.append({"file": file_name, "problem": str(error)})
        except NotFoundError:  # listed a moment ago, gone now
            logger.warning("image %s vanished before its header was read", file_name)
            findings.not_read.append(file_name)
        except Exception:  # any other read failure (a throttled or empty object) only costs this sample
            logger.warning("could not read the head of %s", file_name, exc_info=True)
            findings.not_read.append(file_name)
        else:
            findings.headers[file_name] = header
    return findings


def _read_sample(sample: Sequence[CocoImage], *, context: Context) -> HeaderFindings:
    findings = read_headers([image.file_name for image in sample], read_head=context.source.read_head)
    for image in sample:
        header = findings.headers.get(image.file_name)
        if header is not None and (header.width, header.height) != (image.width, image.height):
            findings.mismatched.append(
                {
                    "file": image.file_name,
                    "coco": [image.width, image.height],
                    "file_size": [header.width, header.height],
                }
            )
    return findings


@dataclass(frozen=True)
class SampledHeaders:
    findings: HeaderFindings
    issues: Issues


def check_headers(sample: Sequence[CocoImage], *, context: Context) -> SampledHeaders:
    """Each sampled file is a readable image of the size annotations.json gives it."""
    findings = _read_sample(sample, context=context)
    found = Issues()
    if findings.mismatched:
        found.error(
            ErrorCode.IMAGE_SIZE_MISMATCH,
            f"{len(findings.mismatched)} of {len(sample)} sampled images are not the size "
            "annotations.json gives them, so their annotations would not line up with the pixels. "
            "Re-export the dataset with each image's real width and height.",
            sampled=len(sample),
            mismatched=findings.mismatched,
        )
    report_unreadable(findings, sampled=len(sample), issues=found)
    channels = sorted({header.channels for header in findings.headers.values()})
    if len(channels) > 1:
        found.warn(
            WarningCode.MIXED_CHANNEL_COUNTS,
            f"Sampled images have different channel counts ({', '.join(map(str, channels))}); "
            "the model takes one channel count, so images are converted to it. "
            "Convert them yourself to control how.",
            channels=channels,
        )
    if findings.not_read:
        found.warn(
            WarningCode.IMAGE_HEADERS_NOT_READ,
            f"The headers of {len(findings.not_read)} of {len(sample)} sampled images "
            "could not be read from their first bytes, so their sizes were not checked.",
            examples=findings.not_read,
        )
    return SampledHeaders(findings=findings, issues=found)


def unreadable_findings(findings: HeaderFindings, *, sampled: int) -> Issues:
    """`unsupported_image_format` and `unreadable_image` for the sampled files that need them."""
    found = Issues()
    if findings.unsupported:
        found.error(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"{len(findings.unsupported)} sampled images hold another format than their name says "
            f"({', '.join(sorted({item['format'] for item in findings.unsupported}))}). "
            "Convert them to PNG or TIFF.",
            sampled=sampled,
            examples=findings.unsupported,
        )
    if findings.unreadable:
        found.error(
            ErrorCode.UNREADABLE_IMAGE,
            f"{len(findings.unreadable)} of {sampled} sampled image files are not readable images "
            f"({findings.unreadable[0]['problem']}). Upload them again; `examples` lists them.",
            sampled=sampled,
            examples=findings.unreadable,
        )
    return found


def report_unreadable(findings: HeaderFindings, *, sampled: int, issues: Issues) -> None:
    """`unreadable_findings`, added to `issues`."""
    issues.extend(unreadable_findings(findings, sampled=sampled))


# --- Output names ------------------------------------------------------------------------------


def output_name_findings(file_names: Sequence[str], *, what: str, outputs: str) -> Issues:
    """Per-image outputs are named by `prediction_stem`: images whose stems are equal would overwrite
    each other's outputs, and a stem longer than the API's `{stem}` parameter could not be read back.
    `what` names the images and `outputs` their per-image files, for the messages."""
    by_stem: dict[str, list[str]] = {}
    for file_name in file_names:
        by_stem.setdefault(prediction_stem(file_name), []).append(file_name)
    collisions = [
        {"stem": stem, "files": sorted(files)[:EXAMPLES]} for stem, files in by_stem.items() if len(files) > 1
    ]
    found = Issues()
    if collisions:
        collisions.sort(key=itemgetter("stem"))
        first = collisions[0]
        found.error(
            ErrorCode.OUTPUT_NAMES_COLLIDE,
            f"{len(collisions)} groups of {what} would get the same output names "
            f"(for example {listing(first['files'])} all become {first['stem']!r}): "
            "names that differ only in their extension or in characters other than letters, digits, "
            f"'.', '_' and '-' would overwrite each other's {outputs} and previews. "
            "Rename the files so that they differ in those characters.",
            groups=len(collisions),
            examples=collisions[:EXAMPLES],
        )
    too_long = sorted(
        name for stem, names in by_stem.items() if len(stem) > MAX_STEM_LENGTH for name in names
    )
    if too_long:
        found.error(
            ErrorCode.OUTPUT_NAME_TOO_LONG,
            f"{len(too_long)} {what} have names whose output name would be longer than "
            f"{MAX_STEM_LENGTH} characters (folders joined with '__'): {listing(too_long)}. "
            "Use shorter file or folder names.",
            images=len(too_long),
            examples=examples(too_long),
            max_length=MAX_STEM_LENGTH,
        )
    return found


def check_output_names(file_names: Sequence[str], *, issues: Issues, what: str, outputs: str) -> None:
    """`output_name_findings`, added to `issues`."""
    issues.extend(output_name_findings(file_names, what=what, outputs=outputs))
