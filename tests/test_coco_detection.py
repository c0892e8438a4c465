"""CocoDetection on tiny COCO trees written to tmp_path (hand-made json and synthetic shapes)."""

import json
import re

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtvision.data import CocoDetection, ImageLoadError, collate_samples
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS
from mtvision.synthetic.shapes import generate_shapes_dataset

PIPELINE = [
    dict(type="LoadImage"),
    dict(type="Albumentations", transforms=[dict(type="Resize", height=32, width=48)]),
    dict(type="PackInputs"),
]

# json order is not id order: labels must follow ascending category id
CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "emu"}]


def ann(ann_id, image_id, category_id, bbox, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def image_entry(image_id, name, width=60, height=40):
    return {"id": image_id, "file_name": name, "width": width, "height": height}


def write_coco(root, images, annotations, categories=CATEGORIES, write_images=True):
    """data_root/annotations/instances_train2017.json + train2017/*.jpg; returns the json path."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "train2017").mkdir(exist_ok=True)
    path = root / "annotations" / "instances_train2017.json"
    content = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(content))
    if write_images:
        for entry in images:
            pixels = np.full((entry["height"], entry["width"], 3), 90, np.uint8)
            assert cv2.imwrite(str(root / "train2017" / entry["file_name"]), pixels)
    return path


@pytest.fixture
def tiny_coco(tmp_path):
    """4 images: a.jpg two boxes (one partly outside), b.jpg a crowd region only,
    c.jpg no annotation, d.jpg a box and a degenerate one."""
    images = [
        image_entry(10, "a.jpg"),
        image_entry(11, "b.jpg"),
        image_entry(12, "c.jpg"),
        image_entry(13, "d.jpg"),
    ]
    annotations = [
        ann(1, 10, 7, [5.5, 4.0, 10.0, 20.0]),
        ann(2, 10, 1, [50.0, 30.0, 20.0, 15.0]),  # runs past the 60 x 40 image
        ann(3, 11, 3, [0.0, 0.0, 30.0, 30.0], iscrowd=1),
        ann(4, 13, 3, [1.0, 2.0, 3.0, 4.0], iscrowd=0),
        ann(5, 13, 1, [10.0, 10.0, 0.0, 5.0]),  # zero width: dropped
    ]
    write_coco(tmp_path, images, annotations)
    return tmp_path


def in_file(path, pattern):
    """Regex for an error message that starts with the file's path."""
    return re.escape(f"{path}: ") + pattern


def test_boxes_labels_and_ids(tiny_coco):
    dataset = CocoDetection(tiny_coco)
    assert dataset.metainfo["category_ids"] == (1, 3, 7)
    assert dataset.metainfo["classes"] == ("cat", "emu", "dog")
    assert len(dataset) == 4  # the crowd-only and the unannotated image stay

    infos = [dataset.get_data_info(i) for i in range(4)]
    assert [info["meta"]["img_id"] for info in infos] == [10, 11, 12, 13]
    assert infos[0]["img_path"] == str(tiny_coco / "train2017" / "a.jpg")
    # [x, y, w, h] -> [x, y, x + w, y + h]; the second clipped to the 60 x 40 image
    np.testing.assert_array_equal(infos[0]["boxes"], [[5.5, 4, 15.5, 24], [50, 30, 60, 40]])
    np.testing.assert_array_equal(infos[0]["labels"], [2, 0])  # dog = id 7, cat = id 1
    assert infos[0]["boxes"].dtype == np.float32 and infos[0]["labels"].dtype == np.int64
    # crowd region is not a training target
    assert infos[1]["boxes"].shape == (0, 4) and infos[1]["labels"].shape == (0,)
    assert infos[2]["boxes"].shape == (0, 4)
    np.testing.assert_array_equal(infos[3]["boxes"], [[1, 2, 4, 6]])
    np.testing.assert_array_equal(infos[3]["labels"], [1])


def test_samples_through_pipeline_and_loader(tiny_coco):
    dataset = DATASETS.build(
        dict(type="CocoDetection", data_root=str(tiny_coco), pipeline=PIPELINE, test_mode=True)
    )
    sample = dataset[0]
    assert sample["inputs"].shape == (3, 32, 48)
    data_sample = sample["data_samples"]
    assert data_sample["meta"]["img_id"] == 10
    assert data_sample["meta"]["ori_shape"] == (40, 60)
    # resized from 60 x 40 to 48 x 32: x * 0.8, y * 0.8
    torch.testing.assert_close(
        data_sample["boxes"], torch.tensor([[4.4, 3.2, 12.4, 19.2], [40.0, 24.0, 48.0, 32.0]])
    )
    assert data_sample["labels"].tolist() == [2, 0]

    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_samples)))
    assert [len(d["labels"]) for d in batch["data_samples"]] == [2, 0, 0, 1]


def test_degenerate_and_outside_boxes_are_dropped_counted_and_logged(tmp_path, logged_warnings):
    annotations = [
        ann(21, 1, 1, [10.0, 10.0, 5.0, 5.0]),  # kept
        ann(22, 1, 1, [10.0, 10.0, 0.0, 5.0]),  # zero width
        ann(24, 1, 7, [70.0, 10.0, 5.0, 5.0]),  # right of the 60 px wide image
        ann(25, 1, 7, [59.5, 10.0, 5.0, 5.0]),  # 0.5 px inside after clipping
    ]
    write_coco(tmp_path, [image_entry(1, "x.jpg")], annotations)
    dataset = CocoDetection(tmp_path)
    assert dataset.num_dropped_boxes == 3
    np.testing.assert_array_equal(dataset.get_data_info(0)["boxes"], [[10, 10, 15, 15]])
    assert len(logged_warnings) == 1
    message = logged_warnings[0]
    assert "dropped 3 boxes of" in message and "instances_train2017.json" in message
    for ann_id in (22, 24, 25):
        assert f"annotation {ann_id} of 'x.jpg'" in message
    assert "annotation 21" not in message
    assert "non-positive size 0 x 5" in message and "outside the 60 x 40 image" in message


def test_class_subset_keeps_ascending_ids(tiny_coco):
    dataset = CocoDetection(tiny_coco, classes=("dog", "cat"))
    assert dataset.metainfo["category_ids"] == (1, 7)
    assert dataset.metainfo["classes"] == ("cat", "dog")
    np.testing.assert_array_equal(dataset.get_data_info(0)["labels"], [1, 0])
    assert len(dataset.get_data_info(3)["labels"]) == 0  # its emu box is not selected
    same = CocoDetection(tiny_coco, metainfo=dict(classes=("cat", "dog")))
    assert same.metainfo["category_ids"] == (1, 7)

    with pytest.raises(ValueError, match=r"instances_train2017.json: classes \['horse'\]"):
        CocoDetection(tiny_coco, classes=("horse", "cat"))


def test_filter_empty_drops_images_without_targets(tiny_coco):
    dataset = CocoDetection(tiny_coco, filter_empty=True)
    assert [dataset.get_data_info(i)["meta"]["img_id"] for i in range(len(dataset))] == [10, 13]
    with pytest.raises(ValueError, match="filter_empty=True cannot be used with test_mode"):
        CocoDetection(tiny_coco, filter_empty=True, test_mode=True)


def test_synthetic_shapes_match_the_json(tmp_path):
    generate_shapes_dataset(tmp_path, seed=1, num_train=2, num_val=3)
    root = tmp_path / "coco"
    dataset = CocoDetection(
        root,
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017"),
        pipeline=[dict(type="LoadImage")],
    )
    content = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    assert dataset.metainfo["category_ids"] == (1, 2, 4, 5, 7, 9)
    assert dataset.metainfo["classes"] == (
        "circle",
        "square",
        "triangle",
        "star",
        "cross",
        "hexagon",
    )
    assert len(dataset) == len(content["images"]) == 3
    label_of = {1: 0, 2: 1, 4: 2, 5: 3, 7: 4, 9: 5}
    for index, image in enumerate(content["images"]):
        info = dataset.get_data_info(index)
        assert info["meta"]["img_id"] == image["id"]
        anns = [a for a in content["annotations"] if a["image_id"] == image["id"]]
        expected = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        np.testing.assert_allclose(info["boxes"], expected)
        assert info["labels"].tolist() == [label_of[a["category_id"]] for a in anns]
        assert dataset[index]["image"].shape == (image["height"], image["width"], 3)


# ---------------------------------------------------------------- bad input


def test_invalid_json_names_the_file(tmp_path):
    path = write_coco(tmp_path, [], [])
    path.write_text('{"images": [}')
    with pytest.raises(
        AnnotationError, match=in_file(path, r"COCO annotation file is not valid JSON")
    ):
        CocoDetection(tmp_path)


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_val2017.json does not exist"):
        CocoDetection(tmp_path, ann_file="annotations/instances_val2017.json")


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key_names_the_file(tmp_path, key):
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [])
    content = json.loads(path.read_text())
    del content[key]
    path.write_text(json.dumps(content))
    with pytest.raises(AnnotationError, match=in_file(path, rf"top-level key '{key}' is missing")):
        CocoDetection(tmp_path)


@pytest.mark.parametrize("key", ["bbox", "category_id", "image_id"])
def test_annotation_without_key_names_file_and_annotation(tmp_path, key):
    broken = ann(42, 1, 1, [1.0, 1.0, 5.0, 5.0])
    del broken[key]
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [broken])
    with pytest.raises(AnnotationError, match=in_file(path, rf"annotation 42 has no '{key}'")):
        CocoDetection(tmp_path)


def test_annotation_of_unknown_image_names_file_and_annotation(tmp_path):
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [ann(42, 99, 1, [1.0, 1.0, 5.0, 5.0])])
    with pytest.raises(
        AnnotationError, match=in_file(path, r"annotation 42 refers to image_id 99")
    ):
        CocoDetection(tmp_path)


def test_unknown_category_names_file_and_annotation(tmp_path):
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [ann(42, 1, 5, [1.0, 1.0, 5.0, 5.0])])
    with pytest.raises(
        AnnotationError,
        match=in_file(path, r"annotation 42 has category_id 5, not in 'categories'"),
    ):
        CocoDetection(tmp_path)


def test_malformed_bbox_names_file_and_annotation(tmp_path):
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [ann(42, 1, 1, [1.0, 1.0, 5.0])])
    with pytest.raises(
        ValueError, match=in_file(path, r"annotation 42 has bbox \[1.0, 1.0, 5.0\]")
    ):
        CocoDetection(tmp_path)


def test_negative_box_size_is_an_error_as_in_the_metric(tmp_path):
    # One reader for the dataset and the metric: what one refuses, the other does too.
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [ann(23, 1, 3, [10, 10, 5, -2])])
    with pytest.raises(AnnotationError, match=in_file(path, r"annotation 23 has bbox")):
        CocoDetection(tmp_path)


def test_duplicate_annotation_id_is_an_error(tmp_path):
    box = [1.0, 1.0, 5.0, 5.0]
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [ann(42, 1, 1, box), ann(42, 1, 3, box)])
    with pytest.raises(
        AnnotationError, match=in_file(path, r"annotation id 42 appears more than once")
    ):
        CocoDetection(tmp_path)


def test_missing_image_file_fails_at_load_time_naming_it(tmp_path):
    write_coco(tmp_path, [image_entry(1, "gone.jpg")], [], write_images=False)
    dataset = CocoDetection(tmp_path, pipeline=PIPELINE)
    assert len(dataset) == 1  # the json is fine; the file is read by the pipeline
    with pytest.raises(ImageLoadError, match=r"cannot load image '.*train2017/gone.jpg'"):
        dataset[0]


# ------------------------------------------------ the decoded image is the truth about size


def phone_photo(root, json_size):
    """images/phone.jpg shown 48 wide x 64 high (red square at x 4..20, y 24..40), stored
    sideways as 64 x 48 pixels with EXIF orientation 6; the json says ``json_size``."""
    from PIL import Image

    shown = np.full((64, 48, 3), 255, np.uint8)
    shown[24:40, 4:20] = (255, 0, 0)
    (root / "images").mkdir(parents=True)
    stored = Image.fromarray(np.rot90(shown, k=1).copy())
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(root / "images" / "phone.jpg", exif=exif.tobytes(), quality=95)
    width, height = json_size
    gt = {
        "images": [{"id": 1, "file_name": "phone.jpg", "width": width, "height": height}],
        "categories": [{"id": 1, "name": "square"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 24, 16, 16], "area": 256}
        ],
    }
    (root / "instances.json").write_text(json.dumps(gt))
    return dict(data_root=root, ann_file="instances.json", data_prefix=dict(img="images/"))


def test_exif_rotated_photo_annotated_as_displayed(tmp_path):
    where = phone_photo(tmp_path, json_size=(48, 64))
    sample = CocoDetection(**where, pipeline=[dict(type="LoadImage")], test_mode=True)[0]
    assert sample["image"].shape == (64, 48, 3)
    x1, y1, x2, y2 = sample["boxes"][0].astype(int)
    inside = sample["image"][y1:y2, x1:x2]
    assert ((inside[..., 0] > 200) & (inside[..., 1] < 80)).mean() > 0.95
    resized = CocoDetection(**where, pipeline=PIPELINE, test_mode=True)[0]
    assert resized["inputs"].shape == (3, 32, 48)


def test_json_made_on_the_stored_pixels_is_an_error_with_both_sizes(tmp_path):
    where = phone_photo(tmp_path, json_size=(64, 48))
    dataset = CocoDetection(**where, pipeline=PIPELINE, test_mode=True)
    with pytest.raises(AnnotationError) as info:
        dataset[0]
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'instances.json'}: says image '")
    assert "phone.jpg' is 64x48 (width x height), but the file decodes to 48x64" in message
    assert "EXIF orientation 6" in message


def test_wrong_size_in_the_json_is_an_error_naming_both_files(tmp_path):
    path = write_coco(tmp_path, [image_entry(1, "x.jpg", width=60, height=40)], [])
    cv2.imwrite(str(tmp_path / "train2017" / "x.jpg"), np.zeros((40, 50, 3), np.uint8))
    dataset = CocoDetection(tmp_path, pipeline=PIPELINE)
    with pytest.raises(
        AnnotationError,
        match=in_file(path, r"says image '.*x.jpg' is 60x40 \(width x height\), but the file "
                      r"decodes to 50x40$"),
    ):  # fmt: skip
        dataset[0]


def test_tiny_and_one_pixel_images(tmp_path):
    images = [image_entry(1, "one.png", width=1, height=1), image_entry(2, "row.png", 7, 1)]
    write_coco(tmp_path, images, [ann(1, 1, 1, [0, 0, 1, 1]), ann(2, 2, 1, [-3, 0, 20, 5])])
    dataset = CocoDetection(tmp_path, pipeline=PIPELINE)
    one, row = dataset[0]["data_samples"], dataset[1]["data_samples"]
    assert one["meta"]["ori_shape"] == (1, 1) and row["meta"]["ori_shape"] == (1, 7)
    torch.testing.assert_close(one["boxes"], torch.tensor([[0.0, 0.0, 48.0, 32.0]]))
    torch.testing.assert_close(row["boxes"], torch.tensor([[0.0, 0.0, 48.0, 32.0]]))


def test_two_categories_with_one_name_are_an_error(tmp_path):
    categories = [{"id": 3, "name": "cat"}, {"id": 9, "name": "cat"}]
    path = write_coco(tmp_path, [image_entry(1, "x.jpg")], [], categories=categories)
    with pytest.raises(AnnotationError, match=in_file(path, r"categories 3 and 9 are both named")):
        CocoDetection(tmp_path)


def test_file_names_with_folders_and_mixed_case(tmp_path):
    (tmp_path / "train2017" / "sub" / "dir").mkdir(parents=True)
    write_coco(tmp_path, [image_entry(1, "sub/dir/A.JPG")], [ann(1, 1, 1, [1, 1, 5, 5])])
    dataset = CocoDetection(tmp_path, pipeline=PIPELINE)
    assert dataset[0]["data_samples"]["labels"].tolist() == [0]


# ------------------------------------------------------------ the model's label space


def test_model_classes_keep_the_models_labels_by_name(tmp_path, logged_warnings):
    """A val json lacking 'cat' and numbering its categories otherwise: labels by name."""
    categories = [{"id": 40, "name": "emu"}, {"id": 9, "name": "dog"}]
    images = [image_entry(1, "a.jpg")]
    annotations = [ann(1, 1, 40, [1, 1, 10, 10]), ann(2, 1, 9, [20, 5, 10, 10])]
    write_coco(tmp_path, images, annotations, categories)
    model_classes = ("cat", "dog", "emu")  # trained on ids 1, 7, 3 (CATEGORIES)
    dataset = CocoDetection(
        tmp_path, ann_file="annotations/instances_train2017.json", model_classes=model_classes
    )
    assert dataset.metainfo["classes"] == model_classes
    assert dataset.metainfo["category_ids"] == (None, 9, 40)
    info = dataset.get_data_info(0)
    assert info["labels"].tolist() == [2, 1]  # emu, dog: the model's labels
    assert dataset.load_data_list()[0]["labels"].tolist() == [2, 1]  # loads again alike
    json_path = tmp_path / "annotations" / "instances_train2017.json"
    assert logged_warnings[0] == (
        f"CocoDetection: 1 of the model's 3 classes are not categories of {json_path}: cat; "
        "they are scored as classes without objects (the other categories keep the model's "
        "labels)"
    )


def test_model_classes_refuse_a_category_the_model_lacks(tmp_path):
    write_coco(tmp_path, [image_entry(1, "a.jpg")], [ann(1, 1, 7, [1, 1, 10, 10])])
    json_path = tmp_path / "annotations" / "instances_train2017.json"
    message = (
        f"{json_path}: classes ['emu', 'dog'] are not classes of the model; the data has "
        "['cat', 'emu', 'dog'], the model ['cat', 'yak']"
    )
    with pytest.raises(AnnotationError, match=re.escape(message)):
        CocoDetection(tmp_path, ann_file=str(json_path), model_classes=("cat", "yak"))
    # Selecting the model's classes (classes=) leaves the other categories out, as before.
    dataset = CocoDetection(
        tmp_path, ann_file=str(json_path), classes=("cat",), model_classes=("cat", "yak")
    )
    assert dataset.metainfo["category_ids"] == (1, None)
