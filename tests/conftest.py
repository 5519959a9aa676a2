"""Shared fixtures: tiny worlds, a per-session dataset cache, reference-file skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


def reference_file(name: str) -> Path:
    """Path of a ../shared/reference file, or skip the test when it is absent."""
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference file {path} is absent")
    return path


@pytest.fixture(scope="session")
def expected_counts() -> dict:
    return json.loads(reference_file("connectome_extent8_expected.json").read_text())


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def tiny_config():
    from flyvis_study.config import load_run_config

    return load_run_config(REPO / "params" / "two_stage.yaml", preset="tiny")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_config, dataset_root):
    from flyvis_study.world.dataset import get_dataset

    return get_dataset(tiny_config.simulation, root=dataset_root)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
