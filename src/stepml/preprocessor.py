"""The preprocessor's model artifact: the Glue job's fitted encoding and the inference script.

The production model is a SageMaker inference pipeline (statemachine/pipeline.asl.json,
"Create model"): the Scikit-learn serving container runs ``stepml.preprocessor_script`` on
the raw rows, then XGBoost scores what it answers. The model runs with network isolation, so
the container cannot fetch its code from S3: as the SageMaker SDK does for such models, the
script travels inside the model data (``code/inference.py``, with ``SAGEMAKER_SUBMIT_DIRECTORY``
``/opt/ml/model/code``). ``package`` builds that ``model.tar.gz`` from the ``encoding.json`` the
Glue job wrote and uploads it beside it; RecordStep runs it when it records the preprocessing
step (the Lambda layer carries this repository's script; the Glue job ships only its own).

The archive is byte-for-byte the same for the same encoding (fixed member order, times and
owners), so a reproduced run packages the identical artifact.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml import preprocessor_script
from stepml.utils import S3UriError, split_s3_uri

#: What the container runs (``SAGEMAKER_PROGRAM``) and where it finds it inside the model data.
PROGRAM = "inference.py"
SUBMIT_DIRECTORY = "/opt/ml/model/code"
#: Imported rather than named so that the layer build (``stepml.packaging``: modules found by their
#: imports) ships the script with this module.
SCRIPT = Path(preprocessor_script.__file__)


class PreprocessorError(Exception):
    """The preprocessor's artifact cannot be built or written."""


def _member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def build_archive(encoding: bytes, script: bytes | None = None) -> bytes:
    """``model.tar.gz`` holding ``encoding.json`` and ``code/inference.py``, reproducibly."""
    try:
        json.loads(encoding)
    except ValueError as exc:
        raise PreprocessorError(f"encoding.json is not JSON: {exc}") from exc
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _member(archive, "encoding.json", encoding)
        _member(archive, f"code/{PROGRAM}", SCRIPT.read_bytes() if script is None else script)
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def package(s3_client: Any, encoding_uri: str, archive_uri: str) -> str:
    """Read ``encoding_uri``, write the archive to ``archive_uri`` (SSE-S3); the archive's URI."""
    try:
        bucket, key = split_s3_uri(encoding_uri)
        encoding = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        bucket, key = split_s3_uri(archive_uri)
        s3_client.put_object(
            Bucket=bucket,
            Key=key,
            Body=build_archive(encoding),
            ContentType="application/gzip",
            ServerSideEncryption="AES256",
        )
    except (ClientError, BotoCoreError, S3UriError) as exc:
        raise PreprocessorError(f"preprocessor model {archive_uri} from {encoding_uri}: {exc}") from exc
    return archive_uri


def container(image: str, model_data: str) -> dict[str, Any]:
    """The pipeline's first container definition (CreateModel ``Containers[0]``)."""
    return {
        "Image": image,
        "ModelDataUrl": model_data,
        "Environment": {
            "SAGEMAKER_PROGRAM": PROGRAM,
            "SAGEMAKER_SUBMIT_DIRECTORY": SUBMIT_DIRECTORY,
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        },
    }
