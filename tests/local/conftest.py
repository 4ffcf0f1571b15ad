"""The local cloud tier: one local cloud per module, started from template.yaml."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stepml.local.cloud import LocalCloud
from tests.helpers import local_cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    local = local_cloud(tmp_path_factory.mktemp("cloud"))
    local.start()
    yield local
    local.stop()
