"""The built-in algorithm's CSV reader: a channel file's cells as a float32 matrix.

The container reads CSV cells as numbers: trimmed, ``nan`` and blanks missing, anything else
refused with the line and column that hold it (``_checked``, cell by cell as text, which costs
seconds of Python per million cells). Almost every training file is plain numbers, which
pandas' C parser reads to the same float64 values (the same decimal conversion as
``pandas.to_numeric``) in a fraction of that time: ``_plain_numbers`` answers the matrix only
when it is certain to equal what ``_checked`` gives; otherwise ``_checked`` runs and names any
problem:

* a cell the C parser cannot read as a number (``nan``, text, a blank, non-ASCII spaces) fails
  the parse;
* a row shorter than the others gives NaN, which the careful reader refuses: any NaN falls back;
* an integer column the careful reader keeps as int64 converts to float32 in one rounding, a
  float64 in two: the same for every magnitude below 2**53, so any larger value falls back.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from stepml.local.sagemaker.errors import TrainingFailedError

#: Below this every integer is exact in float64, so float64 -> float32 rounds as int64 -> float32.
_EXACT_INTEGERS = float(2**53)


def read_matrix(text: str, delimiter: str, lines: list[tuple[int, str]], label: str) -> np.ndarray:
    """The float32 matrix of ``text`` (headerless CSV; ``lines``: its non-blank lines and their
    numbers, for errors); ``TrainingFailedError`` names a cell that is not a number."""
    matrix = _plain_numbers(text, delimiter)
    return _checked(text, delimiter, lines, label) if matrix is None else matrix


def _plain_numbers(text: str, delimiter: str) -> np.ndarray | None:
    """The matrix, or None when ``text`` is not plain finite numbers."""
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            header=None,
            sep=delimiter,
            dtype=np.float64,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError, TypeError):
        return None
    values = frame.to_numpy(dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all() or np.abs(values).max() >= _EXACT_INTEGERS:
        return None
    return values.astype(np.float32)


def _checked(text: str, delimiter: str, lines: list[tuple[int, str]], label: str) -> np.ndarray:
    """Cell by cell as text: trimmed, blanks and ``nan`` missing, anything else refused by line and column."""
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            header=None,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise TrainingFailedError(f"ClientError: Failed to load csv data from {label}: {exc}") from exc
    stripped = raw.apply(lambda column: column.str.strip())
    numeric = stripped.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & stripped.ne("") & stripped.apply(lambda column: column.str.lower()).ne("nan")
    if bad.to_numpy().any():
        row, column = (int(index) for index in np.argwhere(bad.to_numpy())[0])
        value = stripped.iat[row, column]
        line_number = lines[row][0] if row < len(lines) else row + 1
        raise TrainingFailedError(
            f"ClientError: Non-numeric value {value!r} in {label}, line {line_number}, column {column + 1}: "
            "the built-in XGBoost algorithm reads CSV of numbers only, label first, no header"
        )
    return numeric.to_numpy(dtype=np.float32)
