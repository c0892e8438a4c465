"""The model's label space meets a dataset's: tools/eval.py and the val loop label the data
by the model's class names (mtvision.data.label_space)."""

import cv2
import numpy as np
import pytest
import torch
from engine_toy import load_tool
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn

from mtvision.data.label_space import (
    check_same_classes,
    dataloaders_with_model_classes,
    model_label_of,
    with_model_classes,
)
from mtvision.engine import build_runner
from mtvision.engine.cli import run_cli
from mtvision.errors import AnnotationError
from mtvision.registry import MODELS

eval_tool = load_tool("eval")

#: Class name -> the flat RGB colour of its images (names sorted = label order).
COLOURS = {
    "black": (0, 0, 0),
    "blue": (0, 0, 255),
    "green": (0, 255, 0),
    "red": (255, 0, 0),
    "white": (255, 255, 255),
    "yellow": (255, 255, 0),
}
CLASSES = tuple(COLOURS)


@MODELS.register_module(force=True)
class MeanColourClassifier(BaseModel):
    """Scores class k by minus the L1 distance of the image's mean RGB to ``COLOURS``' k-th
    colour: exact on flat-colour images, whatever data it is given. ``bias`` (kept at 0 by
    a zero loss gradient) is there so that an optimizer has a parameter."""

    def __init__(self):
        super().__init__()
        self.register_buffer("colours", torch.tensor(list(COLOURS.values()), dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        means = torch.stack([image.float().mean(dim=(1, 2)) for image in inputs])
        scores = -(means[:, None] - self.colours[None]).abs().sum(-1) + self.bias
        if mode == "loss":
            return {"loss": self.bias**2}
        if mode == "predict":
            return [
                {"pred_score": score, "gt_label": sample["label"]}
                for score, sample in zip(scores, data_samples, strict=True)
            ]
        return scores


def write_split(root, split, names, per_class=2):
    for name in names:
        folder = root / split / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            colour = COLOURS.get(name, (128, 0, 128))  # a class the model lacks: purple
            image = np.full((8, 8, 3), colour[::-1], np.uint8)  # BGR for OpenCV
            assert cv2.imwrite(str(folder / f"{name}{index}.png"), image)


def config(root, val_split="val") -> dict:
    pipeline = [dict(type="LoadImage"), dict(type="PackInputs")]
    loader = dict(
        batch_size=4,
        num_workers=0,
        sampler=dict(type="DefaultSampler", shuffle=False),
        collate_fn=dict(type="mtvision.collate_samples"),
    )
    val_loader = dict(
        loader,
        dataset=dict(
            type="ImageNetFolder",
            data_root=str(root),
            split=val_split,
            pipeline=pipeline,
            test_mode=True,
        ),
    )
    return dict(
        default_scope="mtvision",
        model=dict(type="MeanColourClassifier"),
        train_dataloader=dict(
            loader, dataset=dict(type="ImageNetFolder", data_root=str(root), pipeline=pipeline)
        ),
        val_dataloader=val_loader,
        test_dataloader=val_loader,
        val_evaluator=dict(type="TopKAccuracy", topk=(1, 2)),
        test_evaluator=dict(type="TopKAccuracy", topk=(1, 2)),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=1),
        val_cfg=dict(type="ValLoop"),
        test_cfg=dict(type="TestLoop"),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
        log_level="WARNING",
    )


@pytest.fixture
def colours(tmp_path):
    """train: all 6 colour folders; val: all 6; val_missing: 4 of them (no blue, green)."""
    root = tmp_path / "colours"
    write_split(root, "train", CLASSES)
    write_split(root, "val", CLASSES)
    write_split(root, "val_missing", ["black", "red", "white", "yellow"])
    checkpoint = tmp_path / "colours.pth"
    meta = {"dataset_meta": {"classes": CLASSES}}
    torch.save({"state_dict": MeanColourClassifier().state_dict(), "meta": meta}, checkpoint)
    return root, checkpoint


def evaluate(tmp_path, root, checkpoint, val_split):
    cfg = Config(config(root, val_split))
    path = tmp_path / f"eval_{val_split}.py"
    cfg.dump(str(path))
    return eval_tool.main([str(path), str(checkpoint), "--work-dir", str(tmp_path / "work")])


def test_eval_on_a_split_lacking_classes_keeps_the_checkpoints_labels(colours, tmp_path, capsys):
    root, checkpoint = colours
    full = evaluate(tmp_path, root, checkpoint, "val")
    assert "have no folder" not in capsys.readouterr().out
    missing = evaluate(tmp_path, root, checkpoint, "val_missing")
    # Numbered from its own 4 folders, 'red' would be label 1 ('blue'): top1 0.25.
    assert full == missing == {"accuracy/top1": 1.0, "accuracy/top2": 1.0}
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        f"ImageNetFolder: 2 of the model's 6 classes have no folder in {root / 'val_missing'}: "
        "blue, green; they are scored as classes without images (the other folders keep the "
        "model's labels)"
    )


def test_eval_on_a_split_with_a_class_the_checkpoint_lacks_is_one_line(colours, tmp_path, capsys):
    root, checkpoint = colours
    write_split(root, "val_missing", ["purple"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: evaluate(tmp_path, root, checkpoint, "val_missing"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert (
        f"{root / 'val_missing'}: classes ['purple'] are not classes of the model; the data has "
        "['black', 'purple', 'red', 'white', 'yellow'], the model ['black', 'blue', 'green', "
        "'red', 'white', 'yellow']"
    ) in err


def test_val_loop_scores_the_val_split_in_the_training_label_space(colours, tmp_path):
    root, _ = colours
    cfg = Config(config(root, "val_missing"))
    cfg.work_dir = str(tmp_path / "train")
    runner = build_runner(cfg)
    runner.train()
    assert runner.val_loop.dataloader.dataset.metainfo["classes"] == CLASSES
    labels = [info["label"] for info in runner.val_loop.dataloader.dataset.load_data_list()]
    assert labels == [0, 0, 3, 3, 4, 4, 5, 5]  # black, red, white, yellow
    assert runner.message_hub.get_scalar("val/accuracy/top1").current() == 1.0


# ------------------------------------------------------------------ the functions


def test_model_label_of_maps_by_name_and_names_missing_classes():
    label_of, missing = model_label_of(["d", "b"], ["a", "b", "c", "d"], "split")
    assert label_of == {"d": 3, "b": 1} and missing == ["a", "c"]
    with pytest.raises(AnnotationError, match=r"split: classes \['x'\] are not classes"):
        model_label_of(["b", "x"], ["a", "b"], "split")


def test_lists_without_a_shared_name_are_matched_by_position_only_when_counts_agree(
    logged_warnings,
):
    """ImageNet synset folders vs a converted model's readable labels (tools/convert_weights.py
    --labels): only positions can be matched, and the warning says so."""
    label_of, missing = model_label_of(["n01", "n02"], ["tench", "goldfish"], "val")
    assert label_of == {"n01": 0, "n02": 1} and missing == []
    assert logged_warnings == [
        "val: none of the data's 2 class names is a class name of the model (data ['n01', "
        "'n02'], model ['tench', 'goldfish']); the counts agree, so class i of the data is "
        "taken as the model's class i"
    ]
    check_same_classes(["bg", "cat"], ["background", "kitty"], "masks")  # same rule
    with pytest.raises(AnnotationError, match=r"classes \['n01'\] are not classes of the model"):
        model_label_of(["n01"], ["tench", "goldfish"], "val")
    many = [f"c{i}" for i in range(30)]
    with pytest.raises(AnnotationError, match=r"the model \['c0', .*'c19', \.\.\. \(30 in all\)\]"):
        model_label_of(["x"], many, "val")


def test_check_same_classes_names_both_lists():
    check_same_classes(("bg", "cat"), ["bg", "cat"], "masks")
    with pytest.raises(AnnotationError, match=r"masks: the data's classes \['cat', 'bg'\] are "
                       r"not the model's \['bg', 'cat'\]"):  # fmt: skip
        check_same_classes(("cat", "bg"), ("bg", "cat"), "masks")


def test_configs_get_the_model_classes_of_their_task():
    single = dict(type="ImageNetFolder", data_root="d")
    assert with_model_classes(single, {"classes": ["a", "b"]})["model_classes"] == ("a", "b")
    assert "model_classes" not in single  # a copy
    assert with_model_classes(single, None) is single
    assert with_model_classes(single, {"palette": [1]}) == single  # no names: nothing to do
    joined = dict(
        type="JoinedDataset",
        datasets=dict(
            classification=dict(type="ImageNetFolder"),
            detection=dict(type="CocoDetection"),
            segmentation=dict(type="VOCSegmentation"),
        ),
    )
    meta = {"tasks": {"classification": {"classes": ["a"]}, "detection": {"classes": ["b"]}}}
    parts = with_model_classes(joined, meta)["datasets"]
    assert parts["classification"]["model_classes"] == ("a",)
    assert parts["detection"]["model_classes"] == ("b",)
    assert "model_classes" not in parts["segmentation"]  # the model has no names for it
    wrapped = dict(type="RepeatDataset", times=2, dataset=dict(type="VOCDetection"))
    assert with_model_classes(wrapped, {"classes": ["c"]})["dataset"]["model_classes"] == ("c",)
    # A type without the argument (a user's own dataset) is left as it is.
    assert with_model_classes(dict(type="ConcatDataset", datasets=[dict(type="Toy")]), meta)

    entries = dict(
        coco=dict(dataset=dict(type="CocoDetection")), cls=dict(dataset=dict(type="ImageNetFolder"))
    )
    evaluator = dict(coco=dict(detection=dict()), cls=dict(classification=dict()))
    loaders = dataloaders_with_model_classes(entries, evaluator, meta)
    assert loaders["coco"]["dataset"]["model_classes"] == ("b",)
    assert loaders["cls"]["dataset"]["model_classes"] == ("a",)


def test_deployed_files_give_their_class_names_as_model_meta(tmp_path):
    """What tools/eval.py reads from a deployed file's metadata (here a bare graph that
    carries it) to label the test data."""
    import json

    import onnx
    from onnx import TensorProto, helper

    from mtvision.engine.model_source import ModelSource
    from mtvision.export.deploy import METADATA_KEY, read_deploy_metadata

    def deployed_dataset_meta(path):
        heads = read_deploy_metadata(path)["heads"]
        return ModelSource(Config(), deployed_heads=heads).model_dataset_meta

    def deployed(path, heads):
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph)
        helper.set_model_props(model, {METADATA_KEY: json.dumps({"heads": heads})})
        onnx.save(model, str(path))
        return str(path)

    one = deployed(tmp_path / "cls.onnx", {"classification": {"classes": ["a", "b"]}})
    assert deployed_dataset_meta(one) == {"classes": ["a", "b"]}
    two = deployed(
        tmp_path / "mt.onnx",
        {"classification": {"classes": ["a"]}, "detection": {"classes": None}},
    )
    assert deployed_dataset_meta(two) == {"tasks": {"classification": {"classes": ["a"]}}}
    assert deployed_dataset_meta(deployed(tmp_path / "ids.onnx", {"c": {"classes": None}})) is None
