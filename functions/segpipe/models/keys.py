"""The S3 key layout (docs/ARCHITECTURE.md, "Contracts"). Every key is built here and nowhere else."""

from __future__ import annotations

from segpipe.models.common import SplitName


def dataset_prefix(project: str, dataset: str) -> str:
    return f"projects/{project}/datasets/{dataset}/"


def dataset_file(project: str, dataset: str, file_name: str) -> str:
    return f"{dataset_prefix(project, dataset)}{file_name}"


#: The folders whose uploads start work (the event rules' key patterns in template.yaml name them too).
_REQUESTS = "requests"
_ANALYSIS_REQUESTS = "analysis-requests"


def _upload_key(project: str, folder: str, name: str) -> str:
    """`projects/{p}/{folder}/{name}.json`: a request uploaded to start work, or the report written back."""
    return f"projects/{project}/{folder}/{name}.json"


def _parse_upload_key(key: str, folder: str) -> tuple[str, str] | None:
    """(project, name) from `projects/{p}/{folder}/{name}.json` (`_upload_key`'s layout), or None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != folder or not parts[3].endswith(".json"):
        return None
    return parts[1], parts[3][: -len(".json")]


def request_key(project: str, name: str) -> str:
    return _upload_key(project, _REQUESTS, name)


def report_key(project: str, name: str) -> str:
    return _upload_key(project, "reports", name)


def version_prefix(project: str, version: int) -> str:
    return f"projects/{project}/models/{version}/"


def split_prefix(project: str, version: int) -> str:
    return f"{version_prefix(project, version)}split/"


def split_key(project: str, version: int, split: SplitName) -> str:
    return f"{split_prefix(project, version)}{split}.json"


def checkpoints_prefix(project: str, version: int) -> str:
    return f"{version_prefix(project, version)}checkpoints/"


def progress_key(project: str, version: int) -> str:
    return f"{checkpoints_prefix(project, version)}progress.json"


def output_prefix(project: str, version: int) -> str:
    """SageMaker's S3OutputPath; the job writes `{prefix}{job}/output/{model,output}.tar.gz`."""
    return f"{version_prefix(project, version)}output/"


def job_output_key(project: str, version: int, job_name: str, archive: str) -> str:
    return f"{output_prefix(project, version)}{job_name}/output/{archive}"


def evaluation_key(project: str, version: int) -> str:
    return f"{version_prefix(project, version)}evaluation.json"


def predictions_index_key(project: str, version: int) -> str:
    return f"{version_prefix(project, version)}predictions/index.json"


def prediction_key(project: str, version: int, split: SplitName, stem: str) -> str:
    return f"{version_prefix(project, version)}predictions/{split}/{stem}.json"


def preview_key(project: str, version: int, preview: str) -> str:
    return f"{version_prefix(project, version)}previews/{preview}"


def metrics_key(project: str, version: int, split: SplitName) -> str:
    """Where metrics too large for a DynamoDB item are kept."""
    return f"{version_prefix(project, version)}metrics/{split}.json"


def parse_request_key(key: str) -> tuple[str, str] | None:
    """(project, request name) from `projects/{p}/requests/{name}.json`, or None."""
    return _parse_upload_key(key, _REQUESTS)


# --- Analyses ----------------------------------------------------------------------------------


def images_prefix(project: str, folder: str) -> str:
    """The folder an analysis reads: every PNG/JPEG/TIFF under it, recursively."""
    return f"projects/{project}/images/{folder}/"


def analysis_request_key(project: str, name: str) -> str:
    return _upload_key(project, _ANALYSIS_REQUESTS, name)


def analysis_report_key(project: str, name: str) -> str:
    return _upload_key(project, "analysis-reports", name)


def analysis_prefix(project: str, analysis: int) -> str:
    return f"projects/{project}/analyses/{analysis}/"


def analysis_config_key(project: str, analysis: int) -> str:
    """The job's `analyze.json` (the `config` input of the processing job)."""
    return f"{analysis_prefix(project, analysis)}job/analyze.json"


def analysis_output_key(project: str, analysis: int, name: str) -> str:
    """A merged output: coco.json, objects.csv, images.csv or summary.json."""
    return f"{analysis_prefix(project, analysis)}{name}"


def analysis_shards_prefix(project: str, analysis: int) -> str:
    """Per-instance outputs: `shards/{host}/{coco.json,objects.csv,images.csv,summary.json}`."""
    return f"{analysis_prefix(project, analysis)}shards/"


def analysis_images_prefix(project: str, analysis: int) -> str:
    """Per-image files: `images/{stem}.json` (objects), `images/{stem}.png` (preview)."""
    return f"{analysis_prefix(project, analysis)}images/"


def analysis_image_key(project: str, analysis: int, stem: str) -> str:
    return f"{analysis_images_prefix(project, analysis)}{stem}.json"


def analysis_mask_key(project: str, analysis: int, stem: str) -> str:
    """The label image of one analysed image (instance labels, or class indices for semantic)."""
    return f"{analysis_prefix(project, analysis)}masks/{stem}.tif"


def analysis_progress_prefix(project: str, analysis: int) -> str:
    """`progress/{host}.json`, uploaded continuously while the job runs."""
    return f"{analysis_prefix(project, analysis)}progress/"


def parse_analysis_request_key(key: str) -> tuple[str, str] | None:
    """(project, request name) from `projects/{p}/analysis-requests/{name}.json`, or None."""
    return _parse_upload_key(key, _ANALYSIS_REQUESTS)
