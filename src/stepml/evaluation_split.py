"""The run's test split as Evaluate sends it to the test endpoint.

The Glue job writes ``test/`` as headerless CSV: the encoded label first, then the raw features
in config order (a split written before then has a header, which names its columns).
``read_test_split`` reads it with awswrangler, keeping every cell as text, so the rows sent are
the values Glue kept (a blank stays blank).

Who encodes those raw rows depends on the test endpoint, and the state machine says which
(``$.test_serving.preprocessing``, from the endpoint config state it took):

* ``endpoint``: the test endpoint serves the inference pipeline production serves, and its
  preprocessor container encodes the raw rows;
* ``evaluate``: a serverless test endpoint, which serves the XGBoost container alone because
  SageMaker Serverless Inference takes no inference pipeline. Evaluate then applies the very same
  preprocessing before invoking: ``stepml.preprocessor_script``'s own ``input_fn`` and
  ``predict_fn`` over the run's ``encoding.json`` (the file the preprocessor's model data holds),
  so the same encoding and the same booster are tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awswrangler as wr
import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from stepml import preprocessor_script
from stepml.utils import S3ReadError, csv_line, read_s3_json

#: Where the test endpoint's rows are encoded (``$.test_serving.preprocessing``).
PREPROCESSED_BY_ENDPOINT = "endpoint"
PREPROCESSED_BY_EVALUATE = "evaluate"


class SplitError(ValueError):
    """The test split cannot be read or encoded; the message names the file and the problem."""


def error_text(exc: ClientError | BotoCoreError) -> str:
    """An AWS error as ``Code: Message`` (botocore's own text for an error with no response)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {error.get('Message', str(exc))}"
    return str(exc)


@dataclass(frozen=True)
class TestSplit:
    """The test rows, raw and as the endpoint receives them, and their labels as numbers."""

    uri: str
    label_column: str
    labels: np.ndarray
    feature_rows: list[str]
    #: What InvokeEndpoint sends: ``feature_rows`` themselves, or encoded when Evaluate preprocesses.
    endpoint_rows: list[str]
    #: Who encodes the rows: ``PREPROCESSED_BY_ENDPOINT`` or ``PREPROCESSED_BY_EVALUATE``.
    preprocessed_by: str = PREPROCESSED_BY_ENDPOINT

    @property
    def rows(self) -> int:
        return len(self.feature_rows)


def _label_values(
    values: Sequence[str], problem_type: str, classes: Sequence[str] | None, uri: str, label: str
) -> np.ndarray:
    """Labels as numbers; class names (when the split keeps them) become class indices."""
    try:
        numeric = np.array([float(value) for value in values], dtype=np.float64)
    except ValueError:
        numeric = None
    if numeric is not None:
        if not np.all(np.isfinite(numeric)):
            raise SplitError(f"test split {uri}: label column {label!r} has empty or non-finite values")
        return numeric
    if problem_type != "regression" and classes:
        index = {name: position for position, name in enumerate(classes)}
        unknown = sorted({value for value in values if value not in index})
        if unknown:
            raise SplitError(
                f"test split {uri}: label column {label!r} holds values that are not in run.config.classes "
                f"{list(classes)}: {unknown[:5]}"
            )
        return np.array([index[value] for value in values], dtype=np.float64)
    sample = sorted({value for value in values if not _is_float(value)})[:5]
    raise SplitError(f"test split {uri}: label column {label!r} must hold numbers, found {sample}")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _named_columns(frame: pd.DataFrame, config: Mapping[str, Any], uri: str) -> pd.DataFrame:
    """The split's rows under their column names. The Glue job writes no header (Batch Transform
    would score it as a row): the label, then the config's features. A split written before that
    starts each file with a header naming the label; those lines name the columns and are dropped."""
    label = str(config.get("label", ""))
    header_rows = frame.eq(label).any(axis=1)
    if header_rows.any():
        columns = [str(cell) for cell in frame[header_rows].iloc[0].tolist()]
        frame = frame[~header_rows].reset_index(drop=True)
    else:
        columns = [label, *(str(feature["name"]) for feature in config.get("features") or [])]
        if len(columns) != len(frame.columns):
            raise SplitError(
                f"test split {uri}: rows have {len(frame.columns)} column(s), expected {len(columns)}: "
                f"the label then the features of run.config ({', '.join(columns)})"
            )
    frame.columns = columns
    return frame


def read_test_split(
    uri: str,
    config: Mapping[str, Any],
    *,
    boto3_session: Any,
    encoding: preprocessor_script.Encoding | None = None,
) -> TestSplit:
    """Read every CSV object under ``uri`` (label first) with awswrangler; with an ``encoding``,
    the endpoint's rows are the raw ones encoded by it (``encode_rows``).

    Raises ``SplitError`` naming ``uri`` when there are no rows, the files are unreadable or
    inconsistent, or the preprocessing refuses a row.
    """
    try:
        frame = wr.s3.read_csv(
            path=uri,
            boto3_session=boto3_session,
            ignore_empty=True,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
        )
    except wr.exceptions.NoFilesFound as exc:
        raise SplitError(f"test split {uri}: no test rows, the prefix holds no files") from exc
    except (ClientError, BotoCoreError) as exc:
        raise SplitError(f"test split {uri}: cannot read it: {error_text(exc)}") from exc
    except ValueError as exc:  # pandas' EmptyDataError and ParserError
        raise SplitError(f"test split {uri}: not a readable CSV: {exc}") from exc
    if frame.isna().to_numpy().any():
        raise SplitError(f"test split {uri}: the files do not share one layout (some rows have fewer columns)")
    frame = _named_columns(frame, config, uri)
    if frame.empty or len(frame.columns) < 2:
        raise SplitError(
            f"test split {uri}: no test rows (found {len(frame)} row(s) and {len(frame.columns)} column(s); "
            "expected the label first, then at least one feature)"
        )
    columns = [str(column) for column in frame.columns]
    label = str(config.get("label", ""))
    if label in columns[1:]:
        raise SplitError(
            f"test split {uri}: label column {label!r} must be the first column, found it at position "
            f"{columns.index(label) + 1}"
        )
    labels = _label_values(
        frame.iloc[:, 0].astype(str).tolist(), str(config["problem_type"]), config.get("classes"), uri, columns[0]
    )
    feature_rows = [csv_line(row) for row in frame.iloc[:, 1:].astype(str).to_numpy().tolist()]
    if encoding is None:
        return TestSplit(uri, columns[0], labels, feature_rows, feature_rows)
    encoded = encode_rows(encoding, feature_rows, uri)
    return TestSplit(uri, columns[0], labels, feature_rows, encoded, PREPROCESSED_BY_EVALUATE)


# --- the preprocessing, when the test endpoint serves XGBoost alone -------------------------


def load_encoding(s3_client: Any, uri: str) -> preprocessor_script.Encoding:
    """The Glue job's fitted encoding at ``uri``, as the preprocessor's ``model_fn`` loads it."""
    try:
        return preprocessor_script.Encoding(read_s3_json(s3_client, uri))
    except S3ReadError as exc:
        raise SplitError(f"encoding {uri}: cannot read it: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:  # re.error is a ValueError
        raise SplitError(f"encoding {uri}: not the preprocessor's encoding: {exc!r}") from exc


def encode_rows(encoding: preprocessor_script.Encoding, rows: Sequence[str], uri: str) -> list[str]:
    """``rows`` (headerless raw CSV lines) as the pipeline's preprocessor answers them: the
    script's ``input_fn`` and ``predict_fn``, one encoded line per row, in order."""
    body = "\n".join(rows)
    answer = preprocessor_script.predict_fn(preprocessor_script.input_fn(body, preprocessor_script.CSV), encoding)
    if isinstance(answer, preprocessor_script.RequestError):
        raise SplitError(f"test split {uri}: the preprocessing refuses it ({answer.status}): {answer}")
    encoded = answer.splitlines()
    if len(encoded) != len(rows):
        raise SplitError(
            f"test split {uri}: the preprocessing answered {len(encoded)} row(s) for {len(rows)}: a row with every "
            "feature blank is skipped by the preprocessor"
        )
    return encoded


def serving_encoding(
    run: Mapping[str, Any], serving: Mapping[str, Any] | None, s3_client: Any
) -> preprocessor_script.Encoding | None:
    """The run's encoding when ``serving`` (``$.test_serving``) says Evaluate preprocesses; None
    when the endpoint does (also when ``serving`` is absent: definitions before it had no other)."""
    preprocessing = (serving or {}).get("preprocessing", PREPROCESSED_BY_ENDPOINT)
    if preprocessing == PREPROCESSED_BY_ENDPOINT:
        return None
    if preprocessing != PREPROCESSED_BY_EVALUATE:
        raise SplitError(
            f"Evaluate payload: field 'serving.preprocessing' is {preprocessing!r}, not "
            f"{PREPROCESSED_BY_ENDPOINT!r} or {PREPROCESSED_BY_EVALUATE!r}"
        )
    uri = (run.get("paths") or {}).get("encoding")
    if not uri:
        raise SplitError(
            "Evaluate payload: field 'run.paths.encoding' is missing; a serverless test endpoint serves XGBoost "
            "alone and Evaluate needs the run's encoding to preprocess its rows"
        )
    return load_encoding(s3_client, str(uri))
