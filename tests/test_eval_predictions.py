"""tools/eval.py for detection: a COCO results file evaluated without a model
(--predictions/--ann), and --out/--show-dir end to end with a tiny untrained SSDLite."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_toy import load_tool
from mmengine.config import Config

from mtvision.apis import evaluation
from mtvision.data.image_io import load_image
from mtvision.engine.cli import run_cli
from mtvision.errors import AnnotationError, ConfigError
from mtvision.evaluation.coco_metric import COCO_BBOX_STAT_NAMES, CocoMetric, evaluate_bbox
from mtvision.registry import MODELS
from mtvision.synthetic.shapes import generate_shapes_dataset

eval_tool = load_tool("eval")


def annotations() -> dict:
    """Two images, one object each (categories 3 'dog' and 8 'cat'); a third image is empty."""
    return {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 200, "height": 200},
            {"id": 11, "file_name": "b.jpg", "width": 200, "height": 200},
            {"id": 12, "file_name": "c.jpg", "width": 200, "height": 200},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 3,
                "bbox": [10, 10, 60, 60],
                "area": 3600,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 11,
                "category_id": 8,
                "bbox": [50, 40, 100, 120],
                "area": 12000,
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 3, "name": "dog"}, {"id": 8, "name": "cat"}],
    }


def results() -> list[dict]:
    """Dog: a confident false positive, then the exact box -> AP 0.5. Cat: not detected."""
    return [
        {"image_id": 10, "category_id": 3, "bbox": [120, 120, 60, 60], "score": 0.9},
        {"image_id": 10, "category_id": 3, "bbox": [10, 10, 60, 60], "score": 0.6},
        {"image_id": 12, "category_id": 8, "bbox": [0, 0, 30, 30], "score": 0.2},
    ]


@pytest.fixture
def files(tmp_path):
    ann, res = tmp_path / "instances_val.json", tmp_path / "results.json"
    ann.write_text(json.dumps(annotations()))
    res.write_text(json.dumps(results()))
    return str(res), str(ann)


def test_evaluates_a_results_file(files, capsys):
    results_file, ann_file = files
    metrics = eval_tool.main(["--predictions", results_file, "--ann", ann_file])
    assert list(metrics) == [f"coco/{name}" for name in COCO_BBOX_STAT_NAMES]
    # Every image of the annotation file counts: dog AP 0.5, cat AP 0 -> mAP 0.25.
    assert metrics["coco/bbox_mAP"] == pytest.approx(0.25, abs=1e-12)
    assert metrics["coco/bbox_mAP_m"] == pytest.approx(0.5, abs=1e-12)  # the dog is medium
    assert metrics["coco/bbox_mAP_l"] == 0.0  # the cat is large
    assert metrics["coco/bbox_mAP_s"] == -1.0  # no small objects: undefined
    assert metrics["coco/bbox_AR@1"] == 0.0 and metrics["coco/bbox_AR@10"] == 0.5
    expected = evaluate_bbox(annotations(), results(), backend="pycocotools").stats
    assert list(metrics.values()) == pytest.approx(expected.tolist(), abs=1e-12)

    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :]) == pytest.approx(metrics)
    table = out[out.index("Per-category bbox AP") :].splitlines()
    assert table[2].split() == ["dog", "0.500", "0.500"]
    assert table[3].split() == ["cat", "0.000", "0.000"]


def test_duplicate_ground_truth_is_reported_and_not_scored(files, tmp_path, capsys):
    """An annotation listed twice under a new id (a CVAT export fault) is named and
    dropped: the metric is the one of the file without the copy."""
    results_file, ann_file = files
    with_copy = annotations()
    with_copy["annotations"].append(dict(with_copy["annotations"][0], id=99))
    dup_file = tmp_path / "instances_dup.json"
    dup_file.write_text(json.dumps(with_copy))
    clean = eval_tool.main(["--predictions", results_file, "--ann", ann_file])
    assert "duplicate" not in capsys.readouterr().out
    metrics = eval_tool.main(["--predictions", results_file, "--ann", str(dup_file)])
    assert metrics == clean and metrics["coco/bbox_mAP"] == pytest.approx(0.25, abs=1e-12)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        f"{dup_file}: dropped 1 duplicate annotation (an exact copy of an earlier one: same "
        "image, category and bbox, another id): id 99 (copy of 1)"
    )


@pytest.mark.parametrize("first_id", [1, 2**53, 2**63 - 3])
def test_results_file_with_ids_beyond_float64(tmp_path, first_id):
    """The same boxes under any ids give the small-id numbers (ids are renumbered before
    evaluation: a float64 merges 2**53 and 2**53 + 1, which would pool two images)."""
    ids = [first_id, first_id + 1, first_id + 2]
    gt = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in ids],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": k + 1, "image_id": i, "category_id": 1, "bbox": [10 + 20 * k, 10, 30, 30],
             "area": 900, "iscrowd": 0}
            for k, i in enumerate(ids)
        ],
    }  # fmt: skip
    res = [
        {"image_id": ids[1], "category_id": 1, "bbox": [30, 10, 30, 30], "score": 0.9},
        {"image_id": ids[0], "category_id": 1, "bbox": [50, 10, 30, 30], "score": 0.8},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    metrics = eval_tool.main(
        ["--predictions", str(tmp_path / "res.json"), "--ann", str(tmp_path / "gt.json")]
    )
    assert metrics["coco/bbox_mAP"] == pytest.approx(0.33663366336633666, abs=1e-12)
    assert metrics["coco/bbox_AR@100"] == pytest.approx(1 / 3, abs=1e-12)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--predictions", "r.json"], "--predictions and --ann go together"),
        (["--ann", "a.json"], "--predictions and --ann go together"),
        (["cfg.py", "--predictions", "r.json", "--ann", "a.json"], "drop CONFIG"),
        (["--predictions", "r.json", "--ann", "a.json", "--out", "x.json"], "drop --out"),
        (["cfg.py"], "CONFIG and CHECKPOINT are required"),
        ([], "CONFIG and CHECKPOINT are required"),
        (["cfg.py", "ckpt.pth", "--show-limit", "3"], "--show-limit needs --show-dir"),
        (["cfg.py", "ckpt.pth", "--out", "x.txt"], "use a .json"),
    ],
)
def test_wrong_argument_combinations(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_tool.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_results_name_file_and_problem(files, tmp_path):
    results_file, ann_file = files
    unknown_image = tmp_path / "unknown_image.json"
    unknown_image.write_text(json.dumps([dict(results()[0], image_id=99)]))
    with pytest.raises(
        match="unknown_image.json: image_id 99 is not an image of .*instances_val.json",
    ):
        eval_tool.main(["--predictions", str(unknown_image), "--ann", ann_file])
    no_score = tmp_path / "no_score.json"
    no_score.write_text(json.dumps([{k: v for k, v in results()[1].items() if k != "score"}]))
    with pytest.raises(
        AnnotationError, match="no_score.json: result #0: needs a finite numeric 'score'"
    ):
        eval_tool.main(["--predictions", str(no_score), "--ann", ann_file])
    with pytest.raises(
        FileNotFoundError, match="COCO annotation file .*missing.json does not exist"
    ):
        eval_tool.main(["--predictions", results_file, "--ann", str(tmp_path / "missing.json")])


@pytest.mark.parametrize("broken_file", ["annotations", "results"])
def test_command_line_error_is_one_line(files, tmp_path, capsys, broken_file):
    results_file, ann_file = files
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    if broken_file == "annotations":
        argv = ["--predictions", results_file, "--ann", str(broken)]
    else:
        argv = ["--predictions", str(broken), "--ann", ann_file]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: eval_tool.main(argv))
    assert exit_info.value.code == 2
    kind = "annotation" if broken_file == "annotations" else "results"
    assert capsys.readouterr().err.startswith(
        f"error: {broken}: COCO {kind} file is not valid JSON"
    )


def test_untrained_ssdlite_writes_coco_results_and_pictures(tmp_path):
    coco = Path(
        generate_shapes_dataset(tmp_path / "shapes", seed=0, num_train=1, num_val=4)["root"]
    )
    coco = tmp_path / "shapes" / "coco"
    ann_file = coco / "annotations" / "instances_val2017.json"
    model = dict(
        type="MultiTaskModel",
        backbone=dict(type="MobileNetV2", width_mult=0.35),
        heads=dict(
            detection=dict(type="SSDLiteHead", num_classes=6, extra_depths=(32, 16, 16, 16))
        ),
    )
    resize = dict(type="Albumentations", transforms=[dict(type="Resize", height=128, width=128)])
    config = Config(
        dict(
            default_scope="mtvision",
            model=model,
            test_dataloader=dict(
                batch_size=3,
                num_workers=0,
                sampler=dict(type="DefaultSampler", shuffle=False),
                collate_fn=dict(type="mtvision.collate_samples"),
                dataset=dict(
                    type="CocoDetection",
                    data_root=str(coco),
                    ann_file="annotations/instances_val2017.json",
                    data_prefix=dict(img="val2017/"),
                    pipeline=[dict(type="LoadImage"), resize, dict(type="PackInputs")],
                    test_mode=True,
                ),
            ),
            test_cfg=dict(type="TestLoop"),
            test_evaluator=dict(type="CocoMetric", ann_file=str(ann_file)),
            log_level="WARNING",
        )
    )
    config.dump(str(tmp_path / "cfg.py"))
    torch.manual_seed(0)
    torch.save({"state_dict": MODELS.build(model).state_dict()}, tmp_path / "untrained.pth")

    metrics = eval_tool.main(
        [str(tmp_path / "cfg.py"), str(tmp_path / "untrained.pth")]
        + ["--out", str(tmp_path / "results.json"), "--work-dir", str(tmp_path / "wd")]
        + ["--show-dir", str(tmp_path / "show"), "--show-limit", "2", "--show-score-thr", "0"]
    )

    gt = json.loads(ann_file.read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in gt["images"]}
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["image_id"] for r in results} == set(sizes)
    assert {r["category_id"] for r in results} <= {c["id"] for c in gt["categories"]}
    # Boxes are in original-image pixels (images are 96-192 px, the input 128 px).
    for r in results:
        x, y, w, h = r["bbox"]
        width, height = sizes[r["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= width + 1e-3 and y + h <= height + 1e-3
    # The metric and a re-evaluation of the file it wrote agree.
    again = eval_tool.main(
        ["--predictions", str(tmp_path / "results.json"), "--ann", str(ann_file)]
    )
    assert again == pytest.approx(metrics, abs=1e-12)

    # --show-limit 2: the first two test images, drawn on the originals.
    pictures = sorted((tmp_path / "show").iterdir())
    first_two = [image["file_name"] for image in gt["images"][:2]]
    assert [p.name for p in pictures] == sorted(Path(f).stem + ".png" for f in first_two)
    for picture, file_name in zip(pictures, sorted(first_two), strict=True):
        original = load_image(coco / "val2017" / file_name)
        drawn = load_image(picture)
        assert drawn.shape == original.shape
        assert np.any(drawn != original)


def test_out_json_is_coco_results_only_with_a_coco_metric():
    coco = dict(type="mtvision.CocoMetric", ann_file="instances_val.json")
    cfg = Config(dict(test_evaluator=coco))
    assert evaluation.route_out(cfg, "results.json") is True
    assert cfg.test_evaluator[0]["results_file"] == "results.json"
    cfg = Config(dict(test_evaluator=[dict(type="VOCMeanAP"), dict(type="ToyAccuracy")]))
    assert evaluation.route_out(cfg, "metrics.json") is False
    assert all("results_file" not in e for e in cfg.test_evaluator)
    cfg = Config(dict(test_evaluator=coco))
    assert evaluation.route_out(cfg, "predictions.pkl") is False
    assert [e["type"] for e in cfg.test_evaluator] == ["mtvision.CocoMetric", "DumpResults"]
    cfg = Config(dict(test_evaluator=[coco, dict(coco, ann_file="other.json")]))
    with pytest.raises(ConfigError, match="--out r.json: the test evaluator has 2 CocoMetrics"):
        evaluation.route_out(cfg, "r.json")


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_real_coco_check_prints_the_official_numbers(realdata, capsys, backend, monkeypatch):
    """cocoapi's own example pair (100 COCO val2014 images, its fake detections): the 12
    statistics cocoapi publishes, through the --predictions path and both backends."""
    folder = realdata / "coco_val2014_100_eval"
    expected = json.loads((folder / "expected" / "stats_full_precision.json").read_text())["bbox"]
    # tools/eval.py uses the metric's default backend ("auto"); pin each one in turn.
    monkeypatch.setattr(
        evaluation, "CocoMetric", lambda ann_file: CocoMetric(ann_file=ann_file, backend=backend)
    )
    metrics = eval_tool.main(
        [
            "--predictions",
            str(folder / "results" / "instances_val2014_fakebbox100_results.json"),
            "--ann",
            str(folder / "annotations" / "instances_val2014_100.json"),
        ]
    )
    got = [metrics[f"coco/{name}"] for name in COCO_BBOX_STAT_NAMES]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["coco/bbox_mAP"] == pytest.approx(
        expected[0], abs=1e-12
    )


def test_empty_results_and_annotations_passed_as_results(files, tmp_path):
    results_file, ann_file = files
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    metrics = eval_tool.main(["--predictions", str(empty), "--ann", ann_file])
    assert metrics["coco/bbox_mAP"] == 0.0 and metrics["coco/bbox_AR@100"] == 0.0
    # The annotation file given twice: an easy slip, named as such.
    with pytest.raises(
        AnnotationError, match=r"instances_val.json: expected a JSON list of detections, got dict"
    ):
        eval_tool.main(["--predictions", ann_file, "--ann", ann_file])
