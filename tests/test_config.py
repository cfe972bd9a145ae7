"""The one config object: YAML, overrides, profiles and the errors a user meets."""
import pytest

from twist_lib.config import PROFILES, Config, parse_overrides


def test_profiles_change_settings_not_code_path():
    smoke, cpu = Config.for_profile("smoke"), Config.for_profile("cpu")
    assert smoke.steps < cpu.steps and smoke.model_size != cpu.model_size
    allowed = {"data_root", "synthetic_scenes", "synthetic_size", "model_size", "steps", "batch_size",
               "log_every", "val_every", "ckpt_every", "val_scenes", "label_ratio",
               "cluster_min_points", "eval_min_region", "num_workers",
               # resolution and augmentation of the CPU benchmark (see the cpu profile's comment)
               "voxel_size", "cluster_radius", "use_xyz_features", "elastic",
               # sizes and steps of the self-training rounds and of Psi
               "rounds", "steps_per_round", "psi_init_steps", "psi_grid", "psi_width",
               "psi_max_proposals", "psi_gt_proposals", "pseudo_batch_size",
               "psi_lr",  # Psi's learning rate scales with its step budget (cpu profile comment)
               "round_lr"}  # Phi's restart lr scales with the round's step budget (same comment)
    for name, values in PROFILES.items():
        assert set(values) <= allowed, f"profile {name} sets a key outside sizes, steps, resolution and augmentation"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("profile: smoke\nsteps: 40\nlr: 0.05\n")
    cfg = Config.from_sources(yaml_path=str(path), overrides=["steps=7", "amp=false", "label_ratio=10"])
    assert cfg.profile == "smoke" and cfg.model_size == PROFILES["smoke"]["model_size"]
    assert cfg.steps == 7 and cfg.lr == 0.05 and cfg.amp is False and cfg.label_ratio == "10"


def test_unknown_key_names_it_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stepz: 3\n")
    with pytest.raises(KeyError, match="stepz.*did you mean 'steps'"):
        Config.from_sources(yaml_path=str(path))


def test_wrong_type_is_an_error():
    with pytest.raises(TypeError, match="steps"):
        Config.from_sources(overrides=["steps=many"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])
    with pytest.raises(ValueError, match="profile"):
        Config.for_profile("huge")


def test_roundtrip_through_yaml(tmp_path):
    cfg = Config.for_profile("smoke", steps=3, run_dir=str(tmp_path / "r"))
    cfg.save(tmp_path / "c.yaml")
    again = Config.from_sources(yaml_path=str(tmp_path / "c.yaml"))
    assert again == cfg
