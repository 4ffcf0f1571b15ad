"""What CreateTransformJob refuses before a batch transform job starts, and its CSV filters.

The request is checked against botocore's model first (``validation.validate_request``), then
against the rules SageMaker documents beyond the shapes: ``MaxPayloadInMB`` at most 100 MB, and
``MaxConcurrentTransforms * MaxPayloadInMB`` at most 100 MB. Then what the local cloud cannot do
is refused with a message that says so, rather than ignored: chunked payloads
(``MaxPayloadInMB`` 0, which SageMaker's built-in algorithms do not support either), RecordIO and
TFRecord splitting, augmented manifests, batch data capture, https:// URIs, and data processing
filters on anything but CSV split by line.

``DataProcessing``'s InputFilter and OutputFilter are JSONPath expressions; a CSV record is a
JSON array of its cells, so the operators that apply are those SageMaker documents for arrays
("Supported JSONPath Operators" in "Associate Prediction Results with Input Records",
https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform-data-processing.html):
``$`` (the whole record), ``$[i]`` and ``$[i,j,...]`` (indexes; "Negative index values are also
supported. A -1 index refers to the last element"), ``$[a:b]``, ``$[a:]``, ``$[:b]`` (slices,
documented as JavaScript's ``Array.slice()``: the end excluded, negative bounds counted from the
end) and unions of them such as ``$[0,5:]``. Steps are refused (the table has none). An index
outside the record fails the job ("If you specify indexes that aren't within the dimension size
of the joined dataset, you get an error", DataProcessing.OutputFilter in the API reference).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepml.local.sagemaker.errors import SageMakerValidationError
from stepml.local.sagemaker.validation import validate_request

#: SageMaker's ceilings for a mini-batch, alone and times the concurrent requests (MB).
MAX_PAYLOAD_MB = 100
DEFAULT_MAX_PAYLOAD_MB = 6
CSV_TYPES = ("text/csv", "csv")
_LOCAL = "the local cloud does not support"
_ITEM = re.compile(r"^(?P<index>-?\d+)$|^(?P<start>-?\d+)?:(?P<end>-?\d+)?$")


class FilterError(ValueError):
    """A record does not have the columns a filter selects (the job fails)."""


@dataclass(frozen=True)
class CsvFilter:
    """A parsed JSONPath filter over a CSV record's cells; ``items`` None selects the whole record."""

    expression: str
    items: tuple[int | slice, ...] | None

    def apply(self, cells: Sequence[Any]) -> list[Any]:
        """The selected cells in order; ``FilterError`` when an index is past the record's end."""
        if self.items is None:
            return list(cells)
        selected: list[Any] = []
        for item in self.items:
            if isinstance(item, slice):
                selected.extend(cells[item])
            elif -len(cells) <= item < len(cells):
                selected.append(cells[item])
            else:
                raise FilterError(
                    f"the filter {self.expression} selects index {item} of a record with {len(cells)} columns"
                )
        return selected


def parse_filter(expression: str | None, member: str) -> CsvFilter:
    """Parse an InputFilter or OutputFilter (``member`` names it in errors); empty means ``$``."""
    text = (expression or "$").strip()
    if text == "$":
        return CsvFilter("$", None)
    if not (text.startswith("$[") and text.endswith("]")) or len(text) < 4:
        raise SageMakerValidationError(
            f"Invalid DataProcessing.{member} {expression!r}: for CSV data {_LOCAL} other JSONPath operators than "
            "$, $[i], $[i,j], $[a:b], $[a:] and $[:b] (a CSV record is an array of its columns)."
        )
    items: list[int | slice] = []
    for part in text[2:-1].split(","):
        match = _ITEM.match(part.strip())
        if match is None:
            raise SageMakerValidationError(
                f"Invalid DataProcessing.{member} {expression!r}: {part.strip()!r} is neither a column index nor "
                f"a slice start:end of integers ({_LOCAL} steps or names for CSV)."
            )
        if match.group("index") is not None:
            items.append(int(match.group("index")))
        else:
            # End excluded, as the table defines the operator (Array.slice(), Jayway JsonPath), although
            # the page's prose calls "$[1:4]" the second through fifth columns.
            start, end = match.group("start"), match.group("end")
            items.append(slice(int(start) if start else None, int(end) if end else None))
    return CsvFilter(text, tuple(items))


def split_csv_record(record: str) -> list[str]:
    """The cells of one CSV line (RFC 4180 quoting)."""
    return next(csv.reader([record]), [])


def join_csv_record(cells: Sequence[str]) -> str:
    """One CSV line of ``cells``, quoted only where a cell needs it."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()


def is_csv(content_type: str | None) -> bool:
    """Whether a ContentType or Accept names CSV."""
    return (content_type or "").split(";")[0].strip().lower() in CSV_TYPES


def validate_transform_request(request: Mapping[str, Any]) -> None:
    """Everything CreateTransformJob refuses before the job exists (``SageMakerValidationError``)."""
    validate_request("CreateTransformJob", request)
    _check_payload(request)
    _check_input(request.get("TransformInput") or {})
    output = request.get("TransformOutput") or {}
    if not str(output.get("S3OutputPath", "")).startswith("s3://"):
        raise SageMakerValidationError(
            f"TransformOutput.S3OutputPath {output.get('S3OutputPath')!r}: {_LOCAL} https:// S3 URLs; use s3://."
        )
    if request.get("DataCaptureConfig"):
        raise SageMakerValidationError(f"DataCaptureConfig: {_LOCAL} data capture of batch transform jobs.")
    _check_data_processing(request)


def _check_payload(request: Mapping[str, Any]) -> None:
    # The wording of the two documented limits is INFERRED: nobody has recorded AWS's.
    payload = request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
    concurrent = request.get("MaxConcurrentTransforms") or 1
    if payload > MAX_PAYLOAD_MB:
        raise SageMakerValidationError(
            f"MaxPayloadInMB {payload} is greater than the maximum payload size of {MAX_PAYLOAD_MB} MB."
        )
    if payload * concurrent > MAX_PAYLOAD_MB:
        raise SageMakerValidationError(
            f"MaxConcurrentTransforms * MaxPayloadInMB ({concurrent} * {payload} = {concurrent * payload} MB) "
            f"must not exceed {MAX_PAYLOAD_MB} MB."
        )
    if payload == 0:
        raise SageMakerValidationError(
            f"MaxPayloadInMB 0 asks for HTTP chunked encoding, which {_LOCAL} (nor do SageMaker's built-in "
            "algorithms); give a payload size from 1 to 100 MB."
        )


def _check_input(transform_input: Mapping[str, Any]) -> None:
    source = (transform_input.get("DataSource") or {}).get("S3DataSource") or {}
    if source.get("S3DataType") not in ("S3Prefix", "ManifestFile"):
        raise SageMakerValidationError(
            f"TransformInput.DataSource.S3DataSource.S3DataType {source.get('S3DataType')}: {_LOCAL} it "
            "(use S3Prefix or ManifestFile)."
        )
    if not str(source.get("S3Uri", "")).startswith("s3://"):
        raise SageMakerValidationError(
            f"TransformInput.DataSource.S3DataSource.S3Uri {source.get('S3Uri')!r}: {_LOCAL} https:// S3 URLs; "
            "use s3://."
        )
    split = transform_input.get("SplitType", "None")
    if split not in ("None", "Line"):
        raise SageMakerValidationError(f"TransformInput.SplitType {split}: {_LOCAL} it (use Line or None).")


def _check_data_processing(request: Mapping[str, Any]) -> None:
    processing = request.get("DataProcessing") or {}
    transform_input = request.get("TransformInput") or {}
    input_filter = parse_filter(processing.get("InputFilter"), "InputFilter")
    output_filter = parse_filter(processing.get("OutputFilter"), "OutputFilter")
    joined = processing.get("JoinSource", "None") == "Input"
    if input_filter.items is None and output_filter.items is None and not joined:
        return
    if not is_csv(transform_input.get("ContentType")):
        raise SageMakerValidationError(
            f"DataProcessing with TransformInput.ContentType {transform_input.get('ContentType')!r}: {_LOCAL} "
            "input filters, output filters or joins on anything but text/csv."
        )
    if transform_input.get("SplitType", "None") != "Line":
        raise SageMakerValidationError(
            f"DataProcessing with TransformInput.SplitType {transform_input.get('SplitType', 'None')}: {_LOCAL} "
            "filters or joins on records that are not lines (set SplitType to Line)."
        )
    if (joined or output_filter.items is not None) and not is_csv(
        (request.get("TransformOutput") or {}).get("Accept") or "text/csv"
    ):
        raise SageMakerValidationError(
            f"DataProcessing.JoinSource or OutputFilter with TransformOutput.Accept "
            f"{request['TransformOutput'].get('Accept')!r}: {_LOCAL} joining or filtering other output than text/csv."
        )
