"""The local cloud tier: one local cloud per module, started from template.yaml."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stepml.local.cloud import LocalCloud
from tests.helpers import REPO_ROOT, free_port


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    local = LocalCloud(
        root=REPO_ROOT, state_dir=tmp_path_factory.mktemp("cloud"), port=free_port(), api_port=free_port()
    )
    local.start()
    yield local
    local.stop()
