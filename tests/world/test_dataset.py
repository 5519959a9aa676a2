import os

import numpy as np
import pytest

from flyvis_study.config import load_run_config
from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.dataset import dataset_key, get_dataset, resolve_ground_truth
from flyvis_study.world.simulator import Simulator


def sim_config(seed=0, **extra):
    overrides = {"simulation.seed": seed, "simulation.n_frames": 300, "simulation.stimulus.n_base_clips": 4}
    overrides.update(extra)
    return load_run_config(preset="tiny", overrides=overrides).simulation


@pytest.mark.slow
def test_same_seed_identical_arrays_across_caches(tmp_path):
    a = get_dataset(sim_config(0), root=tmp_path / "a")
    b = get_dataset(sim_config(0), root=tmp_path / "b")
    for name in ("train_v", "train_y", "train_stimulus", "test_v", "test_y"):
        np.testing.assert_array_equal(a.array(name), b.array(name))
    assert isinstance(a.array("train_v"), np.memmap)


@pytest.mark.slow
def test_different_sim_seed_changes_noise_and_order_not_truth(tmp_path):
    a = get_dataset(sim_config(0), root=tmp_path)
    b = get_dataset(sim_config(1), root=tmp_path)
    assert a.path != b.path
    assert not np.array_equal(a.array("train_clip"), b.array("train_clip"))
    assert not np.array_equal(a.array("test_v"), b.array("test_v"))  # noise realisation
    np.testing.assert_array_equal(a.array("test_stimulus"), b.array("test_stimulus"))
    np.testing.assert_array_equal(a.ground_truth.W, b.ground_truth.W)
    np.testing.assert_array_equal(a.ground_truth.V_rest, b.ground_truth.V_rest)


def test_cache_hit_reuses_files(tmp_path):
    a = get_dataset(sim_config(0), root=tmp_path)
    mtime = os.stat(a.path / "train_v.npy").st_mtime_ns
    b = get_dataset(sim_config(0), root=tmp_path)
    assert b.path == a.path and os.stat(b.path / "train_v.npy").st_mtime_ns == mtime
    meta = b.meta
    assert meta["n_frames"]["train"] == 300
    assert set(meta["diagnostics"]["train"]["effective_rank_input"]) == {"90%", "99%"}


def test_killed_generation_leaves_nothing_complete(tmp_path, monkeypatch):
    sim = sim_config(5)

    def boom(self, *args, **kwargs):
        yield from ()
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Simulator, "run", boom)
    with pytest.raises(KeyboardInterrupt):
        get_dataset(sim, root=tmp_path)
    assert not any((p / "meta.json").exists() for p in tmp_path.iterdir())
    monkeypatch.undo()
    ds = get_dataset(sim, root=tmp_path)
    assert (ds.path / "meta.json").is_file() and ds.array("train_v").shape[0] == 300


def test_half_written_folder_is_detected_and_regenerated(tmp_path):
    sim = sim_config(6)
    key = dataset_key(sim, resolve_ground_truth(sim, cached_connectome(sim.extent), tmp_path))
    half = tmp_path / key
    half.mkdir(parents=True)
    (half / "train_v.npy").write_bytes(b"truncated")
    stale = tmp_path / f"{key}.tmp-999999999"
    stale.mkdir()
    ds = get_dataset(sim, root=tmp_path)
    assert ds.path == half and ds.array("train_v").shape == (300, ds.connectome.n_neurons)
    assert not stale.exists()


def test_checkpoint_ground_truth_is_saved_and_named(tmp_path):
    from conftest import reference_file

    ckpt = reference_file("flyvis_flow_0000_000.chkpt")
    sim = sim_config(0, **{"simulation.ground_truth.source": "checkpoint",
                           "simulation.ground_truth.checkpoint": str(ckpt)})
    ds = get_dataset(sim, root=tmp_path)
    assert "flyvis_flow_0000_000" in ds.meta["ground_truth_source"]
    assert ds.meta["diagnostics"]["train"]["n_nonfinite_frames"] == 0


def test_cache_key_depends_on_the_generating_device(tmp_path):
    """CPU and CUDA draw different noise from one seed: a GPU-made dataset is never reused on CPU."""
    sim = sim_config(0)
    params = resolve_ground_truth(sim, cached_connectome(sim.extent), tmp_path)
    assert dataset_key(sim, params, "cpu") != dataset_key(sim, params, "cuda")
    assert dataset_key(sim, params, "cuda:0") == dataset_key(sim, params, "cuda")
    assert dataset_key(sim, params) == dataset_key(sim, params, "cpu")
