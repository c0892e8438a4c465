"""Config loading and tool errors: unknown keys, missing files, wrong checkpoints."""

import json
import pickle
import re
from pathlib import Path

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


# ------------------------------------------------------ keys checked at every depth


def test_misspelt_nested_option_is_one_line_exit_2_before_anything_runs(capsys, tmp_path):
    """The README's case: a typo below the top level of --cfg-options."""
    from mtvision.engine.cli import run_cli

    argv = ["configs/demo/ssdlite_shapes.py", str(tmp_path / "missing.pth"), "--cfg-options",
            "test_dataloader.dataset.ann_flie=annotations/instances_val2017.json"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: eval_tool.main(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: --cfg-options test_dataloader.dataset.ann_flie=annotations/instances_val2017.json"
        ": unknown config key 'test_dataloader.dataset.ann_flie' (CocoDetection takes no "
        "'ann_flie'); did you mean 'ann_file'?\n"
    )
    assert not (tmp_path / "work_dirs").exists()


@pytest.mark.parametrize(
    "option, close",
    [
        ("train_dataloader.bath_size=2", "batch_size"),  # torch's DataLoader
        ("train_dataloader.persistant_workers=True", "persistent_workers"),
        ("val_dataloader.sampler.shufle=False", "shuffle"),  # a sampler
        ("train_dataloader.dataset.filter_emtpy=True", "filter_empty"),  # the dataset's own
        ("train_dataloader.dataset.serialize=False", "serialize_data"),  # mmengine BaseDataset's
        ("model.bn_epss=0.1", "bn_eps"),  # the model
        ("model.backbone.width_multi=1.0", "width_mult"),  # a part the model builds
        ("model.heads.detection.num_clases=3", "num_classes"),  # a head among named ones
        ("model.heads.detection.anchor_generator.min_scal=0.1", "min_scale"),
        ("model.data_preprocessor.channel_last=True", "channels_last"),
        ("default_hooks.checkpoint.intervl=2", "interval"),  # a hook (kwargs to save_checkpoint)
        ("default_hooks.logger.intervall=2", "interval"),
        ("optim_wrapper.optimizer.weight_decai=0.1", "weight_decay"),  # torch's optimizer
        ("optim_wrapper.accumulative_count=2", "accumulative_counts"),
        ("optim_wrapper.clip_grad.max_nrm=1.0", "max_norm"),
        ("optim_wrapper.paramwise_cfg.norm_decay=0", "norm_decay_mult"),
        ("train_cfg.max_epoch=3", "max_epochs"),  # the loop
        ("val_evaluator.classwize=False", "classwise"),  # the metric
        ("env_cfg.mp_cfg.opencv_threads=1", "opencv_num_threads"),
        ("randomness.seeds=1", "seed"),
        ("log_processor.window=3", "window_size"),
    ],
)
def test_misspelt_keys_at_any_depth_name_path_and_closest_name(option, close):
    key, value = option.split("=")
    with pytest.raises(ConfigError) as error:
        load_config("configs/demo/ssdlite_shapes.py", {key: value})
    message = str(error.value)
    assert message.startswith(f"--cfg-options {option}: unknown config key '{key}' (")
    assert message.endswith(f"did you mean '{close}'?")


@pytest.mark.parametrize(
    "config, option, close",
    [
        ("multitask_coco_voc_imagenet", "val_dataloader.coco.batch_sise=2", "batch_size"),
        ("multitask_coco_voc_imagenet", "test_dataloader.voc.dataset.splt=val", "split"),
        ("multitask_coco_voc_imagenet", "val_evaluator.coco.detection.classwize=0", "classwise"),
        ("multitask_coco_voc_imagenet", "train_dataloader.batch_sampler.ratio=1", "ratios"),
        ("multitask_coco_voc_imagenet", "train_dataloader.sampler.shufle=0", "shuffle"),
        (
            "multitask_coco_voc_imagenet",
            "train_dataloader.dataset.datasets.detection.filter_emtpy=1",
            "filter_empty",
        ),
        ("multitask_coco_voc_imagenet", "val_cfg.fp61=1", "fp16"),
        ("multitask_shapes", "train_dataloader.dataset.on_unmatch=skip", "on_unmatched"),
        ("multitask_shapes", "val_dataloader.shapes.dataset.check_size=0", "check_sizes"),
    ],
)
def test_misspelt_keys_of_the_multitask_shapes_name_entry_and_part(config, option, close):
    """Evaluation entries ({entry: loader}, {entry: {head: metric}}) and dataset parts
    are walked like any other config."""
    key, value = option.split("=")
    with pytest.raises(ConfigError) as error:
        load_config(f"configs/_base_/datasets/{config}.py", {key: value})
    message = str(error.value)
    assert message.startswith(f"--cfg-options {option}: unknown config key '{key}' (")
    assert message.endswith(f"did you mean '{close}'?")


def test_nested_lists_albumentations_and_schedulers_in_a_file(tmp_path):
    base = "/".join(("configs", "demo", "ssdlite_shapes.py"))
    config = tmp_path / "typo.py"
    head = f"_base_ = [{str(Path(base).resolve())!r}]\n"
    config.write_text(
        head + "train_pipeline = [dict(type='LoadImage'), dict(type='Albumentations', "
        "transforms=[dict(type='OneOf', transforms=[dict(type='HorizontalFlip', pp=0.5)])]), "
        "dict(type='PackInputs')]\ntrain_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert str(error.value) == (
        f"{config}: unknown config key 'train_dataloader.dataset.pipeline[1].transforms[0]."
        "transforms[0].pp' (HorizontalFlip takes no 'pp'); did you mean 'p'?"
    )
    config.write_text(head + "param_scheduler = [dict(type='LinearLR', begin=0, ed=1)]\n")
    with pytest.raises(ConfigError, match=r"'param_scheduler\[0\].ed' \(LinearLR takes no 'ed'\)"):
        load_config(config)
    config.write_text(head + "model = dict(backbone=dict(type='MobileNetV3'))\n")
    with pytest.raises(ConfigError, match=r"'model.backbone.type' is 'MobileNetV3', which is not "
                       r"in mtvision's or mmengine's model registry; did you mean 'MobileNetV2'"):  # fmt: skip
        load_config(config)


def test_what_is_built_may_take_its_keys(tmp_path):
    """Keys read through **kwargs forwarding, by a parent, or by mmengine's build."""
    options = {
        "train_dataloader.dataset.lazy_init": False,  # mmengine BaseDataset, via **kwargs
        "train_dataloader.dataset._scope_": "mtvision",
        "default_hooks.logger.priority": "LOW",  # Runner.register_hook
        "param_scheduler.0.convert_to_iter_based": True,  # mmengine's scheduler build
        "custom_hooks": [dict(type="EMAHook", momentum=0.001, update_buffers=True)],
        "optim_wrapper.clip_grad": dict(type="value", clip_value=1.0),
    }
    cfg = load_config("configs/demo/ssdlite_shapes.py", options)
    assert cfg.custom_hooks[0].momentum == 0.001
    # A head's own arguments, set inside the model's named heads.
    load_config(
        "configs/demo/mobilenetv2_shapes.py", {"model.heads.classification.in_features": ["stage7"]}
    )


@pytest.mark.parametrize(
    "config", sorted(str(p) for p in Path("configs").rglob("*.py") if "_base_" not in p.parts)
)
def test_every_shipped_config_passes_and_is_walked(config):
    cfg = load_config(config)  # passes the check
    with pytest.raises(ConfigError, match=r"did you mean 'pipeline'"):
        load_config(config, {"train_dataloader.dataset.pipline": []})
    assert cfg.model.type


def test_keyword_arguments_outside_known_forwarders_accept_any_key():
    """A ``**kwargs`` is followed to the base class only in mmengine's families known
    to forward it (schedulers, initialisers, optimiser and model wrappers)."""
    from mmengine.optim import AmpOptimWrapper

    from mtvision.engine.config_keys import accepted_keys, check_config_keys

    class Stores:
        def __init__(self, size=1, **options):
            self.options = options

    class Forwards(torch.nn.Linear):
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)

    assert accepted_keys(Stores) is None and accepted_keys(Forwards) is None
    check_config_keys({"model": dict(type=Stores, anything=1)}, "cfg.py")
    assert {"loss_scale", "accumulative_counts", "clip_grad"} <= accepted_keys(AmpOptimWrapper)
    with pytest.raises(ConfigError, match=r"'optim_wrapper.accumulative_count' \(AmpOptimWrapper"):
        check_config_keys(
            {"optim_wrapper": dict(type="AmpOptimWrapper", optimizer=dict(type="SGD", lr=0.1),
                                   accumulative_count=2)}, "cfg.py")  # fmt: skip


def test_mtvision_classes_take_explicit_parameters():
    """What makes ``inspect.signature`` enough for mtvision's own classes: none of the
    classes in its registries takes ``**kwargs``."""
    import inspect

    from mmengine.registry import Registry

    import mtvision.data  # noqa: F401  (registers the datasets and transforms)
    import mtvision.evaluation  # noqa: F401
    import mtvision.models  # noqa: F401
    import mtvision.visualization  # noqa: F401
    from mtvision import registry

    classes = {
        cls
        for value in vars(registry).values()
        if isinstance(value, Registry)
        for cls in value.module_dict.values()
        if inspect.isclass(cls) and cls.__module__.startswith("mtvision.")
    }
    assert len(classes) > 20
    open_ended = [
        cls.__qualname__
        for cls in classes
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    ]
    assert open_ended == []


# ------------------------------------------------------ values checked by their meaning

TOOLS = {name: load_tool(name) for name in ("predict", "export_onnx", "quantize", "visualize")}
TOOLS.update(train=train_tool, eval=eval_tool)


def tool_argv(name: str, tmp_path: Path, config: str = "configs/demo/mobilenetv2_shapes.py"):
    """A command line of each tool that reaches its config (inputs need not exist)."""
    missing = str(tmp_path / "missing")
    return {
        "train": [config, "--work-dir", missing],
        "eval": [config, f"{missing}.pth", "--work-dir", missing],
        "predict": [config, f"{missing}.pth", f"{missing}.jpg", "--out-dir", missing],
        "export_onnx": [config, f"{missing}.pth", "--out", f"{missing}.onnx"],
        "quantize": [config, f"{missing}.onnx", "--out", f"{missing}.int8.onnx", "--calib", "2"],
        "visualize": [config, f"{missing}.pth", "--out", f"{missing}.png"],
    }[name]


def run_tool(name: str, argv: list[str], capsys) -> str:
    """Run a tool as its ``__main__`` does; returns stderr after asserting exit status 2."""
    from mtvision.engine.cli import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: TOOLS[name].main(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize(
    "word, problem",
    [
        ("train_dataloader.batch_size", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("model.backbone.width_mult=[0.5", "unclosed '['"),
        ("model.backbone.width_mult=[0.5,1", "unclosed '['"),
        ("test_dataloader.dataset.classes=(a,b]", "unmatched ']'"),
        ("model.backbone.width_mult=0.5]", "unmatched ']'"),
    ],
)
def test_malformed_cfg_option_words_stop_every_tool_with_one_line(tool, word, problem, tmp_path,
                                                                  capsys):  # fmt: skip
    argv = tool_argv(tool, tmp_path) + ["--cfg-options", "train_cfg.max_epochs=1", word]
    assert run_tool(tool, argv, capsys) == f"error: --cfg-options {word}: {problem}\n"
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize(
    "option, message",
    [
        ("optim_wrapper.optimizer.lr=1e-3e", "'1e-3e' is not a number (the config has 0.004)"),
        ("train_dataloader.batch_size=abc", "'abc' is not a number (the config has 32)"),
        (
            "train_dataloader.persistent_workers=yes",
            "'yes' is not True or False (the config has True)",
        ),  # fmt: skip
        ("param_scheduler.1.end=1O", "'1O' is not a number (the config has 16)"),
        (
            "train_dataloader.batch_size=0",
            "'train_dataloader.batch_size' must be a positive integer, got 0",
        ),  # fmt: skip
        (
            "val_dataloader.batch_size=2.5",
            "'val_dataloader.batch_size' must be a positive integer, got 2.5",
        ),  # fmt: skip
        (
            "train_dataloader.num_workers=-1",
            "'train_dataloader.num_workers' must be an integer >= 0, got -1",
        ),  # fmt: skip
        (
            "optim_wrapper.optimizer.lr=-0.1",
            "'optim_wrapper.optimizer.lr' must be a finite number >= 0, got -0.1",
        ),  # fmt: skip
        (
            "optim_wrapper.optimizer.lr=nan",
            "'optim_wrapper.optimizer.lr' must be a finite number >= 0, got nan",
        ),  # fmt: skip
        (
            "optim_wrapper.optimizer.weight_decay=inf",
            "'optim_wrapper.optimizer.weight_decay' must be a finite number >= 0, got inf",
        ),  # fmt: skip
        ("train_cfg.max_epochs=0", "'train_cfg.max_epochs' must be a positive integer, got 0"),
        (
            "model.backbone.width_mult=0",
            "'model.backbone.width_mult' must be a finite number > 0, got 0",
        ),  # fmt: skip
        (
            "model.backbone.width_mult=[0.5]",
            "'model.backbone.width_mult' must be a finite number > 0, got [0.5]",
        ),  # fmt: skip
        (
            "model.heads.classification.num_classes=0",
            "'model.heads.classification.num_classes' must be a positive integer (or a dict "
            "of them, head name -> count), got 0",
        ),  # fmt: skip
        (
            "log_level=debug",
            "'log_level' must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', "
            "got 'debug'",
        ),
        (
            "model.heads.classification.dropout=1.5",
            "'model.heads.classification.dropout' must be a number in [0, 1], got 1.5",
        ),  # fmt: skip
    ],
)
def test_malformed_values_name_the_option_and_the_problem(option, message):
    key, value = option.split("=", 1)
    from mmengine.config import DictAction

    with pytest.raises(ConfigError) as error:
        load_config("configs/demo/mobilenetv2_shapes.py", {key: DictAction._parse_iterable(value)})
    assert str(error.value) == f"--cfg-options {option}: {message}"


@pytest.mark.parametrize(
    "option, message",
    [
        ("model.heads.detection.test_cfg.score_threshold=1.5", "must be a number in [0, 1]"),
        ("model.heads.detection.test_cfg.nms_iou_threshold=-0.1", "must be a number in [0, 1]"),
        ("model.heads.detection.iou_threshold=2", "must be a number in [0, 1]"),
        (
            "test_dataloader.dataset.pipeline.1.transforms.0.height=0",
            "must be a positive integer (or a list of them, in pixels)",
        ),
    ],
)
def test_thresholds_and_sizes_of_the_detector(option, message):
    key, value = option.split("=", 1)
    path = re.sub(r"\.(\d+)", r"[\1]", key)  # list items as the message names them
    with pytest.raises(
        ConfigError, match=rf"^--cfg-options {key}=.*: '{re.escape(path)}' {re.escape(message)}"
    ):
        load_config("configs/demo/ssdlite_shapes.py", {key: float(value)})


def test_loss_weights_of_a_multitask_model():
    options = {"model.loss_weights.detection": -1.0}
    with pytest.raises(ConfigError, match=r"'model.loss_weights' must be a dict of finite numbers"):
        load_config("configs/demo/multitask_shapes.py", options)


def test_valid_values_keep_working():
    cfg = load_config(
        "configs/demo/mobilenetv2_shapes.py",
        {
            "optim_wrapper.optimizer.lr": 1e-3,
            "train_dataloader.batch_size": 2,
            "train_dataloader.num_workers": 0,
            "model.backbone.width_mult": 0.75,
            "optim_wrapper.optimizer.weight_decay": 0,
            "train_dataloader.persistent_workers": False,
            "randomness.seed": None,
        },
    )
    assert (cfg.optim_wrapper.optimizer.lr, cfg.train_dataloader.batch_size) == (1e-3, 2)
    assert cfg.model.backbone.width_mult == 0.75


def test_a_wrong_value_in_a_config_file_names_the_file_and_key(tmp_path):
    config = write_config(tmp_path / "cfg.py", optim_wrapper=dict(optimizer=dict(type="SGD",
                                                                                 lr="0.1")))  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert str(error.value) == (
        f"{config}: 'optim_wrapper.optimizer.lr' must be a finite number >= 0, got '0.1'"
    )
    config = write_config(tmp_path / "cfg.py", train_cfg=dict(by_epoch=False, max_iters=0))
    with pytest.raises(ConfigError, match=r"cfg.py: 'train_cfg.max_iters' must be a positive"):
        load_config(config)


@pytest.mark.parametrize("tool", ["train", "eval", "predict", "export_onnx", "visualize"])
def test_a_malformed_value_stops_each_tool_before_anything_is_built(tool, tmp_path, capsys):
    argv = tool_argv(tool, tmp_path) + ["--cfg-options", "optim_wrapper.optimizer.lr=1e-3e"]
    err = run_tool(tool, argv, capsys)
    # predict reads the config before it walks its inputs: no "skipped" line comes first.
    assert err == (
        "error: --cfg-options optim_wrapper.optimizer.lr=1e-3e: '1e-3e' is not a number "
        "(the config has 0.004)\n"
    )
    assert not list(tmp_path.iterdir())


def test_train_script_prints_one_line_and_no_traceback(tmp_path):
    """The README's command, as a process: exit 2, one line, no environment dump."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            str(root / "tools" / "train.py"),
            str(root / "configs" / "demo" / "mobilenetv2_shapes.py"),
            "--work-dir",
            str(tmp_path),
            "--cfg-options",
            "train_dataloader.batch_size=0",
            "train_cfg.max_epochs=1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,  # fmt: skip
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: --cfg-options train_dataloader.batch_size=0: 'train_dataloader.batch_size' "
        "must be a positive integer, got 0\n"
    )


def test_class_counts_per_head_are_checked_one_by_one():
    """``mobilenet_v2_multitask`` takes ``num_classes=dict(head=count)``: each count is checked."""
    from mtvision.engine.config_values import check_config_values

    good = {"model": {"num_classes": {"classification": 6, "detection": 6}}}
    check_config_values(good, lambda path: "cfg.py")
    bad = {"model": {"num_classes": {"classification": 6, "detection": -1}}}
    with pytest.raises(
        ConfigError, match=r"cfg.py: 'model.num_classes' must be a positive integer \(or"
    ):
        check_config_values(bad, lambda path: "cfg.py")
