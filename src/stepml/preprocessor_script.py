"""The preprocessor's inference script: raw feature rows in, the model's encoded rows out.

SageMaker's Scikit-learn serving container runs this file in script mode as the first
container of the production model's inference pipeline (``preprocessor.package`` ships it as
``code/inference.py`` in the preprocessor's ``model.tar.gz``, beside ``encoding.json``, the
encoding the Glue job fitted). It reads headerless CSV rows of the dataset's own feature
columns, in config order, and answers the rows XGBoost was trained on, exactly as the Glue job
(glue_jobs/preprocess.py: ``clean`` then ``encode``) turned the training rows into them:

* numeric: the value trimmed and read as a plain decimal number; a blank is the training
  median; anything else (``abc``, ``NaN``, ``1e999``) is refused, as the job refuses it;
* categorical: the value trimmed; a blank is the missing-value category (``__missing__``),
  then the category's ordinal code; a value the job never saw, or a missing value when training
  had none, has no code: the cell stays empty, which XGBoost reads as missing (the job's map
  lookup gives null for it too).

A request that cannot be read (wrong column count, a bad number, not UTF-8, another content
type) is answered 400 or 415 with a message naming the row and column: ``input_fn`` hands the
problem on rather than raising (the container answers a hook's exception with 500), and
``output_fn`` turns it into the container's Flask response with that status. The file imports
only the standard library, so the container needs nothing installed; the four hooks are the
sagemaker-containers contract (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re

ENCODING_FILE = "encoding.json"
CSV = "text/csv"
#: A number beyond this is not finite: the job refuses it (``encoding.json`` holds its number pattern).
_LARGEST_DOUBLE = 1.7976931348623157e308
#: Distinct cells per column whose encoded text is remembered (bounds the memory a column of
#: unique values, such as an amount, can take).
_REMEMBERED_CELLS = 100_000


class RequestError(ValueError):
    """A request the preprocessor refuses; ``status`` is the HTTP status it answers."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Encoding:
    """The fitted encoding of ``encoding.json``: feature order, types, categories, medians."""

    def __init__(self, document: dict):
        self.features = [(str(f["name"]), str(f["type"])) for f in document["features"]]
        self.categories = {name: dict(codes) for name, codes in document["categories"].items()}
        self.medians = {name: float(value) for name, value in document["medians"].items()}
        self.missing_category = str(document["missing_category"])
        self.number = re.compile(document["number_pattern"])
        self._columns = [self._column_encoder(name, kind) for name, kind in self.features]

    def encode_cell(self, name: str, kind: str, cell: str, row: int, column: int) -> str:
        """One raw cell as the job wrote it into the training rows ('' when it has no code)."""
        value = cell.strip()
        if kind == "numeric":
            if not value:
                return _number_text(self.medians[name])
            parsed = float(value) if self.number.match(value) else math.inf
            if abs(parsed) > _LARGEST_DOUBLE:
                raise RequestError(
                    400, f"row {row}, column {column} ({name}): {cell!r} is not a number (numeric feature)"
                )
            return _number_text(parsed)
        code = self.categories.get(name, {}).get(value or self.missing_category)
        return "" if code is None else str(code)

    def _column_encoder(self, name: str, kind: str):
        """``encode_cell`` for one column, remembering the texts of the cells it has seen: columns
        repeat their values (categories, small counts), and a batch's rows are encoded per cell."""
        seen: dict[str, str] = {}

        def encode(cell: str) -> str:
            text = seen.get(cell)
            if text is None:
                text = self.encode_cell(name, kind, cell, 0, 0)
                if len(seen) < _REMEMBERED_CELLS:
                    seen[cell] = text
            return text

        return encode

    def encode_rows(self, rows: list[list[str]]) -> str:
        """Headerless CSV of the encoded rows; ``RequestError`` for a row of the wrong width."""
        width = len(self.features)
        columns = self._columns
        lines = []
        for number, cells in enumerate(rows, start=1):
            if len(cells) != width:
                names = ", ".join(name for name, _ in self.features)
                raise RequestError(
                    400,
                    f"row {number} has {len(cells)} column(s), expected {width}: the dataset's features in "
                    f"this order, without the label: {names}",
                )
            try:
                lines.append(",".join([encode(cell) for encode, cell in zip(columns, cells, strict=True)]))
            except RequestError:
                # Again cell by cell, for the message that names this row and the column.
                for column, ((name, kind), cell) in enumerate(zip(self.features, cells, strict=True), start=1):
                    self.encode_cell(name, kind, cell, number, column)
                raise
        return "\n".join(lines) + "\n"


def _number_text(value: float) -> str:
    return repr(float(value))


def parse_rows(body: bytes | str) -> list[list[str]]:
    """Headerless CSV rows (RFC 4180 quoting), blank lines skipped."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the request is not UTF-8 text: {exc}") from exc
    try:
        # A row is blank when every cell is; its first cell usually says it is not.
        rows = [row for row in csv.reader(io.StringIO(text)) if row and (row[0].strip() or any(map(str.strip, row)))]
    except csv.Error as exc:
        raise RequestError(400, f"the request is not CSV: {exc}") from exc
    if not rows:
        raise RequestError(400, "the request holds no rows")
    return rows


def model_fn(model_dir: str) -> Encoding:
    """Load ``encoding.json`` from the model directory."""
    with open(os.path.join(model_dir, ENCODING_FILE), encoding="utf-8") as handle:
        return Encoding(json.load(handle))


def input_fn(input_data: bytes | str, content_type: str | None) -> list[list[str]] | RequestError:
    """The request's rows; a request that cannot be read becomes the ``RequestError`` that
    ``output_fn`` answers (an exception here would be a 500 in the container)."""
    media = (content_type or CSV).split(";")[0].strip().lower()
    if media not in (CSV, "csv"):
        return RequestError(415, f"Content-Type {content_type} is not supported: send text/csv rows")
    try:
        return parse_rows(input_data)
    except RequestError as error:
        return error


def predict_fn(input_data: list[list[str]] | RequestError, model: Encoding) -> str | RequestError:
    """The encoded rows as CSV text, or the request's error."""
    if isinstance(input_data, RequestError):
        return input_data
    try:
        return model.encode_rows(input_data)
    except RequestError as error:
        return error


def output_fn(prediction: str | RequestError, accept: str | None):
    """``(body, content type)`` for XGBoost, or the error as a 4XX response."""
    if isinstance(prediction, RequestError):
        return _response(str(prediction), prediction.status)
    if accept and accept.split(";")[0].strip().lower() not in (CSV, "csv", "*/*"):
        return _response(f"Accept {accept} is not supported: the preprocessor answers text/csv", 406)
    return prediction, CSV


def _response(message: str, status: int):
    """An error response with ``status``: the serving container's Flask response class."""
    try:
        from sagemaker_containers.beta.framework.worker import Response
    except ImportError:  # outside the container: Flask's own base class, which it extends
        from werkzeug.wrappers import Response
    return Response(response=message, status=status, mimetype="text/plain")
