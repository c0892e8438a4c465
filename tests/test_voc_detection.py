"""VOCDetection on tiny VOCdevkit trees written to tmp_path."""

import re

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from mtvision.data import VOC_DETECTION_CLASSES, ImageLoadError, VOCDetection
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS

PIPELINE = [
    dict(type="LoadImage"),
    dict(type="Albumentations", transforms=[dict(type="Resize", height=25, width=50)]),
    dict(type="PackInputs"),
]


def voc_xml(objects, size=(100, 50)):
    """Annotation XML; objects are (name, (xmin, ymin, xmax, ymax), difficult or None)."""
    parts = [f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height>"]
    parts.append("<depth>3</depth></size>")
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>{flag}"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
            f"<ymax>{ymax}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc(year_dir, annotations, split="trainval", size=(100, 50)):
    """VOCdevkit/VOC20xx with JPEGImages, Annotations and ImageSets/Main/<split>.txt."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    for img_id, xml in annotations.items():
        pixels = np.full((size[1], size[0], 3), 60, np.uint8)
        assert cv2.imwrite(str(year_dir / "JPEGImages" / f"{img_id}.jpg"), pixels)
        (year_dir / "Annotations" / f"{img_id}.xml").write_text(xml)
    (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(annotations) + "\n")
    return year_dir


@pytest.fixture
def voc2007(tmp_path):
    return write_voc(
        tmp_path / "VOCdevkit" / "VOC2007",
        {
            "000005": voc_xml(
                [
                    ("dog", (1, 1, 10, 20), 0),
                    ("person", (20, 5, 100, 50), 1),  # difficult
                    ("car", (41, 11, 60, 30), None),  # no <difficult>: not difficult
                ]
            ),
            "000007": voc_xml([("person", (5, 6, 7, 8), 1)]),  # only a difficult object
        },
    )


def in_file(path, pattern):
    """Regex for an error message that starts with the file's path."""
    return re.escape(f"{path}: ") + pattern


def test_boxes_are_continuous_pixel_edges_and_difficult_is_kept_aside(voc2007):
    dataset = VOCDetection(voc2007)
    assert dataset.metainfo["classes"] == VOC_DETECTION_CLASSES
    assert len(VOC_DETECTION_CLASSES) == 20 and VOC_DETECTION_CLASSES[0] == "aeroplane"
    assert len(dataset) == 2
    info = dataset.get_data_info(0)
    assert info["img_path"] == str(voc2007 / "JPEGImages" / "000005.jpg")
    dog, person, car = (VOC_DETECTION_CLASSES.index(n) for n in ("dog", "person", "car"))
    assert (dog, person, car) == (11, 14, 6)
    # 1-based inclusive indices -> [xmin - 1, ymin - 1, xmax, ymax]
    np.testing.assert_array_equal(info["boxes"], [[0, 0, 10, 20], [40, 10, 60, 30]])
    np.testing.assert_array_equal(info["labels"], [dog, car])
    assert info["boxes"].dtype == np.float32 and info["labels"].dtype == np.int64

    assert info["meta"]["img_id"] == "000005"
    ann = info["meta"]["ann"]
    np.testing.assert_array_equal(
        ann["boxes"], [[0, 0, 10, 20], [19, 4, 100, 50], [40, 10, 60, 30]]
    )
    np.testing.assert_array_equal(ann["labels"], [dog, person, car])
    np.testing.assert_array_equal(ann["difficult"], [False, True, False])
    assert ann["difficult"].dtype == bool

    only_difficult = dataset.get_data_info(1)
    assert only_difficult["boxes"].shape == (0, 4) and only_difficult["labels"].shape == (0,)
    assert only_difficult["meta"]["ann"]["difficult"].tolist() == [True]


def test_samples_through_pipeline(voc2007):
    dataset = VOCDetection(voc2007, pipeline=PIPELINE, test_mode=True)
    sample = dataset[0]
    assert sample["inputs"].shape == (3, 25, 50)
    data_sample = sample["data_samples"]
    # resized from 100 x 50 to 50 x 25: halves
    torch.testing.assert_close(
        data_sample["boxes"], torch.tensor([[0.0, 0.0, 5.0, 10.0], [20.0, 5.0, 30.0, 15.0]])
    )
    meta = data_sample["meta"]
    assert meta["img_id"] == "000005" and meta["ori_shape"] == (50, 100)
    # the metric's annotation stays in original pixels
    assert meta["ann"]["boxes"][1].tolist() == [19, 4, 100, 50]


def test_boxes_past_the_image_are_clipped_to_its_size(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"a": voc_xml([("cat", (90, 40, 120, 60), 0)])})
    np.testing.assert_array_equal(VOCDetection(root).get_data_info(0)["boxes"], [[89, 39, 100, 50]])


def test_07_plus_12_concat_from_config(tmp_path, voc2007):
    voc2012 = write_voc(
        tmp_path / "VOCdevkit" / "VOC2012",
        {"2008_000001": voc_xml([("cat", (3, 4, 30, 40), 0)])},
    )
    cfg = dict(
        type="ConcatDataset",
        datasets=[
            dict(type="VOCDetection", data_root=str(voc2007), pipeline=PIPELINE),
            dict(type="VOCDetection", data_root=str(voc2012), pipeline=PIPELINE),
        ],
    )
    with DefaultScope.overwrite_default_scope("mtvision"):
        dataset = DATASETS.build(cfg)
    assert len(dataset) == 3
    assert dataset.metainfo["classes"] == VOC_DETECTION_CLASSES
    last = dataset[2]["data_samples"]
    assert last["meta"]["img_id"] == "2008_000001"
    assert last["labels"].tolist() == [VOC_DETECTION_CLASSES.index("cat")]
    assert str(voc2012) in last["meta"]["img_path"]


def test_custom_classes(tmp_path):
    root = write_voc(
        tmp_path / "VOC2007",
        {"a": voc_xml([("square", (1, 1, 5, 5), 0), ("circle", (2, 2, 9, 9), 0)])},
    )
    dataset = VOCDetection(root, classes=("circle", "square"))
    assert dataset.metainfo["classes"] == ("circle", "square")
    assert dataset.get_data_info(0)["labels"].tolist() == [1, 0]


# ---------------------------------------------------------------- bad input


def test_malformed_xml_names_the_file(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"bad": "<annotation><object><name>cat</name>"})
    with pytest.raises(
        AnnotationError, match=in_file(root / "Annotations" / "bad.xml", "malformed XML")
    ):
        VOCDetection(root)


def test_unknown_class_name_names_the_file(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"x": voc_xml([("unicorn", (1, 1, 5, 5), 0)])})
    with pytest.raises(
        AnnotationError,
        match=in_file(root / "Annotations" / "x.xml", r"object 0 \(unicorn\) has class"),
    ):
        VOCDetection(root)


def test_listed_id_without_annotation_file_names_both(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"x": voc_xml([("cat", (1, 1, 5, 5), 0)])})
    with open(root / "ImageSets" / "Main" / "trainval.txt", "a") as f:
        f.write("missing_one\n")
    with pytest.raises(FileNotFoundError, match=r"Annotations/missing_one.xml does not exist"):
        VOCDetection(root)


def test_missing_list_file_is_named(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"x": voc_xml([("cat", (1, 1, 5, 5), 0)])})
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/test.txt does not exist"):
        VOCDetection(root, ann_file="ImageSets/Main/test.txt")


def test_missing_or_empty_box_names_file_and_object(tmp_path):
    xml = voc_xml([("cat", (1, 1, 5, 5), 0), ("dog", (1, 1, 5, 5), 0)])
    root = write_voc(tmp_path / "VOC2007", {"x": xml.replace("<ymax>5</ymax>", "", 1)})
    path = root / "Annotations" / "x.xml"
    with pytest.raises(AnnotationError, match=in_file(path, r"object 0 \(cat\) has no numeric")):
        VOCDetection(root)
    path.write_text(voc_xml([("cat", (1, 1, 5, 5), 0), ("dog", (9, 1, 5, 5), 0)]))
    with pytest.raises(AnnotationError, match=in_file(path, r"object 1 \(dog\) has an empty box")):
        VOCDetection(root)


def test_missing_image_fails_at_load_time_naming_it(voc2007):
    (voc2007 / "JPEGImages" / "000007.jpg").unlink()
    dataset = VOCDetection(voc2007, pipeline=PIPELINE)
    with pytest.raises(ImageLoadError, match="000007.jpg"):
        dataset[1]


# ------------------------------------------------ the decoded image is the truth about size


def zero_based_voc(tmp_path, size_tag: str):
    """A 40 x 30 image whose dog fills the left edge, written by a 0-based tool (xmin=0)."""
    root = tmp_path / "VOC"
    xml = (
        f"<annotation><filename>a.jpg</filename>{size_tag}<object><name>dog</name>"
        "<difficult>0</difficult><bndbox><xmin>0</xmin><ymin>5</ymin><xmax>19</xmax>"
        "<ymax>24</ymax></bndbox></object></annotation>"
    )
    write_voc(root, {"a": xml}, split="test", size=(40, 30))
    return root


@pytest.mark.parametrize(
    "size_tag",
    [
        "",  # no <size>: the image header gives it
        "<size><width>40</width><height>30</height><depth>3</depth></size>",
        "<size><width>0</width><height>0</height><depth>3</depth></size>",  # tools write 0
        "<size><depth>3</depth></size>",
    ],
    ids=["absent", "present", "zero", "partial"],
)
def test_zero_based_box_is_clipped_to_the_decoded_image(tmp_path, size_tag):
    root = zero_based_voc(tmp_path, size_tag)
    dataset = VOCDetection(root, ann_file="ImageSets/Main/test.txt", pipeline=PIPELINE)
    info = dataset.get_data_info(0)
    np.testing.assert_array_equal(info["boxes"], [[0, 4, 19, 24]])
    np.testing.assert_array_equal(info["meta"]["ann"]["boxes"], [[0, 4, 19, 24]])
    assert (info["width"], info["height"]) == (40, 30)
    # Through the pipeline (resized from 40 x 30 to 50 x 25) without an error.
    torch.testing.assert_close(
        dataset[0]["data_samples"]["boxes"], torch.tensor([[0.0, 10 / 3, 23.75, 20.0]])
    )


def test_wrong_size_in_the_xml_is_an_error_naming_both_files(tmp_path):
    root = zero_based_voc(tmp_path, "<size><width>30</width><height>40</height></size>")
    dataset = VOCDetection(root, ann_file="ImageSets/Main/test.txt", pipeline=PIPELINE)
    with pytest.raises(
        AnnotationError,
        match=in_file(root / "Annotations" / "a.xml", r"says image '.*a.jpg' is 30x40 \(width "
                      r"x height\), but the file decodes to 40x30"),
    ):  # fmt: skip
        dataset[0]


def test_box_outside_an_image_without_size_is_named(tmp_path):
    root = write_voc(tmp_path / "VOC", {"a": voc_xml([("cat", (60, 1, 80, 9), 0)])}, size=(40, 30))
    xml = root / "Annotations" / "a.xml"
    xml.write_text(re.sub(r"<size>.*</size>", "", xml.read_text()))
    with pytest.raises(AnnotationError, match=in_file(xml, r"object 0 \(cat\) has an empty box "
                       r"xmin=60 .*\(image size \(40, 30\)\)")):  # fmt: skip
        VOCDetection(root)


def test_classes_select_and_leave_other_objects_out(tmp_path, logged_messages):
    root = write_voc(
        tmp_path / "VOC2007",
        {
            "a": voc_xml([("cat", (1, 1, 10, 10), 0), ("dog", (20, 5, 40, 30), 0)]),
            "b": voc_xml([("dog", (1, 1, 9, 9), 1), ("cat", (5, 5, 30, 30), 1)]),
        },
    )
    dataset = VOCDetection(root, classes=("cat",))
    assert dataset.metainfo["classes"] == ("cat",)
    first, second = dataset.get_data_info(0), dataset.get_data_info(1)
    np.testing.assert_array_equal(first["boxes"], [[0, 0, 10, 10]])
    np.testing.assert_array_equal(first["meta"]["ann"]["boxes"], [[0, 0, 10, 10]])
    assert first["meta"]["ann"]["labels"].tolist() == [0]
    assert second["meta"]["ann"]["difficult"].tolist() == [True]  # the difficult cat stays
    assert dataset.num_unselected_objects == 2
    assert any("left out 2 objects" in m and "dog 2" in m for m in logged_messages)


def test_list_with_an_id_twice_or_nothing_and_crlf_lines(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"a": voc_xml([("cat", (1, 1, 5, 5), 0)])})
    listed = root / "ImageSets" / "Main" / "trainval.txt"
    listed.write_text("a\r\n")  # written on Windows
    assert len(VOCDetection(root)) == 1
    listed.write_text("a\na 1\n")
    with pytest.raises(AnnotationError, match=in_file(listed, r"image id 'a' is listed twice")):
        VOCDetection(root)
    listed.write_text("")
    with pytest.raises(AnnotationError, match=in_file(listed, "the image list is empty")):
        VOCDetection(root)


def test_empty_xml_and_other_image_suffix(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"a": voc_xml([("cat", (1, 1, 5, 5), 0)])})
    (root / "JPEGImages" / "a.jpg").rename(root / "JPEGImages" / "a.JPG")
    with pytest.raises(ImageLoadError, match=r"a.jpg'.*the folder has 'a.JPG'"):
        VOCDetection(root, pipeline=PIPELINE)[0]
    assert VOCDetection(root, img_suffix=".JPG", pipeline=PIPELINE)[0]["inputs"].shape[0] == 3
    (root / "Annotations" / "a.xml").write_text("")
    with pytest.raises(AnnotationError, match=r"a.xml: malformed XML \(the file is empty\)"):
        VOCDetection(root)


def test_an_object_listed_twice_in_one_xml_is_kept_once(tmp_path, logged_warnings):
    root = write_voc(
        tmp_path / "VOC2007",
        {
            "000001": voc_xml(
                [("dog", (1, 1, 10, 20), 0), ("dog", (1, 1, 10, 20), 0), ("dog", (1, 1, 10, 21), 0)]
            )
        },
    )
    info = VOCDetection(root).get_data_info(0)
    np.testing.assert_array_equal(info["boxes"], [[0, 0, 10, 20], [0, 0, 10, 21]])
    assert len(info["meta"]["ann"]["labels"]) == 2  # the metric's ground truth too
    assert logged_warnings == [
        f"VOCDetection: dropped 1 duplicate object of {root} (an exact copy of an earlier "
        "object of its XML: same class, box and difficult flag): "
        f"{root / 'Annotations' / '000001.xml'}: object 1 (copy of 0)"
    ]


def test_model_classes_label_objects_by_name(voc2007, logged_warnings):
    model_classes = ("person", "car", "yak", "dog")
    dataset = VOCDetection(voc2007, classes=("car", "dog", "person"), model_classes=model_classes)
    assert dataset.metainfo["classes"] == model_classes
    info = dataset.get_data_info(0)
    assert info["meta"]["ann"]["labels"].tolist() == [3, 0, 1]  # dog, person, car
    assert logged_warnings[0].startswith("VOCDetection: the model's classes ['yak'] are not")
    with pytest.raises(AnnotationError, match=re.escape("classes ['car'] are not classes of")):
        VOCDetection(voc2007, classes=("car", "dog"), model_classes=("dog",))
