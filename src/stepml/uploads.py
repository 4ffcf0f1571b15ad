"""What ResolveRun can tell about an upload from its S3 event alone, before any job starts.

An upload whose file type the pipeline cannot read, or an empty object, fails the run at
once with a message naming the object, instead of starting a Glue job to find out. Every
other check needs the file's content and is the Glue job's (``glue_jobs/preprocess.py``
checks these two again, so the job also stands on its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: File types the Glue job reads; the same tuple as ``SUPPORTED_EXTENSIONS`` in glue_jobs/preprocess.py.
SUPPORTED_EXTENSIONS = (".csv", ".parquet")


class BadUploadError(ValueError):
    """The uploaded object cannot be preprocessed; the message names it and the problem."""


def check_upload(upload: Mapping[str, Any]) -> None:
    """Refuse an unsupported file type or an empty object (``upload`` as ``parse_upload`` gives it)."""
    uri = str(upload["uri"])
    file_name = uri.rsplit("/", 1)[-1]
    extension = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if extension not in SUPPORTED_EXTENSIONS:
        shown = f"extension '{extension}'" if extension else "no extension"
        raise BadUploadError(
            f"{uri}: unsupported file type: '{file_name}' has {shown}; upload a "
            f"{' or '.join(SUPPORTED_EXTENSIONS)} file"
        )
    if int(upload.get("size") or 0) == 0:
        raise BadUploadError(f"{uri}: the file is empty (0 bytes)")
