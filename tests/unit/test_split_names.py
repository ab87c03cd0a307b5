"""One `SplitName` names the two sides of a split everywhere: keys, contracts, the API, the trainer."""

from __future__ import annotations

import typing

import pytest

from segpipe.models import keys
from segpipe.models.api import PredictionImage
from segpipe.models.common import SPLIT_NAMES, SplitName, split_name
from segpipe.models.trainer_io import ImagePredictions


def test_the_split_names_are_the_literal_s_values() -> None:
    assert SPLIT_NAMES == typing.get_args(SplitName) == ("train", "test")


@pytest.mark.parametrize("name", ["train", "test"])
def test_a_split_name_read_back_from_a_key_is_kept(name: str) -> None:
    # Given a split segment read from an output archive member or an S3 key
    # When it is turned into a SplitName
    split = split_name(name)

    # Then it names the same side, and builds the same keys
    assert split == name
    assert keys.prediction_key("lab", 3, split, "img") == f"projects/lab/models/3/predictions/{name}/img.json"


@pytest.mark.parametrize("name", ["validation", "Test", "", "train/"])
def test_anything_else_is_not_a_split_name(name: str) -> None:
    with pytest.raises(ValueError, match="is not a split name"):
        split_name(name)


def test_contracts_refuse_a_split_that_is_neither_side() -> None:
    # The API listing and the trainer's predictions share the one type: neither accepts a third side.
    with pytest.raises(ValueError, match="split"):
        ImagePredictions(file_name="a.png", width=4, height=4, split="validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        PredictionImage.model_validate(
            {"file_name": "a.png", "split": "val", "stem": "a", "width": 4, "height": 4, "objects": 0,
             "predictions_url": "/x"}
        )  # fmt: skip
