"""stepml preprocessing: the AWS Glue 5.0 (Spark 3.5) job of the pipeline's Preprocess step.

It reads one uploaded file (CSV or Parquet) at the version the run recorded
(``--input_version_id``, see ``pinned_input``), validates it against the dataset config,
cleans it (drops unlabeled rows, imputes numeric medians, marks missing categories),
encodes it for SageMaker's built-in XGBoost, splits it deterministically by hashing a row
key and writes, under ``--output_uri``::

    train/        headerless CSV, label first, then the features in config order
    validation/   headerless CSV, same layout
    test/         headerless CSV, label first, then the features as uploaded in config order (raw,
                  for the endpoint's preprocessor: evaluation scores the model as production serves
                  it); headerless because SageMaker Batch Transform, which scores a large test
                  split, sends every line of a file to the model and has no way to skip a header
    statistics.json   the data-quality baseline of the training split's raw features and
    constraints.json  the constraints suggested from it, in SageMaker Model Monitor's formats
    manifest.json     fingerprint, row counts, label distribution, encodings, feature order, versions
    encoding.json     the fitted encoding the serving preprocessor applies to raw rows
                      (feature order and types, category codes, medians; see ``encoding_document``)

This file is uploaded as the job script on its own, so it imports nothing from ``stepml``: SAM
packages only a Glue job's ``Command.ScriptLocation``, and Glue 5.0 provides no pydantic. The
dataset config's schema lives once, in ``stepml.config``: ResolveRun validates the config with it
and the run passes the model's JSON dump, which ``parse_config`` reads without re-checking.
Everything runs in the JVM (no Python UDFs), so the job scales with the Glue workers. The
same script runs locally on pyspark 3.5 with local paths instead of ``s3://`` URIs.

A problem with the upload raises ``PreprocessError``; its message starts with the input URI
and names the problem, the column and the line, and fails the Glue job run with it.

CSV input: UTF-8, a header line, one record per line (RFC 4180 quoting, but no line breaks
inside quoted values, so that large files split across workers and every message can name
the exact line). Empty or blank values are missing values.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyspark
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

LOGGER = logging.getLogger("stepml.preprocess")

REQUIRED_ARGUMENTS = ("run_id", "input_uri", "output_uri", "dataset_config")
OPTIONAL_ARGUMENTS = ("input_version_id", "code_version", "TempDir")
#: Under ``--TempDir``: the copy of the recorded upload version the job reads (see ``pinned_input``).
PINNED_INPUT_FOLDER = "stepml-input"

SUPPORTED_EXTENSIONS = (".csv", ".parquet")
#: The category that replaces a missing categorical value before encoding.
MISSING_CATEGORY = "__missing__"
#: Rows are split by ``pmod(xxhash64(key), HASH_BUCKETS)`` against the cumulative fractions.
HASH_BUCKETS = 10_000
#: Header names are listed in messages up to this many.
NAMES_IN_MESSAGES = 12

# A plain decimal number; stricter than Spark's cast, which also takes "1.5d", "0x1p3", "NaN" and "Infinity".
NUMBER_PATTERN = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
_LARGEST_DOUBLE = 1.7976931348623157e308
_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
_GLOB_CHARACTERS = re.compile(r"([\\\[\]{}*?])")
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")
#: The header is read from the first bytes of the file; a longer first line is not a CSV header.
HEAD_BYTES = 1 << 20
_BINARY_SIGNATURES = {
    b"PK\x03\x04": "a zip archive (an Excel workbook?)",
    b"\x1f\x8b": "a gzip archive",
    b"PAR1": "a Parquet file",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
}
#: Byte order marks of the Unicode encodings other than UTF-8 (UTF-32 first: its LE mark starts like UTF-16's).
_OTHER_UNICODE_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}

# Helper columns; the prefix keeps them apart from the upload's own columns.
ROW_ID = "__stepml_row_id"
CORRUPT = "__stepml_corrupt"
BAD_UTF8 = "__stepml_bad_utf8"
HAS_NUL = "__stepml_has_nul"
SPLIT = "__stepml_split"
#: Before: a numeric feature's value parsed once (``_number``) into the cached frame (see ``prepare``).
NUMBER_PREFIX = "__stepml_number_"
SPLITS = ("train", "validation", "test")
#: Prefix of the copies of the raw feature values that the test split keeps.
RAW_COPY = "__stepml_raw_"
#: The labels of a binary dataset whose config names no ``classes``, as written in the file
#: (CSV text, or a Parquet integer column): 0 negative, 1 positive. Others need ``classes``.
BINARY_LABELS = ("0", "1")

# monotonically_increasing_id() puts the partition index above bit 33 of the row id.
_PARTITION_SHIFT = 33
_ROW_IN_PARTITION = (1 << _PARTITION_SHIFT) - 1

#: Spark settings of a local run (not on Glue): a job on a small shared machine starts and fails
#: or finishes faster with one task thread, a few shuffle partitions, no web UI and the serial
#: collector. The JIT keeps both its compilers: the local engine's driver JVMs are long-lived, and
#: with the quick C1 compiler alone (``-XX:TieredStopAtLevel=1``, once here for cold starts) the
#: job took 33.1 s at 500,000 rows against 12.0 s with C2 too, and 5.9 s against 4.8 s at 50,000.
#: The price is the cold driver's first run, while C2 compiles: `stepml demo`'s 5,000 rows 22.7 s
#: against 15.7 s. The cached input is kept uncompressed: at 500,000 rows compression took about
#: 2 s of the job's 13 for a cache only a fifth smaller (20.2 MiB against 25.5 MiB).
LOCAL_SPARK_CONFIG = {
    "spark.master": "local[1]",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC",
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}

# Commit without a _SUCCESS object: SageMaker's S3Prefix channels read every object under a prefix.
NO_SUCCESS_MARKER = "mapreduce.fileoutputcommitter.marksuccessfuljobs"


class PreprocessError(Exception):
    """The upload (or the job's arguments) cannot be preprocessed; the message says why and where."""


# --- the dataset config -------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """A configured input column and how it is treated."""

    name: str
    type: str


@dataclass(frozen=True)
class JobConfig:
    """The part of the dataset config this job reads (its rules and defaults live in stepml.config)."""

    name: str
    label: str
    problem_type: str
    features: tuple[Feature, ...]
    classes: tuple[str, ...] | None
    row_key: str | None
    split: Mapping[str, float]
    csv_delimiter: str
    min_rows: int

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def parse_config(raw: str | Mapping[str, Any], source: str) -> JobConfig:
    """Read the dataset config the state machine passes (``--dataset_config``).

    The config has one schema, ``stepml.config.DatasetConfig``; ResolveRun validated the
    dataset's config with it and the run carries the model's JSON dump, every default filled.
    The job reads that document and does not re-check its rules: a document that is not such
    a dump (a hand-run job given a raw config) fails naming the field, with ``source`` first.
    """

    def fail(problem: str) -> PreprocessError:
        return PreprocessError(f"{source}: dataset config {problem}")

    data = _config_document(raw, fail)
    missing = [key for key in _CONFIG_FIELDS if key not in data]
    if missing:
        raise fail(
            f"lacks {', '.join(repr(key) for key in missing)}: the job reads the config as stepml.config's "
            "model dumps it (ResolveRun validates the dataset's config and passes that document)"
        )
    try:
        features = tuple(Feature(str(item["name"]), str(item["type"])) for item in data["features"])
        split = {name: float(data["split"][name]) for name in SPLITS}
        classes = data["classes"]
        return JobConfig(
            name=str(data["name"]),
            label=str(data["label"]),
            problem_type=str(data["problem_type"]),
            features=features,
            classes=tuple(str(value) for value in classes) if classes is not None else None,
            row_key=data["row_key"],
            split=split,
            csv_delimiter=str(data["csv_delimiter"]),
            min_rows=int(data["min_rows"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"is not a stepml.config dump: {type(exc).__name__}: {exc}") from exc


#: The fields of ``stepml.config.DatasetConfig``'s dump that this job reads.
_CONFIG_FIELDS = (
    "name",
    "label",
    "problem_type",
    "features",
    "classes",
    "row_key",
    "split",
    "csv_delimiter",
    "min_rows",
)

_Fail = Callable[[str], PreprocessError]


def _config_document(raw: str | Mapping[str, Any], fail: _Fail) -> Mapping[str, Any]:
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise fail(f"(--dataset_config) is not valid JSON: {exc}") from exc
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise fail("(--dataset_config) must be a JSON object")
    return data


# --- job arguments and the Spark session ---------------------------------------------------


def resolve_arguments(argv: Sequence[str]) -> dict[str, str]:
    """The job's ``--name value`` arguments, as Glue's ``getResolvedOptions`` resolves them.

    ``argv`` is the full ``sys.argv`` (script name first). Required names must be present;
    optional names are resolved only when given. Glue's own arguments are ignored.
    """
    names = list(REQUIRED_ARGUMENTS) + [name for name in OPTIONAL_ARGUMENTS if f"--{name}" in argv]
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(prog="preprocess.py", allow_abbrev=False)
        for name in names:
            parser.add_argument(f"--{name}", required=True)
        known, _ = parser.parse_known_args(list(argv[1:]))
        return {name: getattr(known, name) for name in names}
    return dict(getResolvedOptions(list(argv), names))


def create_spark_session() -> SparkSession:
    """Glue's SparkSession on Glue; otherwise the active (or a new local) session."""
    try:
        from awsglue.context import GlueContext
    except ImportError:
        # No progress bars: they share lines with the error message in the job's log.
        builder = SparkSession.builder.appName("stepml-preprocess").config("spark.ui.showConsoleProgress", "false")
        for key, value in LOCAL_SPARK_CONFIG.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    else:
        from pyspark.context import SparkContext

        spark = GlueContext(SparkContext.getOrCreate()).spark_session
    spark.sparkContext._jsc.hadoopConfiguration().set(NO_SUCCESS_MARKER, "false")
    return spark


# --- the upload version the run recorded ---------------------------------------------------


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _client_error(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', str(exc))}"


@contextlib.contextmanager
def pinned_input(arguments: Mapping[str, str], *, s3_client: Any) -> Iterator[str]:
    """The URI to read: exactly the upload version ResolveRun recorded (``--input_version_id``).

    Spark's S3 connector reads only the newest version of a key, so an upload to the same key
    between ResolveRun and this job would be processed under the earlier run's lineage. The
    recorded version is copied server-side (CopyObject with the version id; boto3's managed copy
    switches to multipart UploadPartCopy for large objects, so no byte passes through the driver
    and objects above CopyObject's 5 GB limit work too) to a run-scoped key under ``--TempDir``;
    Spark reads that copy, and the copy's version is deleted afterwards so the versioned artifact
    bucket keeps nothing of it. A local path (the local Glue engine stages the version itself)
    and the version ``null`` (an object written before versioning) are read as given.
    """
    uri, version = arguments["input_uri"], arguments.get("input_version_id") or "null"
    if not uri.startswith("s3://") or version == "null":
        yield uri
        return
    temp = arguments.get("TempDir") or ""
    if not temp.startswith("s3://"):
        raise PreprocessError(f"{uri}: --TempDir is needed to read version {version} of the upload, got {temp!r}")
    bucket, key = _split_s3(uri)
    temp_bucket, temp_prefix = _split_s3(temp.rstrip("/") + "/")
    pinned_key = f"{temp_prefix}{PINNED_INPUT_FOLDER}/{arguments['run_id']}/{key.rsplit('/', 1)[-1]}"
    try:
        s3_client.copy(
            {"Bucket": bucket, "Key": key, "VersionId": version},
            temp_bucket,
            pinned_key,
            ExtraArgs={"ServerSideEncryption": "AES256"},
        )
        pinned_version = s3_client.head_object(Bucket=temp_bucket, Key=pinned_key).get("VersionId")
    except Exception as exc:  # botocore's ClientError and the transfer manager's own errors
        raise PreprocessError(f"{uri}: cannot read version {version} of the upload: {_client_error(exc)}") from exc
    LOGGER.info("reading version %s of %s from its copy s3://%s/%s", version, uri, temp_bucket, pinned_key)
    try:
        yield f"s3://{temp_bucket}/{pinned_key}"
    finally:
        extra = {"VersionId": pinned_version} if pinned_version and pinned_version != "null" else {}
        try:
            s3_client.delete_object(Bucket=temp_bucket, Key=pinned_key, **extra)
        except Exception as exc:  # the run's outcome stands; the copy lies under the scratch prefix
            LOGGER.warning("could not delete the copy s3://%s/%s: %s", temp_bucket, pinned_key, _client_error(exc))


# --- files through the Hadoop FileSystem API (s3:// on Glue, local paths locally) ----------


def _hadoop_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _literal(uri: str) -> str:
    """``uri`` with glob characters escaped: Spark's readers treat paths as glob patterns."""
    return _GLOB_CHARACTERS.sub(r"\\\1", uri)


def _java_message(exc: Exception) -> str:
    """The Java exception's own message rather than py4j's multi-line wrapper."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def input_size(spark: SparkSession, uri: str) -> int:
    """The size of the input object in bytes; ``PreprocessError`` when it does not exist."""
    filesystem, path = _hadoop_path(spark, uri)
    try:
        exists = filesystem.exists(path)
    except Py4JJavaError as exc:  # e.g. access denied
        raise PreprocessError(f"{uri}: cannot read the input file: {_java_message(exc)}") from exc
    if not exists:
        raise PreprocessError(f"{uri}: the input file does not exist")
    status = filesystem.getFileStatus(path)
    if status.isDirectory():
        raise PreprocessError(f"{uri}: the input is a folder, not a file")
    return int(status.getLen())


def fingerprint(spark: SparkSession, uri: str) -> str:
    """SHA-256 of the input bytes, streamed through the Hadoop FileSystem inside the JVM."""
    jvm = spark.sparkContext._jvm
    filesystem, path = _hadoop_path(spark, uri)
    digest = jvm.java.security.MessageDigest.getInstance("SHA-256")
    stream = jvm.java.security.DigestInputStream(filesystem.open(path), digest)
    try:
        stream.transferTo(jvm.java.io.OutputStream.nullOutputStream())
    finally:
        stream.close()
    return bytes(digest.digest()).hex()


def _leading_bytes(spark: SparkSession, uri: str, count: int) -> bytes:
    filesystem, path = _hadoop_path(spark, uri)
    stream = filesystem.open(path)
    try:
        return bytes(stream.readNBytes(count))
    finally:
        stream.close()


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small object (statistics, manifest) through the Hadoop FileSystem."""
    filesystem, path = _hadoop_path(spark, uri)
    # Local runs would otherwise leave .crc files beside every output.
    filesystem.setWriteChecksum(False)
    stream = filesystem.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def join_uri(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name


# --- reading --------------------------------------------------------------------------------


def _col(name: str) -> Column:
    """A column by its exact name, whatever characters the upload's header uses."""
    return F.col("`" + name.replace("`", "``") + "`")


def _quote_list(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:NAMES_IN_MESSAGES])
    return shown + (f" and {len(names) - NAMES_IN_MESSAGES} more" if len(names) > NAMES_IN_MESSAGES else "")


@dataclass
class RawInput:
    """The upload as string columns in file order, plus helper columns.

    ``frame`` holds one row per data record with every input column as a string (``None``
    when empty), ``ROW_ID`` (monotonically increasing, in file order) and, for CSV, the
    record's malformed text (``CORRUPT``) and encoding flags (``BAD_UTF8``, ``HAS_NUL``).
    """

    uri: str
    file_format: str
    columns: list[str]
    frame: DataFrame
    numbered: DataFrame
    _offsets: dict[int, int] | None = None

    def locate(self, row_id: int) -> str:
        """Where a row is in the file: ``line N`` for CSV (1 is the header), ``row N`` for Parquet."""
        partition, index = row_id >> _PARTITION_SHIFT, row_id & _ROW_IN_PARTITION
        if partition:
            if self._offsets is None:
                # Only needed for an error in a later partition; the file is scanned again for it.
                counts = dict(
                    self.numbered.groupBy(F.shiftright(F.col(ROW_ID), _PARTITION_SHIFT).alias("p")).count().collect()
                )
                self._offsets, total = {}, 0
                for key in sorted(counts):
                    self._offsets[key] = total
                    total += counts[key]
            index += self._offsets[partition]
        return f"line {index + 1}" if self.file_format == "csv" else f"row {index + 1}"

    def fail(self, problem: str) -> PreprocessError:
        return PreprocessError(f"{self.uri}: {problem}")


def file_format_of(uri: str) -> str:
    """``csv`` or ``parquet`` from the file name; ``PreprocessError`` naming any other extension."""
    file_name = uri.rstrip("/").rsplit("/", 1)[-1]
    extension = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if extension not in SUPPORTED_EXTENSIONS:
        shown = f"extension '{extension}'" if extension else "no extension"
        raise PreprocessError(
            f"{uri}: unsupported file type: '{file_name}' has {shown}; upload a .csv or .parquet file"
        )
    return extension[1:]


def read_input(spark: SparkSession, uri: str, config: JobConfig) -> RawInput:
    """Read the upload and check its header against the config (columns, duplicates, encoding).

    Row-level checks (types, labels, counts) are ``profile_input``'s.
    """
    file_format = file_format_of(uri)
    if input_size(spark, uri) == 0:
        raise PreprocessError(f"{uri}: the file is empty (0 bytes)")
    raw = _read_csv(spark, uri, config) if file_format == "csv" else _read_parquet(spark, uri)
    _check_columns(raw, config)
    return raw


def _read_csv(spark: SparkSession, uri: str, config: JobConfig) -> RawInput:
    header_line = _header_line(spark, uri)
    try:
        names = [name.strip() for name in next(csv.reader([header_line], delimiter=config.csv_delimiter))]
    except csv.Error as exc:
        raise PreprocessError(f"{uri}: line 1 (the header) is not valid CSV: {exc}") from exc
    for position, name in enumerate(names, start=1):
        if not name:
            raise PreprocessError(f"{uri}: line 1 (the header) has no name for column {position}")
    _check_unique(uri, names, "line 1 (the header)")

    # Read as text first: Spark's CSV reader silently skips blank lines and replaces bad bytes,
    # which would make the line numbers in messages wrong and hide encoding problems. Then
    # parse the data lines with Spark's CSV parser under positional names and take the header's.
    text = F.col("value")
    raw_bytes = text.cast("binary")
    numbered = spark.read.text(_literal(uri)).select(
        text,
        F.monotonically_increasing_id().alias(ROW_ID),
        (F.encode(F.decode(raw_bytes, "UTF-8"), "UTF-8") != raw_bytes).alias(BAD_UTF8),
        (F.instr(text, "\u0000") > 0).alias(HAS_NUL),
    )
    positional = [f"_c{i}" for i in range(len(names))]
    schema = ", ".join(f"{name} STRING" for name in [*positional, "_corrupt"])
    options = {
        "sep": config.csv_delimiter,
        "quote": '"',
        "escape": '"',
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": "_corrupt",
    }
    records = numbered.where((F.col(ROW_ID) != 0) & (F.trim(text) != "")).select(
        F.col(ROW_ID),
        F.col(BAD_UTF8),
        F.col(HAS_NUL),
        F.from_csv(text, schema, options).alias("record"),
    )
    frame = records.select(
        *[_blank_to_null(F.col(f"record.{p}")).alias(name) for p, name in zip(positional, names, strict=True)],
        F.col(ROW_ID),
        F.col("record._corrupt").alias(CORRUPT),
        F.col(BAD_UTF8),
        F.col(HAS_NUL),
    )
    return RawInput(uri, "csv", names, frame, numbered.select(ROW_ID))


def _header_line(spark: SparkSession, uri: str) -> str:
    """The first line, read directly (no Spark job); binary files are recognised here."""
    head = _leading_bytes(spark, uri, HEAD_BYTES)
    for magic, kind in _BINARY_SIGNATURES.items():
        if head.startswith(magic):
            raise PreprocessError(f"{uri}: the file is binary, not CSV text: it starts like {kind}")
    for mark, encoding in _OTHER_UNICODE_BOMS.items():
        if head.startswith(mark):
            raise PreprocessError(f"{uri}: the file is {encoding} text, not UTF-8; save the file as UTF-8 CSV")
    if b"\x00" in head:
        line = len(_LINE_BREAK.findall(head[: head.index(b"\x00")])) + 1
        raise PreprocessError(f"{uri}: the file is binary, not CSV text: line {line} contains NUL bytes")
    found = _LINE_BREAK.search(head)
    if found is None and len(head) == HEAD_BYTES:
        raise PreprocessError(f"{uri}: line 1 is longer than {HEAD_BYTES} bytes; the first line must be the header")
    first = head[: found.start()] if found else head
    try:
        header_line = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PreprocessError(
            f"{uri}: line 1 (the header) is not UTF-8 text (byte {first[exc.start]:#04x} at position "
            f"{exc.start + 1}); save the file as UTF-8 CSV"
        ) from exc
    if not header_line.strip():
        raise PreprocessError(f"{uri}: line 1 is empty; the first line must be the header")
    return header_line


def _blank_to_null(value: Column) -> Column:
    return F.when(F.trim(value) != "", value)


def _read_parquet(spark: SparkSession, uri: str) -> RawInput:
    if _leading_bytes(spark, uri, 4) != b"PAR1":
        raise PreprocessError(f"{uri}: not a Parquet file (it does not start with the PAR1 magic bytes)")
    try:
        source = spark.read.parquet(_literal(uri))
        columns = list(source.columns)
    except (Py4JJavaError, PySparkException) as exc:  # an unreadable footer or schema
        raise PreprocessError(f"{uri}: cannot read the Parquet file: {_java_message(exc)}") from exc
    _check_unique(uri, columns, "the Parquet schema")
    types = dict(source.dtypes)

    def as_text(name: str) -> Column:
        value = _col(name)
        if types[name] in ("float", "double"):
            value = F.when(~F.isnan(value), value)  # NaN is how pandas and Spark write a missing number
        return _blank_to_null(value.cast("string")).alias(name)

    numbered = source.select(*[_col(c) for c in columns], F.monotonically_increasing_id().alias(ROW_ID))
    frame = numbered.select(
        *[as_text(c) for c in columns],
        F.col(ROW_ID),
        F.lit(None).cast("string").alias(CORRUPT),
        F.lit(False).alias(BAD_UTF8),
        F.lit(False).alias(HAS_NUL),
    )
    return RawInput(uri, "parquet", columns, frame, numbered.select(ROW_ID))


def _check_unique(uri: str, names: Sequence[str], where: str) -> None:
    # Spark resolves column names ignoring case, so 'Age' and 'age' would be ambiguous too.
    seen: dict[str, str] = {}
    duplicates = []
    for name in names:
        if name.lower() in seen:
            duplicates.append(name if seen[name.lower()] == name else f"{seen[name.lower()]}/{name}")
        seen.setdefault(name.lower(), name)
    if duplicates:
        raise PreprocessError(f"{uri}: {where} has duplicate column names: {_quote_list(sorted(set(duplicates)))}")


def _check_columns(raw: RawInput, config: JobConfig) -> None:
    present = set(raw.columns)
    where = "the header (line 1)" if raw.file_format == "csv" else "the Parquet columns"
    problems = []
    if config.label not in present:
        problems.append(f"label column {config.label!r}")
    missing_features = [name for name in config.feature_names if name not in present]
    if missing_features:
        noun = "feature column" if len(missing_features) == 1 else "feature columns"
        problems.append(f"{noun} {_quote_list(missing_features)}")
    if config.row_key and config.row_key not in present:
        problems.append(f"row_key column {config.row_key!r}")
    if not problems:
        return
    message = f"{' and '.join(problems)} missing from {where}, which has {len(raw.columns)} column(s): "
    message += _quote_list(raw.columns)
    by_case = {name.lower(): name for name in raw.columns}
    wanted = [config.label, *missing_features, *([config.row_key] if config.row_key else [])]
    near = [
        f"{by_case[name.lower()]!r} for {name!r}" for name in wanted if name not in present and name.lower() in by_case
    ]
    if near:
        message += f"; column names are case-sensitive (found {', '.join(near)})"
    if raw.file_format == "csv":
        header = raw.columns[0] if len(raw.columns) == 1 else ""
        others = [d for d in _CANDIDATE_DELIMITERS if d != config.csv_delimiter and d in header]
        if others:
            message += (
                f"; the header looks delimited by {others[0]!r} but the dataset config's csv_delimiter is "
                f"{config.csv_delimiter!r} (wrong delimiter?)"
            )
    raise raw.fail(message)


# --- profiling and validation ---------------------------------------------------------------


def _number(value: Column) -> Column:
    """The value as a double, or null when it is missing or not a finite decimal number."""
    trimmed = F.trim(value)
    parsed = trimmed.cast("double")
    return F.when(trimmed.rlike(NUMBER_PATTERN) & (F.abs(parsed) <= F.lit(_LARGEST_DOUBLE)), parsed)


def _parsed(columns: Sequence[str], name: str) -> Column:
    """Numeric feature ``name`` as ``_number`` gives it: its parsed column when the frame has
    one (the job's cached frame, ``with_parsed_numbers``), else parsed here."""
    parsed = NUMBER_PREFIX + name
    return _col(parsed) if parsed in columns else _number(_col(name))


def with_parsed_numbers(frame: DataFrame, config: JobConfig) -> DataFrame:
    """``frame`` plus each numeric feature parsed once, so that the passes over the cached
    frame compare doubles instead of matching ``NUMBER_PATTERN`` again in every aggregation."""
    return frame.select("*", *[_number(_col(name)).alias(NUMBER_PREFIX + name) for name in config.numeric])


def _is_bad_number(value: Column, number: Column) -> Column:
    return value.isNotNull() & number.isNull()


def _label_text(config: JobConfig) -> Column:
    return F.trim(_col(config.label))


@dataclass
class Profile:
    """What one pass over the data established: counts, numeric statistics, medians."""

    rows: int
    labeled: int
    numeric: dict[str, dict[str, Any]]
    medians: dict[str, float]
    label_numeric: dict[str, Any] | None = None
    label_counts: dict[str, int] = field(default_factory=dict)
    category_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)
    #: The baseline's category counts on the training rows, counted by ``count_values`` in the
    #: same pass.
    baseline_categories: list[dict[str | None, int]] = field(default_factory=list)
    #: The baseline's moments, range, percentiles and fractional count of each numeric feature
    #: on the training rows (``_BASELINE_MOMENTS``), from the profile's pass.
    baseline_numeric: dict[str, dict[str, Any]] = field(default_factory=dict)


#: Spark sorts an object aggregation's groups once a task holds this many (Spark's default
#: threshold); the profile's groups are few and bounded by the features, so they stay hashed.
_FALLBACK_THRESHOLD = "spark.sql.objectHashAggregate.sortBased.fallbackThreshold"
_SPARK_FALLBACK_DEFAULT = 128
#: The baseline's statistics of a numeric feature, as ``_numeric_feature`` names them.
_BASELINE_MOMENTS = ("n", "sum", "std", "min", "max", "frac", "pct")


def profile_input(raw: RawInput, config: JobConfig) -> Profile:
    """Validate every row and gather numeric statistics and medians in one aggregation.

    Raises ``PreprocessError`` for: no data rows, binary or non-UTF-8 lines, records with the
    wrong number of fields, too few rows, no labels, non-numeric values in numeric features
    (or a regression label) and labels outside ``classes``. Statistics cover labeled rows,
    the rows that are kept; the baseline's moments cover the labeled training rows (a frame
    without ``SPLIT`` has none).
    """
    result = _profile_result(raw.frame, config)
    _check_records(raw, config, result)
    _check_values(raw, config, result)
    profile = _profile_of(raw, config, result)
    profile.baseline_numeric = {
        name: {key: result[f"t{key}{i}"] for key in _BASELINE_MOMENTS} for i, name in enumerate(config.numeric)
    }
    return profile


def _profile_long(frame: DataFrame, config: JobConfig) -> DataFrame:
    """The profile's long form: per input row, one entry for the row (``k`` 0), one per numeric
    feature (``k`` its position + 1, with its ``raw`` text and parsed ``number``) and one for the
    label (the last ``k``: its text, and its number for a regression). Only the slots are built
    per feature; what is checked and measured on them is one expression per field, for any width."""
    label = _label_text(config)
    labeled = label.isNotNull() & (label != "")
    train = labeled & (F.col(SPLIT) == "train") if SPLIT in frame.columns else F.lit(False)
    slot = "struct<raw:string,number:double>"
    slots = [F.lit(None).cast(slot)]
    slots += [F.struct(_col(n).alias("raw"), _parsed(frame.columns, n).alias("number")) for n in config.numeric]
    number = _number(label) if config.problem_type == "regression" else F.lit(None).cast("double")
    slots.append(F.struct(label.alias("raw"), number.alias("number")))
    carried = [labeled.alias("labeled"), train.alias("train"), F.col(ROW_ID), F.col(HAS_NUL), F.col(BAD_UTF8)]
    return frame.select(F.posexplode(F.array(*slots)).alias("k", "slot"), *carried, F.col(CORRUPT))


def _long_aggregations() -> list[Column]:
    """The profile's aggregations over ``_profile_entries``' fields, the same for any number of
    features: counts, the earliest row failing each check, the labeled rows' statistics (x) and
    the labeled training rows' (t, the baseline's)."""
    x, t = F.col("x"), F.col("t")
    return [
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(F.col("flag"), True)).alias("flagged"),
        F.min("bad").alias("bad"),
        F.min("utf8").alias("utf8"),
        F.min("corrupt").alias("corrupt"),
        F.count(x).alias("count"),
        F.mean(x).alias("mean"),
        F.stddev_samp(x).alias("std"),
        F.min(x).alias("min"),
        F.max(x).alias("max"),
        F.median(x).alias("median"),
        F.count(t).alias("tn"),
        F.sum(t).alias("tsum"),
        F.stddev_pop(t).alias("tstd"),
        F.min(t).alias("tmin"),
        F.max(t).alias("tmax"),
        F.count(F.when(t != F.floor(t), True)).alias("tfrac"),
        F.percentile_approx(t, BASELINE_PERCENTILES, PERCENTILE_ACCURACY).alias("tpct"),
    ]


def _profile_entries(long: DataFrame, config: JobConfig) -> DataFrame:
    """``_profile_long``'s entries as the fields ``_long_aggregations`` reads: k, whether the entry
    counts (a labeled row, a numeric value that is not a number), the earliest rows failing a
    check (bad, utf8, corrupt), x (a labeled value) and t (a labeled training value)."""
    k, raw, number = F.col("k"), F.col("slot.raw"), F.col("slot.number")
    is_row, is_label = k == 0, k == len(config.numeric) + 1
    is_numeric = ~is_row & ~is_label
    labeled, bad_number = F.col("labeled"), _is_bad_number(raw, number)
    if config.problem_type == "regression":
        bad_label = _first_row(labeled & number.isNull(), raw)
    elif config.classes:
        bad_label = _first_row(labeled & ~raw.isin(*config.classes), raw)
    else:
        bad_label = F.lit(None)
    bad = F.when(is_row, _first_row(F.col(HAS_NUL), F.lit(""))).when(is_numeric, _first_row(bad_number, F.trim(raw)))
    return long.select(
        k,
        F.when(is_row, labeled).when(is_numeric, bad_number).alias("flag"),
        bad.when(is_label, bad_label).alias("bad"),
        F.when(is_row, _first_row(F.col(BAD_UTF8), F.lit(""))).alias("utf8"),
        F.when(is_row, _first_row(F.col(CORRUPT).isNotNull(), F.col(CORRUPT))).alias("corrupt"),
        F.when(is_numeric & labeled, number).when(is_label, number).alias("x"),
        F.when(is_numeric & F.col("train"), number).alias("t"),
    )


def _first_row(condition: Column, value: Column) -> Column:
    """The row (by ROW_ID) and ``value`` where ``condition`` holds, else null: ``min`` of it is
    the earliest such row."""
    return F.when(condition, F.struct(F.col(ROW_ID).alias("row"), value.cast("string").alias("value")))


def _profile_result(frame: DataFrame, config: JobConfig) -> dict[str, Any]:
    """The profile's aggregation, grouped by entry, as one flat mapping named as the checks read it.

    Long form keeps the plan's size fixed: one expression per feature and statistic made a
    200-feature plan take minutes to compile. Each group's values arrive in row order within a
    partition and the partitions merge in order, as in the one-row aggregation it replaces, so
    sums, moments and the approximate percentiles come out the same to the last digit."""
    entries = _profile_entries(_profile_long(frame, config), config)
    grouped = entries.groupBy("k").agg(*_long_aggregations())
    spark = frame.sparkSession
    previous = spark.conf.get(_FALLBACK_THRESHOLD, None)
    # Sorting would feed a group's rows to the percentile sketch in another order (other digits).
    spark.conf.set(_FALLBACK_THRESHOLD, str(max(_SPARK_FALLBACK_DEFAULT, len(config.numeric) + 3)))
    try:
        groups = {row["k"]: row.asDict(recursive=True) for row in grouped.collect()}
    finally:
        if previous is None:
            spark.conf.unset(_FALLBACK_THRESHOLD)
        else:
            spark.conf.set(_FALLBACK_THRESHOLD, previous)
    if not groups:  # no rows: _check_records stops at the count
        return {"rows": 0}
    rows, label = groups[0], groups[len(config.numeric) + 1]
    result: dict[str, Any] = {"rows": rows["n"], "labeled": rows["flagged"], "nul": rows["bad"]}
    result.update(utf8=rows["utf8"], corrupt=rows["corrupt"])
    for position in range(len(config.numeric)):
        found = groups[position + 1]
        result[f"bad{position}"], result[f"badn{position}"] = found["bad"], found["flagged"]
        for key in ("count", "mean", "std", "min", "max", "median"):
            result[f"{key}{position}"] = found[key]
        for key in _BASELINE_MOMENTS:
            result[f"t{key}{position}"] = found["t" + key]
    if config.problem_type == "regression":
        result["label_bad"] = label["bad"]
        for key in ("mean", "std", "min", "max"):
            result[f"label_{key}"] = label[key]
    else:
        result["label_unknown"] = label["bad"]
    return result


def _check_records(raw: RawInput, config: JobConfig, result: Mapping[str, Any]) -> None:
    """The file as a whole: data rows at all, text lines, field counts, enough (labeled) rows."""
    rows = result["rows"]
    if rows == 0:
        raise raw.fail("the file has a header but no data rows" if raw.file_format == "csv" else "the file has no rows")
    if result["nul"]:
        at = raw.locate(result["nul"]["row"])
        raise raw.fail(f"{at} contains NUL bytes: the file is binary, not CSV text")
    if result["utf8"]:
        at = raw.locate(result["utf8"]["row"])
        raise raw.fail(f"{at} has bytes that are not UTF-8 text; save the file as UTF-8 CSV")
    if result["corrupt"]:
        at = raw.locate(result["corrupt"]["row"])
        line = result["corrupt"]["value"]
        hint = (
            "a quoted value seems to span lines, which is not supported"
            if line.count('"') % 2
            else f"delimiter {config.csv_delimiter!r}; quote values that contain it"
        )
        raise raw.fail(
            f"{at} has {_field_count(line, config.csv_delimiter)} field(s) but the header has "
            f"{len(raw.columns)} ({hint})"
        )
    if rows < config.min_rows:
        noun = "data row" if rows == 1 else "data rows"
        raise raw.fail(f"the file has {rows} {noun}; the dataset config needs at least {config.min_rows} (min_rows)")
    if result["labeled"] == 0:
        raise raw.fail(f"label column {config.label!r} is empty on all {rows} rows")


def _check_values(raw: RawInput, config: JobConfig, result: Mapping[str, Any]) -> None:
    """The values: numbers where the config says numeric, labels among the classes, enough labels."""
    problems = []
    for position, name in enumerate(config.numeric):
        bad = result[f"bad{position}"]
        if bad:
            problems.append(
                f"numeric feature {name!r} has a value that is not a number on {raw.locate(bad['row'])}: "
                f"{bad['value']!r} ({result[f'badn{position}']} such row(s))"
            )
    if problems:
        raise raw.fail("; ".join(problems))
    if result.get("label_bad"):
        bad = result["label_bad"]
        raise raw.fail(
            f"label column {config.label!r} must be numeric for a regression problem: "
            f"{raw.locate(bad['row'])} has {bad['value']!r}"
        )
    if result.get("label_unknown"):
        bad = result["label_unknown"]
        raise raw.fail(
            f"label column {config.label!r} has a value that is not one of the configured classes "
            f"{list(config.classes or ())}: {raw.locate(bad['row'])} has {bad['value']!r}"
        )
    if result["labeled"] < config.min_rows:
        raise raw.fail(
            f"only {result['labeled']} of {result['rows']} rows have a value in label column {config.label!r}; "
            f"the dataset config needs at least {config.min_rows} (min_rows)"
        )


def _profile_of(raw: RawInput, config: JobConfig, result: Mapping[str, Any]) -> Profile:
    """The ``Profile`` of a validated aggregation result: per-feature statistics and medians."""
    numeric: dict[str, dict[str, Any]] = {}
    medians: dict[str, float] = {}
    for position, name in enumerate(config.numeric):
        if result[f"median{position}"] is None:
            raise raw.fail(f"numeric feature {name!r} is empty on every labeled row, so there is no median to impute")
        medians[name] = float(result[f"median{position}"])
        numeric[name] = {
            "type": "numeric",
            "count": result[f"count{position}"],
            "missing": result["labeled"] - result[f"count{position}"],
            "mean": result[f"mean{position}"],
            "stddev": result[f"std{position}"],
            "min": result[f"min{position}"],
            "max": result[f"max{position}"],
            "median": medians[name],
        }
    profile = Profile(rows=result["rows"], labeled=result["labeled"], numeric=numeric, medians=medians)
    if config.problem_type == "regression":
        profile.label_numeric = {
            "count": result["labeled"],
            "mean": result["label_mean"],
            "stddev": result["label_std"],
            "min": result["label_min"],
            "max": result["label_max"],
        }
    return profile


def _field_count(line: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delimiter)))
    except (csv.Error, StopIteration):
        return line.count(delimiter) + 1


def _present(value: Column) -> Column:
    """The trimmed value, None when it is missing or blank."""
    return F.when(F.trim(value) != "", F.trim(value))


def count_values(raw: RawInput, config: JobConfig, profile: Profile) -> None:
    """Count the values of the split, a class label and each categorical feature on the kept
    rows, in one job, into ``profile``. Raises ``PreprocessError`` when a binary label does
    not have exactly two classes or a split would be empty."""
    label = _label_text(config)
    kept = assign_split(raw.frame, config, raw.columns).where(label.isNotNull() & (label != ""))
    # Each counted column is numbered so that no column name can be mistaken for another. The
    # categories are counted as the baseline sees them (trimmed, None when missing); ``clean``
    # turns None into MISSING_CATEGORY, and so does the merge below.
    counted_columns = [F.col(SPLIT), *[_present(_col(name)) for name in config.categorical]]
    if config.problem_type != "regression":
        counted_columns.append(label)
    pairs = F.explode(F.array(*[F.struct(F.lit(i).alias("k"), c.alias("v")) for i, c in enumerate(counted_columns)]))
    counts: list[dict[str, int]] = [{} for _ in counted_columns]
    in_train: list[dict[str | None, int]] = [{} for _ in counted_columns]
    grouped = kept.select(pairs.alias("pair"), F.col(SPLIT)).groupBy("pair.k", "pair.v")
    for row in grouped.agg(
        F.count(F.lit(1)).alias("n"), F.count(F.when(F.col(SPLIT) == "train", True)).alias("t")
    ).collect():
        value = MISSING_CATEGORY if row["v"] is None and 0 < row["k"] <= len(config.categorical) else row["v"]
        counts[row["k"]][value] = counts[row["k"]].get(value, 0) + row["n"]
        if row["t"]:
            in_train[row["k"]][row["v"]] = row["t"]
    profile.split_counts = {name: counts[0].get(name, 0) for name in SPLITS}
    profile.category_counts = dict(zip(config.categorical, counts[1 : 1 + len(config.categorical)], strict=True))
    profile.baseline_categories = in_train[1 : 1 + len(config.categorical)]
    if config.problem_type == "regression":
        return _check_splits(raw, config, profile)
    profile.label_counts = counts[-1]
    labels = sorted(profile.label_counts)
    if config.problem_type == "binary" and len(labels) != 2:
        if len(labels) == 1:
            raise raw.fail(
                f"label column {config.label!r} has a single class {labels[0]!r} on all {profile.labeled} labeled "
                "rows; a binary problem needs two"
            )
        raise raw.fail(
            f"label column {config.label!r} has {len(labels)} distinct values ({_quote_list(labels)}); "
            "a binary problem needs exactly two"
        )
    if config.problem_type == "binary" and not config.classes and labels != list(BINARY_LABELS):
        # Sorted order would decide which label is positive (it flips precision and recall).
        raise raw.fail(
            f"label column {config.label!r} has the labels {_quote_list(labels)}; without 'classes' a binary "
            "label must be 0 or 1 (1 the positive class): name both in 'classes', negative first, "
            f'e.g. "classes": [{", ".join(json.dumps(label) for label in labels)}]'
        )
    _check_splits(raw, config, profile)


def _check_splits(raw: RawInput, config: JobConfig, profile: Profile) -> None:
    empty = [name for name in SPLITS if profile.split_counts[name] == 0]
    if empty:
        raise raw.fail(
            f"the {' and '.join(empty)} split(s) would be empty with {profile.labeled} labeled rows and split "
            f"{dict(config.split)}; upload more rows"
        )


# --- cleaning, encoding, splitting ----------------------------------------------------------


def clean(frame: DataFrame, config: JobConfig, medians: Mapping[str, float]) -> DataFrame:
    """Keep labeled rows; numeric features become doubles with missing values set to the
    column's median, categorical features trimmed strings with ``MISSING_CATEGORY`` for
    missing ones, the label a trimmed string. Other columns are kept as they are."""
    label = _label_text(config)
    replaced: dict[str, Column] = {config.label: label}
    for name in config.numeric:
        replaced[name] = F.coalesce(_parsed(frame.columns, name), F.lit(float(medians[name])))
    for name in config.categorical:
        value = F.trim(_col(name))
        replaced[name] = F.when(value.isNull() | (value == ""), F.lit(MISSING_CATEGORY)).otherwise(value)
    kept = frame.where(label.isNotNull() & (label != ""))
    return kept.select(*[(replaced[c].alias(c) if c in replaced else _col(c)) for c in frame.columns])


def assign_split(frame: DataFrame, config: JobConfig, columns: Sequence[str]) -> DataFrame:
    """Add ``SPLIT`` (train / validation / test) from a hash of the row key: ``config.row_key``
    when set, else every input column in file order. The same values always land in the same split.
    A frame that has ``SPLIT`` already (the job's cached frame) is returned as it is."""
    if SPLIT in frame.columns:
        return frame
    key = [_col(config.row_key)] if config.row_key else [_col(name) for name in columns]
    bucket = F.pmod(F.xxhash64(*key), F.lit(HASH_BUCKETS))
    train_end = round(config.split["train"] * HASH_BUCKETS)
    validation_end = round((config.split["train"] + config.split["validation"]) * HASH_BUCKETS)
    split = F.when(bucket < train_end, "train").when(bucket < validation_end, "validation").otherwise("test")
    return frame.withColumn(SPLIT, split)


def label_encoding(config: JobConfig, labels: Sequence[str]) -> dict[str, int] | None:
    """Label value → class index: the ``classes`` order when configured, else sorted values
    (``0`` then ``1`` for a binary label, the only labels allowed without ``classes``).
    ``None`` for regression (the label is used as a number)."""
    if config.problem_type == "regression":
        return None
    ordered = list(config.classes) if config.classes else sorted(labels)
    return {value: index for index, value in enumerate(ordered)}


def categorical_encodings(category_counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Category → ordinal index by sorted distinct value, per categorical feature."""
    return {name: {value: i for i, value in enumerate(sorted(counts))} for name, counts in category_counts.items()}


def _lookup(mapping: Mapping[str, int], value: Column) -> Column:
    pairs = [item for key, index in mapping.items() for item in (F.lit(key), F.lit(index))]
    return F.create_map(*pairs)[value]


def encode(
    frame: DataFrame,
    config: JobConfig,
    labels: Mapping[str, int] | None,
    categories: Mapping[str, Mapping[str, int]],
    keep: Sequence[str] = (),
) -> DataFrame:
    """The model's columns from a cleaned frame: the label (class index, or a double for
    regression), then the features in config order (numeric doubles, categorical indices),
    then the ``keep`` columns unchanged."""
    label = _col(config.label)
    label = label.cast("double") if labels is None else _lookup(labels, label).cast("int")
    features = []
    for feature in config.features:
        value = _col(feature.name)
        if feature.type == "categorical":
            value = _lookup(categories[feature.name], value).cast("int")
        features.append(value.alias(feature.name))
    return frame.select(label.alias(config.label), *features, *[_col(name) for name in keep])


# --- the job --------------------------------------------------------------------------------


@dataclass
class Prepared:
    """The encoded rows (lazy) and everything the manifest and statistics report."""

    raw: RawInput
    profile: Profile
    encoded: DataFrame
    labels: dict[str, int] | None
    categories: dict[str, dict[str, int]]
    feature_names: list[str]


def prepare(spark: SparkSession, uri: str, config: JobConfig) -> Prepared:
    """Read, validate, clean, encode and split the upload (the writes are ``write_outputs``')."""
    raw = read_input(spark, uri, config)
    # The file is read once: the validation pass fills this cache (the split and the parsed
    # numbers included), and the value counts, the baseline and the writes read the cache.
    raw.frame = with_parsed_numbers(assign_split(raw.frame, config, raw.columns), config)
    raw.frame = raw.frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        profile = profile_input(raw, config)
        count_values(raw, config, profile)
    except BaseException:
        raw.frame.unpersist()
        raise
    labels = label_encoding(config, list(profile.label_counts))
    categories = categorical_encodings(profile.category_counts)
    # The split hashes the raw values, so it is computed before cleaning changes them; the test
    # split keeps the raw features too (the endpoint's preprocessor encodes them).
    split = assign_split(raw.frame, config, raw.columns)
    raw_copies = [_col(name).alias(RAW_COPY + name) for name in config.feature_names]
    cleaned = clean(split.select("*", *raw_copies), config, profile.medians)
    keep = [SPLIT, *(RAW_COPY + name for name in config.feature_names)]
    encoded = encode(cleaned, config, labels, categories, keep=keep)
    return Prepared(
        raw=raw,
        profile=profile,
        encoded=encoded,
        labels=labels,
        categories=categories,
        feature_names=config.feature_names,
    )


# --- the monitoring baseline (SageMaker Model Monitor's statistics.json and constraints.json) --

#: Model Monitor's distribution buckets per numeric feature (AWS materialises 10, fixed).
BASELINE_BUCKETS = 10
#: The percentiles (0th to 100th) stored as the KLL sketch's one level (see ``baseline``).
BASELINE_PERCENTILES = [i / 100 for i in range(101)]
#: percentile_approx's accuracy: relative error 1/accuracy of the rank.
PERCENTILE_ACCURACY = 10_000
#: monitoring_config of constraints.json: AWS's documented defaults.
MONITORING_CONFIG = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 0.1,
    "domain_content_threshold": 0.1,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    },
}


def _baseline_numeric(train: DataFrame, config: JobConfig, moments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per numeric feature of the training rows: ``moments`` (the profile's counts, moments,
    range and percentiles), then the ten equal-width bucket counts between min and max (an
    aggregation of its own: it needs the range), in long form: one count per feature and bucket."""
    edges = {}
    for name in config.numeric:
        low, high = moments[name]["min"], moments[name]["max"]
        if low is not None:
            step = (high - low) / BASELINE_BUCKETS
            edges[name] = [low + step * b for b in range(BASELINE_BUCKETS)] + [high]
    counts: dict[tuple[int, int], int] = {}
    if edges:
        # One (position, value) entry per feature, looked up in the edges by position: one JSON
        # text, parsed once when the plan is optimised, so that the plan holds no constant per
        # feature and bucket. (A table from createDataFrame cost a job through Python workers.)
        table = F.from_json(F.lit(json.dumps([edges.get(name) for name in config.numeric])), "array<array<double>>")
        values = F.array(*[_parsed(train.columns, name) for name in config.numeric])
        long = train.select(F.posexplode(values).alias("k", "x"))
        bucket = _bucket_of(F.col("x"), table[F.col("k")])
        for row in long.groupBy("k", bucket.alias("b")).count().where(F.col("b").isNotNull()).collect():
            counts[row["k"], row["b"]] = row["count"]
    result: dict[str, Any] = {}
    for i, name in enumerate(config.numeric):
        cuts = edges.get(name, [])
        result[name] = {**moments[name]}
        result[name]["buckets"] = [
            {"lower_bound": cuts[b], "upper_bound": cuts[b + 1], "count": counts.get((i, b), 0)}
            for b in range(len(cuts) - 1)
        ]
    return result


def _bucket_of(value: Column, edges: Column) -> Column:
    """The bucket ``value`` falls in between ``edges`` (an array of BASELINE_BUCKETS + 1): [lower,
    upper), the last one closed (it holds the maximum); null outside. The edges never decrease,
    so the buckets do not overlap."""
    bucket: Any = F
    for b in range(BASELINE_BUCKETS):
        upper = value <= edges[b + 1] if b == BASELINE_BUCKETS - 1 else value < edges[b + 1]
        bucket = bucket.when((value >= edges[b]) & upper, F.lit(b))
    return bucket


def _numeric_feature(name: str, found: Mapping[str, Any], rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    present = found["n"]
    kind = "Integral" if present and found["frac"] == 0 else "Fractional"
    statistics = {
        "name": name,
        "inferred_type": kind,
        "numerical_statistics": {
            "common": {"num_present": present, "num_missing": rows - present},
            "mean": found["sum"] / present if present else None,
            "sum": found["sum"] or 0.0,
            "std_dev": found["std"],
            "min": found["min"],
            "max": found["max"],
            "distribution": {
                "kll": {
                    "buckets": found["buckets"],
                    # One level of equally weighted items: the percentiles (see ``baseline``).
                    "sketch": {"parameters": {"c": 0.64, "k": 2048.0}, "data": [list(found["pct"] or [])]},
                }
            },
        },
    }
    constraint = {
        "name": name,
        "inferred_type": kind,
        "completeness": present / rows if rows else 0.0,
        "num_constraints": {"is_non_negative": found["min"] is not None and found["min"] >= 0},
    }
    return statistics, constraint


def _string_feature(name: str, counts: Mapping[str | None, int], rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    present = {value: count for value, count in counts.items() if value is not None}
    ordered = sorted(present.items(), key=lambda item: (-item[1], item[0]))
    statistics = {
        "name": name,
        "inferred_type": "String",
        "string_statistics": {
            "common": {"num_present": sum(present.values()), "num_missing": counts.get(None, 0)},
            "distinct_count": len(present),
            "distribution": {"categorical": {"buckets": [{"value": v, "count": c} for v, c in ordered]}},
        },
    }
    constraint = {
        "name": name,
        "inferred_type": "String",
        "completeness": sum(present.values()) / rows if rows else 0.0,
        "string_constraints": {"domains": sorted(present)},
    }
    return statistics, constraint


def baseline(frame: DataFrame, config: JobConfig, profile: Profile) -> tuple[dict[str, Any], dict[str, Any]]:
    """statistics.json and constraints.json of the training split, in Model Monitor's formats.

    Computed over the raw feature columns of the labeled training rows, as the dataset has
    them (before imputation and encoding), in config order, by Spark aggregations only.
    Unlike AWS's analyzer: the KLL section's ``sketch.data`` is one level holding the 0th to
    100th percentiles (``percentile_approx``), equally weighted, not a compactor hierarchy;
    the ten ``buckets`` are exact counts between min and max; ``std_dev`` is the population's.
    ``profile`` holds everything but the bucket counts (the job's passes gathered it).
    """
    label = _label_text(config)
    train = frame.where(label.isNotNull() & (label != "") & (F.col(SPLIT) == "train"))
    numeric = _baseline_numeric(train, config, profile.baseline_numeric)
    categories = dict(zip(config.categorical, profile.baseline_categories, strict=True))
    rows = profile.split_counts["train"]
    features = []
    for feature in config.features:
        if feature.type == "numeric":
            features.append(_numeric_feature(feature.name, numeric[feature.name], rows))
        else:
            features.append(_string_feature(feature.name, categories[feature.name], rows))
    statistics = {"version": 0.0, "dataset": {"item_count": rows}, "features": [s for s, _ in features]}
    constraints = {"version": 0.0, "features": [c for _, c in features], "monitoring_config": MONITORING_CONFIG}
    return statistics, constraints


# --- writing ---------------------------------------------------------------------------------


def write_outputs(spark: SparkSession, prepared: Prepared, output_uri: str) -> dict[str, str]:
    """Write the three splits as headerless CSV, label first (train and validation encoded, test
    with the raw features in config order)."""
    # Each split re-reads the cached input (prepare persisted it): the encoding is a projection.
    filesystem, _ = _hadoop_path(spark, output_uri)
    filesystem.setWriteChecksum(False)  # no .crc files beside the parts on local runs
    paths = {}
    for name in SPLITS:
        paths[name] = join_uri(output_uri, name + "/")
        rows = prepared.encoded.where(F.col(SPLIT) == name)
        raw = [_col(RAW_COPY + feature).alias(feature) for feature in prepared.feature_names]
        # ``encode`` put the label and the encoded features first, the kept columns after them.
        rows = rows.select(rows.columns[0], *raw) if name == "test" else rows.select(*rows.columns[: 1 + len(raw)])
        rows.write.mode("overwrite").option("header", "false").option(NO_SUCCESS_MARKER, "false").csv(paths[name])
    return paths


def build_manifest(
    arguments: Mapping[str, str],
    config: JobConfig,
    prepared: Prepared,
    *,
    digest: str,
    size: int,
    paths: Mapping[str, str],
) -> dict[str, Any]:
    """manifest.json: what was read, what was produced and how (for lineage and for serving)."""
    profile = prepared.profile
    version_id = arguments.get("input_version_id") or None
    return {
        "run_id": arguments["run_id"],
        "dataset": config.name,
        "input": {
            "uri": arguments["input_uri"],
            "version_id": None if version_id == "null" else version_id,
            "format": prepared.raw.file_format,
            "bytes": size,
        },
        "fingerprint": f"sha256:{digest}",
        "row_counts": {
            "input": profile.rows,
            "dropped_unlabeled": profile.rows - profile.labeled,
            "kept": profile.labeled,
            **{name: profile.split_counts[name] for name in SPLITS},
        },
        "columns": prepared.raw.columns,
        "label": {
            "name": config.label,
            "problem_type": config.problem_type,
            "encoding": prepared.labels,
            "distribution": profile.label_counts or None,
            "statistics": profile.label_numeric,
        },
        "feature_order": config.feature_names,
        "features": [{"name": f.name, "type": f.type} for f in config.features],
        "categorical_encodings": prepared.categories,
        "missing_category": MISSING_CATEGORY,
        "imputation": {"numeric": "median", "medians": profile.medians},
        "split": {
            "fractions": dict(config.split),
            "key": config.row_key,
            "method": f"pmod(xxhash64({config.row_key or 'all input columns in file order'}), {HASH_BUCKETS})",
        },
        "outputs": {
            **dict(paths),
            "layout": {
                "train": "CSV, no header, label first",
                "validation": "CSV, no header, label first",
                "test": "CSV, no header, label first, then the raw features in config order",
            },
        },
        "code_version": arguments.get("code_version"),
        "pyspark_version": pyspark.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(spark: SparkSession, arguments: Mapping[str, str], *, read_uri: str | None = None) -> dict[str, Any]:
    """The whole job: returns the manifest it wrote.

    ``read_uri`` is where the bytes are read from when that is not ``--input_uri`` (the pinned
    copy of the recorded version); every message still names the upload.
    """
    source = arguments["input_uri"]
    uri = read_uri or source
    try:
        return _run(spark, arguments, uri)
    except PreprocessError as exc:
        if uri == source:
            raise
        raise PreprocessError(str(exc).replace(uri, source)) from exc


def _run(spark: SparkSession, arguments: Mapping[str, str], uri: str) -> dict[str, Any]:
    output_uri = arguments["output_uri"]
    config = parse_config(arguments["dataset_config"], arguments["input_uri"])
    file_format_of(uri)
    size = input_size(spark, uri)
    digest = fingerprint(spark, uri)
    LOGGER.info("input %s: %d bytes, sha256 %s", uri, size, digest)
    prepared = prepare(spark, uri, config)
    try:
        paths = write_outputs(spark, prepared, output_uri)
        frame = assign_split(prepared.raw.frame, config, prepared.raw.columns)
        statistics, constraints = baseline(frame, config, prepared.profile)
        for name, document in (("statistics", statistics), ("constraints", constraints)):
            paths[name] = join_uri(output_uri, f"{name}.json")
            write_text(spark, paths[name], _json(document))
        paths["encoding"] = join_uri(output_uri, "encoding.json")
        write_text(spark, paths["encoding"], _json(encoding_document(config, prepared)))
        paths["manifest"] = join_uri(output_uri, "manifest.json")
        manifest = build_manifest(arguments, config, prepared, digest=digest, size=size, paths=paths)
        write_text(spark, paths["manifest"], _json(manifest))
    finally:
        prepared.raw.frame.unpersist()
    LOGGER.info("wrote %s: %s", output_uri, manifest["row_counts"])
    return manifest


def encoding_document(config: JobConfig, prepared: Prepared) -> dict[str, Any]:
    """encoding.json: what the serving preprocessor (stepml.preprocessor_script) needs to turn a
    raw row into the training rows' encoding, as ``clean`` and ``encode`` did."""
    return {
        "features": [{"name": f.name, "type": f.type} for f in config.features],
        "categories": prepared.categories,
        "missing_category": MISSING_CATEGORY,
        "medians": prepared.profile.medians,
        "number_pattern": NUMBER_PATTERN,
    }


def _json(document: Any) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point on Glue and locally. A ``PreprocessError`` is printed to stderr and
    re-raised, so the job run fails with it as its error message."""
    arguments = resolve_arguments(sys.argv if argv is None else argv)
    spark = create_spark_session()
    try:
        with pinned_input(arguments, s3_client=_s3_client(arguments)) as read_uri:
            return run(spark, arguments, read_uri=read_uri)
    except PreprocessError as exc:
        print(f"PreprocessError: {exc}", file=sys.stderr)
        raise


def _s3_client(arguments: Mapping[str, str]) -> Any:
    """An S3 client when the input is in S3 (on Glue: the job role's credentials), else None."""
    if not arguments["input_uri"].startswith("s3://"):
        return None
    import boto3

    return boto3.client("s3")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
