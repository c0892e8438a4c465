"""The one reader of a config and a checkpoint (mtvision.engine.model_source): every tool
reads its checkpoint once (weights and meta together), the inference pipeline leaves out
the transforms that declare they read files, class names by head name, and a Config
given to the Inferencer gets its options checked as a config file's do."""

import json
import os

import pytest
import torch
from engine_toy import load_tool, loader_options
from inference_toy import CLASSIFIER, SHAPES, save_random_checkpoint

from mtvision.apis import Inferencer
from mtvision.engine import load_config
from mtvision.engine.model_source import (
    ModelSource,
    config_metainfo,
    inference_pipeline,
    reads_files,
)
from mtvision.errors import CheckpointError, ConfigError
from mtvision.export.deploy import read_deploy_metadata
from mtvision.registry import TRANSFORMS
from mtvision.synthetic.shapes import generate_shapes_dataset
from mtvision.tasks import CLASSIFICATION

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A few small ImageNet-layout shapes images (the classifier demo config's data)."""
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(out, seed=1, num_train=1, num_val=4, min_size=40, max_size=56)
    return out / "imagenet"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The demo classifier with random weights and the shapes' class names in its meta."""
    path = tmp_path_factory.mktemp("classifier") / "classifier.pth"
    save_random_checkpoint(CLASSIFIER, path, {"classes": SHAPES})
    return str(path)


@pytest.fixture
def reads(monkeypatch):
    """``{path: how many times torch.load read it}`` while the test runs: every checkpoint
    reader (load_checkpoint_file, mmengine's CheckpointLoader, load_from) ends in torch.load."""
    counts: dict[str, int] = {}
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        if isinstance(f, str | os.PathLike):
            key = os.path.realpath(f)
            counts[key] = counts.get(key, 0) + 1
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    return counts


def times_read(reads: dict, path) -> int:
    return reads.get(os.path.realpath(path), 0)


def options(shapes) -> list[str]:
    return loader_options(
        f"dataset.data_root={shapes}", "num_workers=0", "persistent_workers=False"
    )


@pytest.fixture(scope="module")
def deployed(checkpoint, tmp_path_factory):
    """The classifier exported by tools/export_onnx.py (checked on random images)."""
    out = tmp_path_factory.mktemp("deployed") / "classifier.onnx"
    argv = [CLASSIFIER, checkpoint, "--out", str(out), "--check-images", "0"]
    load_tool("export_onnx").main(argv)
    return str(out)


def test_eval_reads_the_checkpoint_once(checkpoint, shapes, tmp_path, reads):
    metrics = load_tool("eval").main(
        [CLASSIFIER, checkpoint, "--work-dir", str(tmp_path / "work")]
        + ["--cfg-options", *options(shapes)]
    )
    assert 0.0 <= metrics["accuracy/top1"] <= 1.0
    assert times_read(reads, checkpoint) == 1


def test_eval_of_a_deployed_file_reads_no_checkpoint(deployed, shapes, tmp_path, reads):
    metrics = load_tool("eval").main(
        [CLASSIFIER, deployed, "--work-dir", str(tmp_path / "work")]
        + ["--cfg-options", *options(shapes)]
    )
    assert 0.0 <= metrics["accuracy/top1"] <= 1.0
    assert reads == {}


def test_export_reads_the_checkpoint_once_and_records_its_classes(
    checkpoint, tmp_path, reads, capsys
):
    out = tmp_path / "classifier.onnx"
    agreements = load_tool("export_onnx").main(
        [CLASSIFIER, checkpoint, "--out", str(out), "--check-images", "2"]
    )
    assert agreements == {"classification": pytest.approx(1.0)}
    assert times_read(reads, checkpoint) == 1
    heads = read_deploy_metadata(out)["heads"]
    assert heads["classification"]["classes"] == list(SHAPES)
    assert "wrote" in capsys.readouterr().out


def test_visualize_reads_the_checkpoint_once(checkpoint, shapes, tmp_path, reads):
    grid = load_tool("visualize").main(
        [CLASSIFIER, checkpoint, "--out", str(tmp_path / "grid.png"), "--num", "2"]
        + ["--cfg-options", *options(shapes)]
    )
    assert grid.ndim == 3 and grid.shape[2] == 3
    assert times_read(reads, checkpoint) == 1


def test_predict_reads_the_checkpoint_once(checkpoint, shapes, tmp_path, reads):
    image = next(p for p in sorted(shapes.rglob("*")) if p.suffix in (".png", ".jpg", ".jpeg"))
    run = load_tool("predict").main(
        [CLASSIFIER, checkpoint, str(image), "--out-dir", str(tmp_path / "out"), "--no-progress"]
    )
    assert len(run["written"]) == 1
    assert times_read(reads, checkpoint) == 1
    (json_file,) = (tmp_path / "out").glob("*.json")
    assert set(json.loads(json_file.read_text())["label_names"]) <= set(SHAPES)


def test_inferencer_on_a_deployed_file_reads_the_checkpoint_once_for_class_names(
    checkpoint, deployed, reads
):
    inferencer = Inferencer(CLASSIFIER, checkpoint, backend="onnxruntime", model=deployed)
    assert times_read(reads, checkpoint) == 1
    assert inferencer.heads["classification"].classes == SHAPES
    assert inferencer.heads["classification"].max_topk == 5


def test_quantize_reads_no_checkpoint(deployed, shapes, tmp_path, reads):
    record = load_tool("quantize").main(
        [CLASSIFIER, deployed, "--out", str(tmp_path / "q.onnx"), "--calib", "2"]
        + ["--cfg-options", *options(shapes)]
    )
    assert record["calibration_images"] == 2
    assert reads == {}


# ------------------------------------------------------------------- the pieces


def test_inference_pipeline_leaves_out_what_declares_it_reads_files():
    """By declaration, not by name: a "Load..." transform that reads nothing stays, a
    transform of another name that reads files goes."""

    @TRANSFORMS.register_module(name="LoadNothingForTest", force=True)
    class LoadNothing:
        def __call__(self, results):
            return {**results, "touched": True}

    @TRANSFORMS.register_module(name="FetchDepthForTest", force=True)
    class FetchDepth:
        reads_files = True

        def __call__(self, results):
            raise AssertionError("an inference pipeline must not read files")

    pipeline = [
        dict(type="LoadImage"),
        dict(type="LoadMask"),
        dict(type="LoadNothingForTest"),
        dict(type="FetchDepthForTest"),
    ]
    assert [reads_files(step) for step in pipeline] == [True, True, False, True]
    composed = inference_pipeline(pipeline)
    assert [type(t).__name__ for t in composed.transforms] == ["LoadNothing"]
    assert composed({"image": None}) == {"image": None, "touched": True}


def test_head_classes_from_the_checkpoint_else_the_config(checkpoint, tmp_path, reads):
    cfg = load_config(CLASSIFIER)
    source = ModelSource(cfg, checkpoint)
    assert source.head_infos({"classification": CLASSIFICATION})["classification"].classes == SHAPES
    assert source.checkpoint_classes({"classification": CLASSIFICATION}) == {
        "classification": list(SHAPES)
    }
    assert source.input_size == (64, 64)
    source.build_model()
    assert times_read(reads, checkpoint) == 1

    bare = tmp_path / "bare.pth"
    torch.save({"state_dict": source.checkpoint["state_dict"]}, bare)
    from_config = ModelSource(cfg, bare).head_infos({"classification": CLASSIFICATION})
    declared = (config_metainfo(cfg) or {}).get("classes")
    expected = None if declared is None else tuple(str(c) for c in declared)
    assert from_config["classification"].classes == expected
    assert ModelSource(cfg, bare).checkpoint_classes({"classification": CLASSIFICATION}) == {
        "classification": None
    }


def test_a_config_object_gets_its_options_checked_like_a_file(checkpoint):
    cfg = load_config(CLASSIFIER)
    with pytest.raises(ConfigError) as error:
        Inferencer(cfg, checkpoint, cfg_options={"model.backbone.width_mult": 0})
    assert str(error.value) == (
        "--cfg-options model.backbone.width_mult=0: 'model.backbone.width_mult' must be a "
        "finite number > 0, got 0"
    )
    with pytest.raises(ConfigError, match="unknown top-level config key 'modle'"):
        Inferencer(cfg, checkpoint, cfg_options={"modle.backbone.width_mult": 1})
    assert cfg.model.backbone.get("width_mult") != 0  # the given Config is left as it was


def test_int8_emulation_without_its_record_names_the_checkpoint(checkpoint):
    """A config asking for the int8 emulation with a checkpoint that was not converted
    from an int8 file (no ``meta["int8_emulation"]``): one CheckpointError naming it."""
    cfg = load_config(CLASSIFIER)
    cfg.int8_emulation = True
    with pytest.raises(CheckpointError, match=rf"{checkpoint}: .*int8"):
        ModelSource(cfg, str(checkpoint)).build_model()
    assert ModelSource(cfg, str(checkpoint)).build_model(int8_emulation=False) is not None
