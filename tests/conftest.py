"""Shared fixtures: tiny worlds, a per-session dataset cache, reference-file skips."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
# config overrides that make a tiny run take seconds: a sliver of the iterations, a small GMM,
# short rollout and test windows (every test that trains a run uses them)
FAST = {"training.iterations_fraction": 0.004, "evaluation.gmm_components": 10, "evaluation.rollout_frames": 50,
        "evaluation.test_frames": 200}
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


def reference_file(name: str) -> Path:
    """Path of a ../shared/reference file, or skip the test when it is absent."""
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference file {path} is absent")
    return path


def fake_flyvis_root(root: Path, model_id: str, layout: str = "best") -> None:
    """A flyvis data directory as `flyvis download-pretrained` leaves it, holding one network
    (V_rest from -0.5 to 0.5 over the 65 types, tau 50 ms, every strength 0.01): its
    ``results/<id>/best_chkpt``, or (layout "chkpts") two ``chkpts/chkpt_*`` of which the last
    by number is that network."""
    import numpy as np

    from flyvis_study.world.connectome import cached_connectome

    ref = cached_connectome(8)
    network = root / "results" / model_id
    state = {"network": {
        "nodes_bias": torch.linspace(-0.5, 0.5, 65, dtype=torch.float64),
        "nodes_time_const": torch.full((65,), 0.05, dtype=torch.float64),
        "edges_sign": torch.from_numpy(ref.edge_type_sign.astype(np.float64)),
        "edges_syn_count": torch.log(torch.from_numpy(ref.group_nsyn.astype(np.float64))),
        "edges_syn_strength": torch.full((604,), 0.01, dtype=torch.float64)}}
    if layout == "best":
        network.mkdir(parents=True)
        torch.save(state, network / "best_chkpt")
    else:
        (network / "chkpts").mkdir(parents=True)
        torch.save({"network": {k: v * 0 for k, v in state["network"].items()}}, network / "chkpts" / "chkpt_00002")
        torch.save(state, network / "chkpts" / "chkpt_00010")


@pytest.fixture(scope="session")
def expected_counts() -> dict:
    return json.loads(reference_file("connectome_extent8_expected.json").read_text())


# pytest-xdist: the name of this worker process ("gw0", ...); None in a plain run
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_configure(config):
    """Under pytest-xdist each worker, and every kernel, CLI and Dask process it starts, computes
    on one thread: two workers with torch's default of one thread per core would oversubscribe
    the cores (docs/development.md)."""
    if XDIST_WORKER is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"  # for the processes it starts
        torch.set_num_threads(1)
        threadpool_limits(1)  # numpy's BLAS was loaded (with torch) before this ran: limit it in place


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    """One dataset cache per session; under pytest-xdist one shared by the workers (the cache
    lets one process generate a key while the others wait: ``world.dataset``)."""
    if XDIST_WORKER is None:
        return tmp_path_factory.mktemp("datasets")
    root = tmp_path_factory.getbasetemp().parent / "datasets"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tiny_config():
    from flyvis_study.config import load_run_config

    return load_run_config(REPO / "params" / "two_stage.yaml", preset="tiny")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_config, dataset_root):
    from flyvis_study.world.dataset import get_dataset

    return get_dataset(tiny_config.simulation, root=dataset_root)


@pytest.fixture(scope="session")
def tiny_blocks(tmp_path_factory, dataset_root) -> dict[int, dict[str, Path]]:
    """Blocks 0 (2 seed pairs) and 1 (3 pairs) at the tiny preset with FAST, executed once per
    session through their notebooks (papermill, HTML, netCDF) into one folder, as the README's
    main job does: {block: {"ipynb", "html", "nc"}}. For the tests that only read them; a test
    that writes copies the folder first (``copy_tiny_blocks``): its blocks then reuse these runs."""
    from flyvis_study.report.notebooks import execute_block

    folder = tmp_path_factory.mktemp("tiny_blocks")
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(folder)}
    return {0: execute_block(0, {**common, "replicates": 2}), 1: execute_block(1, {**common, "replicates": 3})}


def copy_tiny_blocks(tiny_blocks: dict[int, dict[str, Path]], dest: Path) -> Path:
    """A writable copy of the ``tiny_blocks`` folder at ``dest`` (its runs, block files, reports)."""
    shutil.copytree(tiny_blocks[0]["nc"].parent, dest)
    return dest


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    # under `pytest -n N --dist loadgroup` the tests that read the session's tiny blocks share a
    # worker, so the blocks are executed once, not once per worker
    for item in items:
        if "tiny_blocks" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_blocks"))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
