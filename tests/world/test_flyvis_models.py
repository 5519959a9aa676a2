"""The built-in flyvis network flow/0000/000, other flyvis ids from FLYVIS_ROOT_DIR, and which
ground truth each preset uses."""

import json
import shutil

import numpy as np
import pytest
from conftest import REFERENCE, fake_flyvis_root, reference_file

from flyvis_study.config import ConfigError, load_run_config
from flyvis_study.flyvis_ids import BUILTIN_MODELS, builtin_model_file
from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.flyvis_models import flyvis_model_params
from flyvis_study.world.ground_truth import instantiate, load_flyvis_checkpoint, w_statistics

# W statistics of flow/0000/000 on the extent-8 connectome, as in the reference counts file
# ../shared/reference/connectome_extent8_expected.json ("W_with_flyvis_000"; 4-5 digits)
EXPECTED_W = {"min": -1.503, "max": 4.1733, "mean": 0.01786, "std": 0.1781, "n_exactly_zero": 16985,
              "n_positive": 265972, "n_negative": 151155,
              "abs_percentiles_25_50_75_95_99": [0.0016, 0.0297, 0.0821, 0.2872, 0.6828]}


def test_builtin_model_reproduces_the_reference_W_statistics():
    stats = w_statistics(instantiate(flyvis_model_params("flow/0000/000"), cached_connectome(8)).W)
    for key in ("n_exactly_zero", "n_positive", "n_negative"):
        assert stats[key] == EXPECTED_W[key], key
    for key in ("min", "max", "mean", "std"):
        assert stats[key] == pytest.approx(EXPECTED_W[key], abs=1e-4), key
    np.testing.assert_allclose(stats["abs_percentiles_25_50_75_95_99"], EXPECTED_W["abs_percentiles_25_50_75_95_99"],
                               atol=6e-5)
    expected_file = REFERENCE / "connectome_extent8_expected.json"
    if expected_file.is_file():  # the constants above are that file's numbers
        assert json.loads(expected_file.read_text())["W_with_flyvis_000"] == EXPECTED_W


def test_builtin_file_is_the_checkpoints_734_numbers_with_source_and_licence():
    data = json.loads(builtin_model_file("flow/0000/000").read_text())
    assert len(data["cell_types"]) == 65 and len(data["edge_types"]) == 604
    assert 65 + 65 + 604 == 734
    assert "TuragaLab" in data["source"] and "MIT" in data["licence"] and data["model"] == "flow/0000/000"
    ckpt = load_flyvis_checkpoint(reference_file("flyvis_flow_0000_000.chkpt"))
    built = flyvis_model_params("flow/0000/000")
    for key in ("V_rest_type", "tau_type", "edge_type_strength"):  # 6 decimals in the JSON
        np.testing.assert_allclose(getattr(built, key), getattr(ckpt, key), rtol=0, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(built.edge_type_sign, ckpt.edge_type_sign)
    np.testing.assert_array_equal(built.edge_type_keys, ckpt.edge_type_keys)
    np.testing.assert_allclose(built.group_nsyn, ckpt.group_nsyn, rtol=1e-6)  # n_syn is not trained
    assert built.source == "flyvis flow/0000/000"


@pytest.mark.parametrize("layout", ["best", "chkpts"])
def test_any_flyvis_model_id_is_read_from_the_flyvis_data_directory(tmp_path, monkeypatch, layout):
    fake_flyvis_root(tmp_path, "flow/0000/012", layout)
    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(tmp_path))
    cfg = load_run_config(preset="tiny", overrides={"simulation.ground_truth.source": "flyvis",
                                                    "simulation.ground_truth.model": "flow/0000/012"})
    assert cfg.simulation.ground_truth.label() == "flow/0000/012"
    params = flyvis_model_params("flow/0000/012")
    assert params.source == "flyvis flow/0000/012"
    np.testing.assert_allclose(params.V_rest_type, np.linspace(-0.5, 0.5, 65), atol=1e-6)
    assert params.edge_type_strength[0] == pytest.approx(0.01)


def test_missing_flyvis_model_is_one_error_naming_the_directory_and_the_command(tmp_path, monkeypatch):
    over = {"simulation.ground_truth.source": "flyvis", "simulation.ground_truth.model": "flow/0000/012"}
    monkeypatch.delenv("FLYVIS_ROOT_DIR", raising=False)
    with pytest.raises(ConfigError, match=r"model: flow/0000/012: not built in .*FLYVIS_ROOT_DIR is not set"):
        load_run_config(preset="tiny", overrides=over)
    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_run_config(preset="tiny", overrides=over)
    text = str(err.value)
    assert str(tmp_path / "results" / "flow/0000/012") in text and "flyvis download-pretrained" in text
    with pytest.raises(ConfigError, match="is not a flyvis model id"):
        load_run_config(preset="tiny", overrides={**over, "simulation.ground_truth.model": "flow-12"})


def test_full_preset_uses_the_flyvis_network_unless_told_otherwise(tmp_path):
    assert list(BUILTIN_MODELS) == ["flow/0000/000"]
    for config in ("two_stage.yaml", "gold_standard.yaml"):
        full = load_run_config(config, preset="full").simulation.ground_truth
        assert (full.source, full.model, full.label()) == ("flyvis", "flow/0000/000", "flow/0000/000")
        for preset in ("tiny", "small"):
            gt = load_run_config(config, preset=preset).simulation.ground_truth
            assert (gt.source, gt.label()) == ("synthetic", "synthetic/seed0")
    told = load_run_config(preset="full", overrides={"simulation.ground_truth.source": "synthetic"})
    assert told.simulation.ground_truth.source == "synthetic"
    # a config file naming its ground truth wins over the preset's default
    own = tmp_path / "own.yaml"
    own.write_text("simulation:\n  ground_truth:\n    source: synthetic\n    seed: 3\n")
    assert load_run_config(own, preset="full").simulation.ground_truth.label() == "synthetic/seed3"


def _exploration_run_ids(folder) -> set[str]:
    """The run ids of every trial of the explorations whose SQLite studies live in ``folder``."""
    import optuna

    ids = set()
    for db in folder.glob("*.optuna.db"):
        storage = f"sqlite:///{db}"
        for name in optuna.get_all_study_names(storage):
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            ids |= {t.user_attrs["run_id"] for t in trials if "run_id" in t.user_attrs}
    return ids


def test_run_ids_and_configs_of_other_sources_are_unchanged_by_the_model_key():
    """The committed small example's finished runs are found again: each folder's name is the
    content key of its own config.json, and each run is in the plan of one of the blocks that
    write there or is a trial of an exploration stored there."""
    from conftest import REPO

    from flyvis_study.config import RunConfig
    from flyvis_study.study.blocks import plan_block
    from flyvis_study.study.spec import run_id_of

    folder = REPO / "reports" / "examples" / "small"
    finished = [p for p in (folder / "runs").iterdir() if (p / "run.nc").is_file()]
    for run in finished:
        assert run_id_of(RunConfig.model_validate_json((run / "config.json").read_text())) == run.name
    ids = {s.run_id for n in (0, 1, 6, 7, 8) for s in plan_block(n, {"preset": "small"})}
    assert finished and {p.name for p in finished} <= ids | _exploration_run_ids(folder)
    cfg = json.loads(load_run_config(preset="small").to_json())
    assert "model" not in cfg["simulation"]["ground_truth"]
    full = json.loads(load_run_config(preset="full").to_json())
    assert full["simulation"]["ground_truth"]["model"] == "flow/0000/000"


def test_flyvis_ground_truth_dataset_is_generated_and_named(tmp_path):
    from flyvis_study.world.dataset import get_dataset

    cfg = load_run_config(preset="tiny", overrides={"simulation.ground_truth.source": "flyvis",
                                                    "simulation.n_frames": 300})
    ds = get_dataset(cfg.simulation, root=tmp_path)
    assert ds.meta["ground_truth_source"] == "flyvis flow/0000/000"
    expected = instantiate(flyvis_model_params("flow/0000/000"), ds.connectome)
    np.testing.assert_array_equal(ds.ground_truth.W, expected.W)
    assert ds.ground_truth.V_rest[0] == pytest.approx(0.444229, abs=1e-6)  # R1
    shutil.rmtree(tmp_path)
