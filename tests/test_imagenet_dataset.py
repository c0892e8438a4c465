"""ImageNetFolder on tiny class-folder trees written to tmp_path."""

import os

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtvision.data import ImageLoadError, ImageNetFolder, collate_samples
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS

PIPELINE = [
    dict(type="LoadImage"),
    dict(type="Albumentations", transforms=[dict(type="Resize", height=24, width=24)]),
    dict(type="PackInputs"),
]


def write_jpeg(path, seed=0, size=(20, 28)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def tree(tmp_path):
    """train: cat (2 jpg + 1 gray png in a sub-folder), dog (1 JPEG); val: cat 1, dog 1."""
    root = tmp_path / "imagenet"
    write_jpeg(root / "train" / "dog" / "d0.JPEG", seed=1)
    write_jpeg(root / "train" / "cat" / "c1.jpg", seed=2)
    write_jpeg(root / "train" / "cat" / "c0.jpg", seed=3)
    (root / "train" / "cat" / "more").mkdir()
    assert cv2.imwrite(
        str(root / "train" / "cat" / "more" / "gray.png"), np.full((9, 11), 77, np.uint8)
    )
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    write_jpeg(root / "train" / ".ipynb_checkpoints" / "x.jpg")  # hidden: not a class
    write_jpeg(root / "val" / "cat" / "v0.jpg", seed=4)
    write_jpeg(root / "val" / "dog" / "v1.jpg", seed=5)
    return root


def test_classes_labels_and_paths(tree):
    train = ImageNetFolder(tree, split="train")
    assert train.metainfo["classes"] == ("cat", "dog")
    assert len(train) == 4
    infos = [train.get_data_info(i) for i in range(len(train))]
    rel = [os.path.relpath(info["img_path"], tree / "train") for info in infos]
    assert rel == ["cat/c0.jpg", "cat/c1.jpg", "cat/more/gray.png", "dog/d0.JPEG"]
    assert [info["label"] for info in infos] == [0, 0, 0, 1]
    assert [info["sample_idx"] for info in infos] == [0, 1, 2, 3]

    val = ImageNetFolder(tree, split="val")
    assert val.metainfo["classes"] == ("cat", "dog") and len(val) == 2


def test_fixed_classes_set_order_and_subset(tree):
    dataset = ImageNetFolder(tree, split="train", classes=["dog", "cat"])
    assert dataset.metainfo["classes"] == ("dog", "cat")
    labels = {
        os.path.basename(dataset.get_data_info(i)["img_path"]): dataset.get_data_info(i)["label"]
        for i in range(len(dataset))
    }
    assert labels == {"d0.JPEG": 0, "c0.jpg": 1, "c1.jpg": 1, "gray.png": 1}
    assert len(ImageNetFolder(tree, split="train", classes=["dog"])) == 1


def test_built_from_config_with_full_pipeline(tree):
    dataset = DATASETS.build(
        dict(type="ImageNetFolder", data_root=str(tree), split="train", pipeline=PIPELINE)
    )
    sample = dataset[3]
    assert sample["inputs"].shape == (3, 24, 24) and sample["inputs"].dtype == torch.uint8
    assert sample["data_samples"]["label"] == 1
    meta = sample["data_samples"]["meta"]
    assert meta["img_path"].endswith("d0.JPEG")
    assert meta["ori_shape"] == (20, 28) and meta["img_shape"] == (24, 24)
    assert meta["sample_idx"] == 3

    gray = dataset[2]["inputs"]  # 1-channel PNG, 9x11, value 77 everywhere
    assert gray.shape == (3, 24, 24) and torch.all(gray == 77)

    loader = DataLoader(dataset, batch_size=3, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert len(batch["inputs"]) == 3 and [d["label"] for d in batch["data_samples"]] == [0, 0, 0]


def test_missing_root_names_path_and_layout(tmp_path):
    root = tmp_path / "no_such_root"
    with pytest.raises(FileNotFoundError, match="expected layout") as info:
        ImageNetFolder(root, split="train")
    assert str(root) in str(info.value)


def test_missing_split_names_the_split_folder(tree):
    with pytest.raises(FileNotFoundError, match="expected layout") as info:
        ImageNetFolder(tree, split="validation")
    message = str(info.value)
    assert str(tree / "validation") in message and "'train'" in message


def test_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "loose.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no class folders") as info:
        ImageNetFolder(tmp_path, split="train")
    assert str(tmp_path / "train") in str(info.value)


def test_empty_class_folder_raises_by_default(tree):
    (tree / "train" / "emu").mkdir()
    (tree / "train" / "emu" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="hold no image.*: emu"):
        ImageNetFolder(tree, split="train")


def test_empty_and_missing_classes_are_skipped_with_a_counted_warning(tree, logged_warnings):
    (tree / "train" / "emu").mkdir()
    dataset = ImageNetFolder(
        tree, split="train", classes=["cat", "dog", "emu", "yak"], on_empty_class="skip"
    )
    assert dataset.metainfo["classes"] == ("cat", "dog", "emu", "yak")
    assert len(dataset) == 4
    assert len(logged_warnings) == 1
    assert "skipped 2 of 4 class folders" in logged_warnings[0]
    assert logged_warnings[0].endswith("emu, yak")


def test_corrupt_image_raises_naming_the_file(tree):
    bad = tree / "train" / "dog" / "d1.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not jpeg data")
    dataset = ImageNetFolder(tree, split="train", pipeline=PIPELINE)
    with pytest.raises(ImageLoadError) as info:
        dataset[4]
    assert str(bad) in str(info.value)


def test_truncated_jpeg_raises_naming_the_file(tree):
    full = write_jpeg(tree / "train" / "dog" / "full.jpg", size=(64, 64)).read_bytes()
    cut = tree / "train" / "dog" / "cut.jpg"
    cut.write_bytes(full[: len(full) // 2])
    dataset = ImageNetFolder(tree, split="train", pipeline=PIPELINE)
    assert dataset.get_data_info(3)["img_path"] == str(cut)
    with pytest.raises(ImageLoadError, match="truncated JPEG") as info:
        dataset[3]
    assert str(cut) in str(info.value)


def test_skip_mode_refetches_and_counts(tree, logged_warnings, monkeypatch):
    bad = tree / "train" / "dog" / "d1.jpg"
    bad.write_bytes(b"garbage")
    dataset = ImageNetFolder(tree, split="train", pipeline=PIPELINE, on_bad_image="skip")
    bad_idx = 4
    assert dataset.get_data_info(bad_idx)["img_path"] == str(bad)
    # mmengine refetches a random index; pin it to sample 0 to know what comes back
    monkeypatch.setattr(dataset, "_rand_another", lambda: 0)

    sample = dataset[bad_idx]
    assert sample["data_samples"]["meta"]["sample_idx"] == 0
    assert sample["inputs"].shape == (3, 24, 24)
    assert dataset.num_skipped_images == 1
    assert len(logged_warnings) == 1
    assert "skipped bad image #1" in logged_warnings[0] and str(bad) in logged_warnings[0]

    samples = [dataset[i] for i in range(len(dataset))]
    assert all(s["inputs"].shape == (3, 24, 24) for s in samples)
    assert dataset.num_skipped_images == 2


def test_skip_mode_is_refused_in_test_mode(tree):
    with pytest.raises(ValueError, match="test_mode"):
        ImageNetFolder(tree, split="val", on_bad_image="skip", test_mode=True)


def test_invalid_policy_is_rejected(tree):
    with pytest.raises(ValueError, match="on_bad_image must be 'raise' or 'skip'"):
        ImageNetFolder(tree, on_bad_image="ignore")


@pytest.mark.parametrize("collate", [collate_samples, "mtvision.collate_samples"])
def test_runner_builds_the_data_loader_from_config(tree, collate):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    cfg = dict(
        dataset=dict(type="ImageNetFolder", data_root=str(tree), split="val", pipeline=PIPELINE),
        sampler=dict(type="DefaultSampler", shuffle=False),
        batch_size=2,
        collate_fn=dict(type=collate),
    )
    with DefaultScope.overwrite_default_scope("mtvision"):
        loader = Runner.build_dataloader(cfg)
    batch = next(iter(loader))
    assert [tuple(t.shape) for t in batch["inputs"]] == [(3, 24, 24), (3, 24, 24)]
    assert [d["label"] for d in batch["data_samples"]] == [0, 1]


def test_classes_from_openmmlab_metainfo(tree):
    dataset = ImageNetFolder(tree, split="train", metainfo=dict(classes=["dog", "cat"]))
    assert dataset.metainfo["classes"] == ("dog", "cat")
    assert dataset.get_data_info(0)["label"] == 0
    assert dataset.get_data_info(0)["img_path"].endswith("d0.JPEG")


# ------------------------------------------------------------ what real folders hold


def test_link_back_up_the_tree_does_not_loop_or_repeat(tree, logged_warnings):
    (tree / "train" / "cat" / "more" / "up").symlink_to(tree / "train", target_is_directory=True)
    (tree / "train" / "dog" / "same").symlink_to(tree / "train" / "dog")  # itself again
    elsewhere = tree.parent / "elsewhere" / "fox.jpg"
    write_jpeg(elsewhere)
    (tree / "train" / "dog" / "linked").symlink_to(elsewhere.parent, target_is_directory=True)
    dataset = ImageNetFolder(tree, split="train")
    rel = [os.path.relpath(dataset.get_data_info(i)["img_path"], tree / "train")
           for i in range(len(dataset))]  # fmt: skip
    assert rel == ["cat/c0.jpg", "cat/c1.jpg", "cat/more/gray.png", "dog/d0.JPEG",
                   "dog/linked/fox.jpg"]  # fmt: skip
    split = tree / "train"
    assert logged_warnings == [
        f"ImageNetFolder: 2 folder links in {split} not followed: "
        f"{split / 'cat' / 'more' / 'up'} -> {split} (an ancestor of its class folder: its "
        f"images would repeat without end); {split / 'dog' / 'same'} -> {split / 'dog'} (its "
        "own class folder again: its images would repeat)"
    ]
    assert dataset.skipped_links == logged_warnings[0].split(": ", 2)[2].split("; ")


def test_link_into_another_class_is_named(tree, logged_warnings):
    (tree / "train" / "dog" / "cats").symlink_to(tree / "train" / "cat", target_is_directory=True)
    dataset = ImageNetFolder(tree, split="train")
    assert [dataset.get_data_info(i)["label"] for i in range(len(dataset))] == [0, 0, 0, 1]
    assert logged_warnings == [
        f"ImageNetFolder: 1 folder link in {tree / 'train'} not followed: "
        f"{tree / 'train' / 'dog' / 'cats'} -> {tree / 'train' / 'cat'} (inside class folder "
        "'cat': its images would get a second label)"
    ]


def test_model_classes_label_a_split_lacking_folders_by_name(tree, logged_warnings):
    """The val split has cat and dog; the model knows ant, cat, dog, emu."""
    dataset = ImageNetFolder(tree, split="val", model_classes=["ant", "cat", "dog", "emu"])
    assert dataset.metainfo["classes"] == ("ant", "cat", "dog", "emu")
    assert [dataset.get_data_info(i)["label"] for i in range(len(dataset))] == [1, 2]
    assert logged_warnings == [
        f"ImageNetFolder: 2 of the model's 4 classes have no folder in {tree / 'val'}: ant, "
        "emu; they are scored as classes without images (the other folders keep the model's "
        "labels)"
    ]
    # The model's order, not the sorted folders': dog is label 0 here.
    dataset = ImageNetFolder(tree, split="val", model_classes=["dog", "cat"])
    assert [dataset.get_data_info(i)["label"] for i in range(len(dataset))] == [0, 1]
    assert [os.path.basename(dataset.get_data_info(i)["img_path"]) for i in (0, 1)] == [
        "v1.jpg",
        "v0.jpg",
    ]


def test_model_classes_refuse_a_folder_the_model_lacks(tree):
    with pytest.raises(AnnotationError) as info:
        ImageNetFolder(tree, split="val", model_classes=["ant", "cat"])
    assert str(info.value) == (
        f"{tree / 'val'}: classes ['dog'] are not classes of the model; the data has "
        "['cat', 'dog'], the model ['ant', 'cat'] (select the model's classes with "
        "classes=[...], or evaluate a model trained on them)"
    )


def test_mixed_case_extensions_hidden_and_other_files(tmp_path):
    root = tmp_path / "imagenet"
    for name in ("a.JPG", "b.Jpeg", "c.PNG", "d.webp", "e.TIFF"):
        path = root / "train" / "cat" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(
            str(path.with_suffix(path.suffix.lower())), np.zeros((3, 4, 3), np.uint8)
        )
        path.with_suffix(path.suffix.lower()).rename(path)
    for name in (".DS_Store", "._a.JPG", "Thumbs.db", "labels.json", "readme"):
        (root / "train" / "cat" / name).write_bytes(b"x")
    dataset = ImageNetFolder(root, split="train", pipeline=PIPELINE)
    names = [os.path.basename(dataset.get_data_info(i)["img_path"]) for i in range(len(dataset))]
    assert names == ["a.JPG", "b.Jpeg", "c.PNG", "d.webp", "e.TIFF"]
    assert all(dataset[i]["inputs"].shape == (3, 24, 24) for i in range(len(dataset)))


def test_broken_link_and_empty_file_are_named_when_loaded(tree):
    (tree / "train" / "dog" / "gone.jpg").symlink_to(tree / "nowhere.jpg")
    (tree / "train" / "dog" / "empty.jpg").write_bytes(b"")
    dataset = ImageNetFolder(tree, split="train", pipeline=PIPELINE)
    paths = [dataset.get_data_info(i)["img_path"] for i in range(len(dataset))]
    broken, empty = (
        paths.index(str(tree / "train/dog/gone.jpg")),
        paths.index(str(tree / "train/dog/empty.jpg")),
    )
    with pytest.raises(ImageLoadError, match=r"gone.jpg'.*a symbolic link to .*nowhere.jpg"):
        dataset[broken]
    with pytest.raises(ImageLoadError, match=r"empty.jpg'.*the file is empty"):
        dataset[empty]


def test_one_pixel_and_very_wide_images(tmp_path):
    root = tmp_path / "imagenet"
    write_jpeg(root / "train" / "cat" / "dot.png", size=(1, 1))
    write_jpeg(root / "train" / "cat" / "strip.png", size=(2, 5000))
    dataset = ImageNetFolder(root, split="train", pipeline=PIPELINE)
    assert [dataset[i]["inputs"].shape for i in range(2)] == [(3, 24, 24)] * 2
