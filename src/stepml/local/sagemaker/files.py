"""The engine's files: a job's /opt/ml-shaped tree and the tar.gz archives SageMaker moves.

A training job's channels, code, model and outputs live in a ``JobLayout`` as they would
inside the container; models and code arrive as tar.gz archives, extracted with
``safe_extract`` (no member may land outside the target), and leave as ``tar_directory``.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from stepml.local.sagemaker.errors import LocalSageMakerError


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a tar.gz, refusing members that would land outside ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if target != root and root not in target.parents:
                raise LocalSageMakerError(f"{archive.name}: member {member.name!r} points outside the archive")
            if member.issym() or member.islnk():
                raise LocalSageMakerError(f"{archive.name}: links are not allowed (member {member.name!r})")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 also strips odd modes and devices
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)  # noqa: S202 - every member was checked above


def tar_directory(directory: Path, archive: Path) -> None:
    """Archive every file under ``directory`` (paths relative to it) as a tar.gz."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)


@dataclass(frozen=True)
class JobLayout:
    """An /opt/ml-shaped tree for one job."""

    root: Path

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def intermediate_dir(self) -> Path:
        return self.root / "output" / "intermediate"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    def create(self) -> JobLayout:
        for directory in (self.config_dir, self.model_dir, self.output_data_dir, self.intermediate_dir, self.code_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return self
