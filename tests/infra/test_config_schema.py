"""The typed config schema: every value is checked with a one-line error naming the key and what it may be
(issue 11, failure 6); every shipped config passes; numbers written as strings come back as numbers."""

import pytest

from mulap.demo.pipeline import demo_settings
from mulap.infra.config import CONFIG_DIR, ConfigError, load_config
from mulap.training.downstream import downstream_config


@pytest.mark.parametrize(
    "override,expected",
    [
        ("training.epochs=0", "training.epochs must be greater than or equal to 1 (got 0)"),
        ("training.epochs=abc", "training.epochs must be a valid integer (got 'abc')"),
        ("training.epochs=2.5", "training.epochs must be a valid integer"),
        ("training.epochs=true", "training.epochs must be a valid integer (got True)"),
        ("training.lr=nan", "training.lr must be a finite number"),
        ("training.lr=0", "training.lr must be greater than 0"),
        ("training.batch_size=-4", "training.batch_size must be greater than or equal to 1 (got -4)"),
        ("training.warmup_ratio=1.5", "training.warmup_ratio must be less than or equal to 1"),
        ("training.betas=[0.9,1.0]", "training.betas.1 must be less than 1"),
        (
            "training.precision=fp16",
            "training.precision must be '32-true', 'bf16-mixed', '16-mixed', 'bf16-true', '16-true' or '64-true'",
        ),
        ("training.device=tpu", "training.device must be 'auto', 'cpu', 'gpu', 'cuda' or 'mps'"),
        ("training.strategy=fsdp", "training.strategy must be 'auto', 'ddp', 'ddp_find_unused_parameters_true' or 'ddp_spawn'"),
        ("training.devices=0", "training.devices must be 'auto', a number of devices >= 1"),
        ("training.limit_train_batches=0", "training.limit_train_batches must be a number of batches >= 1"),
        ("training.checkpoint_every_n_steps=0", "training.checkpoint_every_n_steps must be greater than or equal to 1"),
        ("training.progress_bar=maybe", "training.progress_bar must be a valid boolean"),
        ("dataset_config.on_bad_sample=drop", "dataset_config.on_bad_sample must be 'error' or 'skip' (got 'drop')"),
        ("dataset_config.captions=random", "dataset_config.captions must be 'aligned' or 'shuffled'"),
        ("dataset_config.max_len_seconds=-1", "dataset_config.max_len_seconds must be greater than 0"),
        ("model_config.pooler.fusion=concat", "model_config.pooler.fusion must be 'mul' or 'sum'"),
        ("model_config.objectives.atm.negatives=semi", "model_config.objectives.atm.negatives must be 'random' or 'hard'"),
        (
            "model_config.objectives.mam.target_norm=batchnorm",
            "model_config.objectives.mam.target_norm must be 'layernorm' or 'none'",
        ),
        ("model_config.objectives.mlm.prob=1.5", "model_config.objectives.mlm.prob must be less than or equal to 1"),
        ("model_config.audio.dropout=1.0", "model_config.audio.dropout must be less than 1"),
        (
            "model_config.audio.init=imagenet",
            "model_config.audio.init must be 'random', 'supervised_mtt', 'supervised_msd' or a path",
        ),
        ("model_config.audio.num_heads=7", "model_config.audio: hidden_size (256) must be a multiple of num_heads (7)"),
        ("model_config.audio.max_chunks=2", "gives 6 chunks of 3.0 s, more than model_config.audio.max_chunks=2"),
        ("env.seed=-1", "env.seed must be greater than or equal to 0"),
        # size limits (issue 17, 2a): the same schema checks exported models' config.json
        ("model_config.audio.num_layers=100000", "model_config.audio.num_layers must be less than or equal to 48 (got 100000)"),
        ("model_config.text.max_seq_length=100000", "model_config.text.max_seq_length must be less than or equal to 8192"),
        (
            "model_config.audio.musicnn.timbral_channels=100000",
            "model_config.audio.musicnn.timbral_channels must be less than or equal to 4096 (got 100000)",
        ),
        (
            "model_config.audio.musicnn={timbral_height_fractions: [], temporal_lengths: []}",
            "model_config.audio.musicnn: timbral_height_fractions and temporal_lengths are both empty",
        ),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_every_wrong_key_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.epochs=0", "training.lr=-1"])
    assert "training.epochs" in str(err.value) and "training.lr" in str(err.value)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("downstream.mode=fine", "downstream.mode must be 'frozen' or 'finetune'"),
        ("downstream.probe=svm", "downstream.probe must be 'mlp' or 'linear'"),
        (
            "downstream.backbone_init=imagenet",
            "downstream.backbone_init must be 'mulap', 'random', 'supervised_mtt' or 'supervised_msd'",
        ),
        ("downstream.lr_factor=1.0", "downstream.lr_factor must be less than 1"),
        ("downstream.epochs=0", "downstream.epochs must be greater than or equal to 1"),
        ("downstream.dropout=nan", "downstream.dropout must be a finite number"),
    ],
)
def test_the_downstream_section_is_checked(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        downstream_config("mtt_tagging", None, [override])


def test_unknown_keys_stay_errors():
    with pytest.raises(ConfigError, match="unknown config key 'training.epoch'"):
        load_config(None, ["training.epoch=3"])


def test_every_shipped_config_and_demo_recipe_passes():
    for path in sorted((CONFIG_DIR / "models").glob("*.yaml")):
        load_config(None, [f"model_config={path.stem}"])
    for path in sorted((CONFIG_DIR / "downstream").glob("*.yaml")):
        task = "csv:mine" if path.stem == "csv" else path.stem  # csv.yaml serves every csv:NAME task
        assert downstream_config(task).downstream.task == task
    for name in ("default", "small", "ablation", "gpu"):
        s = demo_settings(name)
        controls = [(s.get("language") or {}).get("shuffled") or []]
        for over in [list(s.pretrain), *([*s.pretrain, *v] for v in [*(s.variants or {}).values(), *controls])]:
            load_config(None, over)


def test_numbers_written_as_strings_become_numbers(tmp_path):
    user = tmp_path / "cfg.yaml"
    user.write_text("training:\n  lr: '3e-4'\n  warmup_ratio: '0.05'\n")
    cfg = load_config(user)
    assert cfg.training.lr == 3e-4 and isinstance(cfg.training.lr, float) and cfg.training.warmup_ratio == 0.05


def test_the_musicnn_section_lists_every_musicnn_setting_with_its_default():
    """The schema's Musicnn section and MusicnnConfig describe the same settings; a setting left out of a partial
    `audio.musicnn` takes MusicnnConfig's default."""
    from mulap.infra.config_schema import Musicnn, check_musicnn
    from mulap.models.musicnn import MusicnnConfig

    defaults = MusicnnConfig().to_dict()
    assert set(Musicnn.model_fields) == set(defaults)
    assert check_musicnn({"timbral_channels": 8}) == {**defaults, "timbral_channels": 8}
    assert (
        load_config(None, ["model_config.audio.musicnn={timbral_channels: 8}"]).model_config.audio.musicnn.timbral_channels == 8
    )


def test_the_supervised_models_are_named_once():
    """The schema's backbone choices, the backbone checkpoints and the tagging models all come from SUPERVISED_NAMES."""
    import typing

    from mulap.inference.tagging import TAG_MODELS
    from mulap.infra.config_schema import SUPERVISED_NAMES, Downstream
    from mulap.models.backbone import SUPERVISED

    assert typing.get_args(Downstream.model_fields["backbone_init"].annotation) == ("mulap", "random", *SUPERVISED_NAMES)
    assert tuple(SUPERVISED) == SUPERVISED_NAMES == TAG_MODELS
