import pytest

from flyvis_study.config import ConfigError, RunConfig, load_run_config, translate_reference_names

REPO_PARAMS = __import__("conftest").REPO / "params"


@pytest.mark.parametrize("key,value,needle", [
    ("simulation.extent", 0, "simulation.extent"),
    ("simulation.dt", 0, "simulation.dt"),
    ("simulation.noise_model_level", -0.1, "simulation.noise_model_level"),
    ("training.alternate_lr_ratio", 1.5, "training.alternate_lr_ratio"),
    ("training.alternate_joint_ratio", 0, "training.alternate_joint_ratio"),
    ("training.lr_W", 0, "training.lr_W"),
    ("training.lr", -1e-3, "training.lr"),
    ("training.batch_size", 0, "training.batch_size"),
    ("training.bogus", 1, "unknown key"),
    ("simulation.ground_truth.checkpoint", "/nonexistent/x.chkpt", "checkpoint"),
])
def test_bad_values_name_the_key(key, value, needle):
    overrides = {key: value}
    if key.endswith("checkpoint"):
        overrides["simulation.ground_truth.source"] = "checkpoint"
    with pytest.raises(ConfigError) as err:
        load_run_config(preset="tiny", overrides=overrides)
    assert needle in str(err.value)
    assert key.split(".")[-1] in str(err.value)


def test_reference_names_rejected_with_hint_and_translated():
    with pytest.raises(ConfigError, match="coeff_g_phi_diff"):
        load_run_config({"training": {"coeff_edge_diff": 500}})
    with pytest.raises(ConfigError, match="'lr'"):
        load_run_config({"training": {"learning_rate_start": 1e-3}})
    cfg = load_run_config(translate_reference_names({"training": {"coeff_edge_diff": 500,
                                                                  "learning_rate_W_start": 1e-4}}))
    assert cfg.training.coeff_g_phi_diff == 500 and cfg.training.lr_W == 1e-4


def test_presets_and_gold_standard_values():
    full = load_run_config(REPO_PARAMS / "two_stage.yaml", preset="full")
    assert full.simulation.extent == 8 and full.simulation.n_frames == 64_000
    assert full.simulation.dt == 0.02 and full.simulation.noise_model_level == 0.05
    assert full.n_iterations() == 128_000 and full.joint_iterations() == 51_200
    t = full.training
    assert (t.n_epochs, t.alternate_training, t.alternate_joint_ratio, t.alternate_lr_ratio) == (2, True, 0.4, 0.1)
    gold = load_run_config(REPO_PARAMS / "gold_standard.yaml", preset="full")
    assert gold.training.n_epochs == 1 and not gold.training.alternate_training
    assert gold.joint_iterations() == gold.n_iterations()
    for name in ("lr_W", "lr", "lr_embedding", "coeff_g_phi_diff", "coeff_f_theta_weight_L2", "coeff_W_L2"):
        assert getattr(gold.training, name) == getattr(t, name)
    with pytest.raises(ConfigError, match="preset 'huge'"):
        load_run_config(preset="huge")
    small = load_run_config(preset="small")
    assert small.simulation.extent < 8


def test_presets_change_only_sizes_and_the_full_ground_truth():
    allowed = {"simulation": {"extent", "n_frames", "stimulus"}, "training": {"iterations_fraction"},
               "evaluation": None}
    import yaml

    for name in ("tiny", "small", "full"):
        data = yaml.safe_load((REPO_PARAMS / "presets" / f"{name}.yaml").read_text())
        # beneath the config file, only the full preset's ground truth (the reference regime)
        defaults = data.pop("defaults", {})
        assert defaults == ({"simulation": {"ground_truth": {"source": "flyvis", "model": "flow/0000/000"}}}
                            if name == "full" else {}), name
        for section, keys in data.items():
            assert section in allowed, (name, section)
            if allowed[section] is not None:
                assert set(keys) <= allowed[section], (name, section, keys)
        if "stimulus" in data.get("simulation", {}):
            assert set(data["simulation"]["stimulus"]) <= {"n_base_clips"}


def test_round_trip_json():
    cfg = load_run_config(REPO_PARAMS / "two_stage.yaml", preset="tiny")
    assert RunConfig.model_validate_json(cfg.to_json()) == cfg
