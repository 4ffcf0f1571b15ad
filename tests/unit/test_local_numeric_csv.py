"""The built-in algorithm's CSV reader: the C fast path gives the careful reader's matrix, or steps aside."""

from __future__ import annotations

import numpy as np
import pytest

from stepml.local.sagemaker import numeric_csv
from stepml.local.sagemaker.errors import TrainingFailedError


def _lines(text: str) -> list[tuple[int, str]]:
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


PLAIN = [
    "1,0.5,3\n0,-2.25,1e3\n",
    "1, 1.5 ,+2\n0,.5,5.\n\n1,7,8\n",  # spaces around numbers, blank line, signs, bare points
    "0,0.1000000000000000055511151231257827,123456789\n1,2.5e-300,9007199254740991\n",
    '1,"2.5",3\n',  # a quoted number
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_numbers_read_in_c_equal_the_careful_readers_matrix(text):
    fast = numeric_csv._plain_numbers(text, ",")
    assert fast is not None, "plain numbers take the fast path"
    careful = numeric_csv._checked(text, ",", _lines(text), "train")
    assert fast.dtype == careful.dtype == np.float32
    assert np.array_equal(fast, careful)


@pytest.mark.parametrize(
    "text",
    [
        "1,nan,3\n",  # nan: missing for the careful reader
        "1,,3\n",  # a blank cell
        "1,2,3\n0,4\n",  # a short row
        "1,inf,3\n",  # not finite
        "1,9007199254740993,3\n",  # an integer beyond 2**53: int64 rounds once, float64 twice
    ],
)
def test_anything_but_plain_finite_numbers_goes_to_the_careful_reader(text):
    assert numeric_csv._plain_numbers(text, ",") is None
    numeric_csv.read_matrix(text, ",", _lines(text), "train")  # the careful reader reads it


def test_a_cell_that_is_not_a_number_is_refused_with_its_line_and_column():
    text = "1,2,3\n\n0,abc,5\n"
    with pytest.raises(TrainingFailedError) as raised:
        numeric_csv.read_matrix(text, ",", _lines(text), "train")
    assert str(raised.value) == (
        "ClientError: Non-numeric value 'abc' in train, line 3, column 2: the built-in XGBoost algorithm reads "
        "CSV of numbers only, label first, no header"
    )
