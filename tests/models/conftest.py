"""Fixtures for the models stage (helpers in models_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from .models_fixtures import save_tiny_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-chat"), chat=True)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-base"), chat=False)
