"""TrainConfig: auto epochs and checkpoints resolve from the data size as designed, the help texts name every
registry choice, and `crossmodel train --help` shows every key with its help and default."""

import dataclasses

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.steer.combine import COMBINE_RULES
from crossmodel.models.load import MODEL_DTYPES
from crossmodel.train.config import (CACHE_DTYPE_NAMES, FORMAT_NAMES, RULE_CHOICES, TASK_NAMES, TEMPLATE_DTYPE_NAMES,
                                     UNLEARN_EPOCHS, TrainConfig, config_changes)
from crossmodel.train.data import FORMATS
from crossmodel.train.losses import LOSSES, NEEDS_RETAIN, NPO_BETA
from crossmodel.train.template_cache import DTYPES


@pytest.mark.parametrize("n, batch, accum, epochs", [(12, 4, 1, 50), (30, 4, 1, 19), (40, 4, 1, 15), (30, 8, 2, 75),
                                                     (600, 4, 1, 1), (400, 4, 1, 2), (1, 4, 1, 150)])
def test_auto_epochs_reach_min_steps_in_whole_epochs(n, batch, accum, epochs):
    cfg = TrainConfig(batch_size=batch, grad_accum=accum).resolved(n)
    per_epoch = cfg.steps_per_epoch(n)
    assert cfg.epochs == epochs
    assert cfg.epochs * per_epoch >= 150 and (cfg.epochs - 1) * per_epoch < 150 or cfg.epochs == 1
    assert cfg.save_every == max(5, cfg.epochs * per_epoch // 10)


def test_auto_values_keep_explicit_settings_and_unlearning_runs_tofu_epochs():
    explicit = {"epochs": 3, "save_every": 0, "delta_init": "template", "delta_zero_start": False,
                "delta_lm_weight": 0.0}
    assert TrainConfig(**explicit).resolved(30) == TrainConfig(**explicit)
    assert TrainConfig(data_format="alpaca", **explicit).resolved(30) == TrainConfig(data_format="alpaca", **explicit)
    assert TrainConfig(task="grad_diff", retain="r.json").resolved(10).epochs == UNLEARN_EPOCHS == 5
    assert TrainConfig(min_steps=10).resolved(30).epochs == 2  # 8 steps per epoch
    assert TrainConfig().lr == 2e-3 and TrainConfig().epochs is None
    with pytest.raises(ValueError, match="delta_init='pca'"):
        TrainConfig(delta_init="pca")


@pytest.mark.parametrize("task, data_format, init, zero", [("sft", "alpaca", "template", True),
                                                          ("sft", "tofu", "random", False),
                                                          ("sft", "chat", "random", False),
                                                          ("npo", "alpaca", "random", False)])
def test_auto_delta_start_is_the_instruction_recipe_only_for_sft_on_alpaca(task, data_format, init, zero):
    cfg = TrainConfig(task=task, data_format=data_format).resolved(30)
    assert (cfg.delta_init, cfg.delta_zero_start) == (init, zero)


@pytest.mark.parametrize("task, data_format, weight", [("sft", "tofu", 1.0), ("sft", "chat", 1.0),
                                                        ("idk", "tofu", 1.0), ("sft", "alpaca", 0.0),
                                                        ("grad_diff", "tofu", 0.0), ("npo", "tofu", 0.0)])
def test_auto_delta_lm_weight_makes_the_delta_a_language_model_unless_it_starts_at_zero(task, data_format, weight):
    cfg = TrainConfig(task=task, data_format=data_format, retain="r.json").resolved(30)
    assert cfg.delta_lm_weight == weight
    assert TrainConfig(delta_lm_weight=0.5).resolved(30).delta_lm_weight == 0.5


def test_the_plain_prompt_format_is_the_default_and_a_config_saved_without_it_meant_the_templates_own():
    assert TrainConfig().prompt_format == "plain"
    with pytest.raises(ValueError, match="prompt_format='chatml'"):
        TrainConfig(prompt_format="chatml")
    new = TrainConfig(epochs=3, save_every=0).resolved(30).to_dict()
    saved = dict(new)
    del saved["prompt_format"]
    assert config_changes(saved, new) == ["prompt_format 'own' → 'plain'"]
    assert config_changes(saved, {**new, "prompt_format": "own"}) == []


def test_a_config_saved_before_the_delta_start_was_auto_reads_as_a_random_start():
    saved = {**TrainConfig(epochs=3, save_every=0, delta_lm_weight=1.0).to_dict(), "delta_init": None}
    del saved["delta_zero_start"]
    assert config_changes(saved, TrainConfig(epochs=3, save_every=0).resolved(30).to_dict()) == []
    instruct = TrainConfig(epochs=3, save_every=0, data_format="alpaca", delta_lm_weight=1.0).resolved(30).to_dict()
    assert config_changes({**saved, "data_format": "alpaca"}, instruct) == [
        "delta_init 'random' → 'template'", "delta_zero_start False → True"]


def test_help_names_match_the_registries():
    assert set(TASK_NAMES) == set(LOSSES) and set(RULE_CHOICES) == set(COMBINE_RULES)
    assert set(TEMPLATE_DTYPE_NAMES) == set(MODEL_DTYPES)
    assert set(FORMAT_NAMES) == set(FORMATS) and set(CACHE_DTYPE_NAMES) == set(DTYPES)
    assert TrainConfig().npo_beta == NPO_BETA
    for task in NEEDS_RETAIN:
        with pytest.raises(ValueError, match="--retain"):
            TrainConfig(task=task)


def test_config_changes_name_keys_with_old_and_new_values_and_skip_harmless_keys():
    old = TrainConfig(epochs=19, save_every=15).to_dict()
    new = TrainConfig(epochs=5, lr=1e-3, save_every=1, progress=False, out="elsewhere").to_dict()
    assert config_changes(old, new) == ["epochs 19 → 5", "lr 0.002 → 0.001"]
    del old["dtype"]  # a checkpoint written before the key existed reads as the key's default
    assert config_changes(old, TrainConfig(epochs=19).to_dict()) == []


def test_train_help_shows_every_key_with_help_and_default():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert f.metadata["help"].split(";")[0][:40] in text, f.name
    for shown in ("[default: (auto)]", "[default: (0.002)]", "[default: (150)]", "[default: (4)]", "--no-cache",
                  "--overwrite", "--resume"):
        assert shown in text, shown


def test_config_file_with_a_bom_is_read(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("\ufeffepochs: 2\nlr: 0.001\n".encode("utf-8"))
    cfg = TrainConfig.from_file(path)
    assert (cfg.epochs, cfg.lr) == (2, 0.001)
