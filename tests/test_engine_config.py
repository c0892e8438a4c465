"""Config loading and tool errors: unknown keys, missing files, wrong checkpoints."""

import json
import pickle

import pytest
import torch
from engine_toy import load_tool, write_config

from mtvision.engine import load_config
from mtvision.errors import CheckpointError, ConfigError

train_tool = load_tool("train")
eval_tool = load_tool("eval")


def test_base_inheritance_and_default_scope(tmp_path):
    write_config(tmp_path / "base.py")
    derived = tmp_path / "derived.py"
    derived.write_text("_base_ = ['base.py']\ntrain_cfg = dict(max_iters=3)\n_helper = 1\n")
    cfg = load_config(derived, {"optim_wrapper.optimizer.lr": 0.5})
    assert cfg.train_cfg == dict(by_epoch=False, max_iters=3)
    assert cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.default_scope == "mtvision"


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    config = tmp_path / "typo.py"
    config.write_text("model = dict(type='ToyClassifier')\ntrian_cfg = dict(max_iters=3)\n")
    with pytest.raises(ConfigError) as error:
        load_config(config)
    message = str(error.value)
    assert str(config) in message and "'trian_cfg'" in message and "'train_cfg'" in message


def test_helper_variable_read_by_the_config_is_accepted(tmp_path):
    config = tmp_path / "helpers.py"
    loader = "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n"
    config.write_text(
        "input_size = 64\nunused_size = 32\n"
        "train_pipeline = [dict(type='Resize', height=input_size, width=input_size)]\n" + loader
    )
    with pytest.raises(ConfigError, match="'unused_size'"):
        load_config(config)
    config.write_text(
        "input_size = 64\ntrain_pipeline = [dict(type='Resize', height=input_size)]\n" + loader
    )
    assert load_config(config).input_size == 64
    # A pipeline nothing reads has no effect (variables resolve when the file is read).
    config.write_text("train_pipeline = [dict(type='Resize', height=64)]\n")
    with pytest.raises(ConfigError, match="'train_pipeline'"):
        load_config(config)


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    base = tmp_path / "_base_" / "schedule.py"
    base.parent.mkdir()
    base.write_text("optim_wraper = dict(optimizer=dict(type='SGD', lr=0.1))\n")
    derived = tmp_path / "derived.py"
    derived.write_text("_base_ = ['_base_/schedule.py']\nmodel = dict(type='ToyClassifier')\n")
    with pytest.raises(ConfigError, match="did you mean 'optim_wrapper'") as error:
        load_config(derived)
    assert str(error.value).startswith(str(base))


def test_unknown_cfg_option_is_rejected(tmp_path):
    config = write_config(tmp_path / "cfg.py")
    with pytest.raises(ConfigError, match="val_evaluater.*did you mean 'val_evaluator'"):
        train_tool.main([config, "--cfg-options", "val_evaluater.type=ToyAccuracy"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_amp_without_gpu_is_a_clear_error(tmp_path):
    config = write_config(tmp_path / "cfg.py")
    with pytest.raises(ConfigError, match="--amp.*CUDA GPU"):
        train_tool.main([config, "--amp"])


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        eval_tool.main([str(tmp_path / "nowhere.py"), str(tmp_path / "x.pth")])


def test_wrong_architecture_checkpoint_names_file_and_keys(tmp_path):
    config = write_config(tmp_path / "cfg.py", experiment_name=f"{tmp_path.name}_wrong")
    state_dict = {
        "conv.weight": torch.zeros(4, 3, 3, 3),
        "fc.weight": torch.zeros(5, 4),  # trained for 5 classes, the config has 3
        "head.bias": torch.zeros(5),
    }
    checkpoint = tmp_path / "other_model.pth"
    torch.save({"state_dict": state_dict}, checkpoint)
    with pytest.raises(CheckpointError) as error:
        eval_tool.main([config, str(checkpoint), "--work-dir", str(tmp_path / "wd")])
    message = str(error.value)
    assert str(checkpoint) in message
    assert "missing keys" in message and "bn.weight" in message and "fc.bias" in message
    assert "unexpected keys" in message and "head.bias" in message
    assert "fc.weight: weights (5, 4) vs model (3, 4)" in message
    assert "\n" not in message
    assert "num_batches_tracked" not in message


def test_eval_writes_metrics_and_predictions(tmp_path):
    """Untrained weights, but a real round trip: save, load strictly, test, --out."""
    config = write_config(
        tmp_path / "cfg.py",
        experiment_name=f"{tmp_path.name}_eval",
        train_cfg=dict(by_epoch=False, max_iters=1),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False)),
    )
    train_tool.main([config, "--work-dir", str(tmp_path / "wd")])
    metrics = eval_tool.main(
        [config, str(tmp_path / "wd" / "last.pth"), "--out", str(tmp_path / "m.json")]
        + ["--work-dir", str(tmp_path / "wd"), "--cfg-options", "experiment_name=eval_json"]
    )
    assert metrics["num_samples"] == 7
    assert json.loads((tmp_path / "m.json").read_text()) == pytest.approx(metrics)
    eval_tool.main(
        [config, str(tmp_path / "wd" / "last.pth"), "--out", str(tmp_path / "p.pkl")]
        + ["--work-dir", str(tmp_path / "wd"), "--cfg-options", "experiment_name=eval_pkl"]
    )
    predictions = pickle.loads((tmp_path / "p.pkl").read_bytes())
    assert len(predictions) == 7 and predictions[0]["logits"].shape == (3,)
