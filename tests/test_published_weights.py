"""Published weights by name: ``create_model(name, weights=NAME)`` and
``init_cfg=dict(type="Pretrained", checkpoint="mtvision://NAME")``
(mtvision/convert/published_weights.py).

Nothing downloads here: the real fetch code reads a local ``file://`` mirror
(``MTVISION_WEIGHTS_MIRROR``) holding a copy of the real file, or finds a
pre-filled torch hub cache (``TORCH_HOME`` in tmp_path)."""

import hashlib
import shutil
import sys

import pytest
import torch

import mtvision
import mtvision.engine  # noqa: F401  (installs the mtvision:// checkpoint scheme)
from mtvision.convert.published_weights import (
    MIRROR_ENV,
    PUBLISHED_WEIGHTS,
    SOURCE_URL,
    cache_dir,
    list_published_weights,
    published_checkpoint,
)
from mtvision.errors import CheckpointError

# The smallest published file (760 kB): DeepLabv3 on MobileNetV2 0.5.
NAME = "deeplabv3_mnv2_dm05_pascal_quant"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache in tmp_path, and no mirror from the environment."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return tmp_path / "torch_home"


@pytest.fixture
def mirror(realdata, tmp_path, monkeypatch, torch_home):
    """A file:// mirror of the source folder holding the real dm05 file."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    models = realdata / "coral_mobilenetv2_tflite" / "models"
    shutil.copy(models / f"{NAME}.tflite", folder)
    monkeypatch.setenv(MIRROR_ENV, folder.as_uri())
    return folder


def test_every_entry_is_a_file_of_the_pinned_source_commit():
    assert SOURCE_URL == (
        "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
    )
    assert list_published_weights("mobilenet_v2") == [
        "mobilenet_v2_1.0_224_quant",
        "tf2_mobilenet_v2_1.0_224_ptq",
    ]
    assert list_published_weights("deeplabv3_mobilenet_v2") == [
        "deeplabv3_mnv2_dm05_pascal_quant",
        "deeplabv3_mnv2_pascal_quant",
    ]
    for entry in PUBLISHED_WEIGHTS.values():
        assert entry.url == f"{SOURCE_URL}{entry.name}.tflite"
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0


def test_the_sha256_table_matches_the_real_files(realdata):
    models = realdata / "coral_mobilenetv2_tflite" / "models"
    for entry in PUBLISHED_WEIGHTS.values():
        data = (models / entry.file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256, entry.name


def test_cache_follows_torch_home(torch_home):
    assert cache_dir() == torch_home / "hub" / "checkpoints" / "mtvision"


def test_fetched_from_a_mirror_checked_converted_and_cached(mirror, torch_home, logged_messages):
    model = mtvision.create_model("deeplabv3_mobilenet_v2", weights=NAME)
    cache = torch_home / "hub" / "checkpoints" / "mtvision"
    url = f"{mirror.as_uri()}/{NAME}.tflite"
    assert logged_messages == [
        f"mtvision://{NAME}: downloading {url} to {cache / f'{NAME}.tflite'}",
        f"mtvision://{NAME}: fetched {url} (760904 bytes, sha256 0470d2a782aa... checked) "
        f"into {cache / f'{NAME}.tflite'}",
        f"mtvision://{NAME}: converted {cache / f'{NAME}.tflite'} into "
        f"{cache / f'{NAME}-0470d2a7.pth'}",
    ]
    assert sorted(p.name for p in cache.iterdir()) == [f"{NAME}-0470d2a7.pth", f"{NAME}.tflite"]
    # The checkpoint's meta rebuilt the width-0.5, TF-padded model; eval mode as with checkpoint=.
    assert model.backbone.width_mult == 0.5 and model.backbone.padding == "same"
    assert not model.training
    checkpoint = torch.load(cache / f"{NAME}-0470d2a7.pth", weights_only=True)
    assert checkpoint["meta"]["published"] == {
        "name": NAME,
        "url": url,
        "sha256": PUBLISHED_WEIGHTS[NAME].sha256,
    }
    assert checkpoint["meta"]["dataset_meta"]["classes"][15] == "person"
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())

    # Second use: from the cache, nothing fetched or converted (the mirror is gone).
    shutil.rmtree(mirror)
    logged_messages.clear()
    again = mtvision.create_model("deeplabv3_mobilenet_v2", weights=f"mtvision://{NAME}")
    assert logged_messages == []
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())


def test_init_cfg_pretrained_by_name_starts_a_backbone(mirror, logged_messages):
    model = mtvision.create_model(
        "deeplabv3_mobilenet_v2",
        num_classes=3,
        width_mult=0.5,
        round_nearest=1,
        padding="same",
        norm_eval=True,
        init_cfg=dict(type="Pretrained", checkpoint=f"mtvision://{NAME}"),
    )
    model.init_weights()
    converted = torch.load(published_checkpoint(NAME), weights_only=True)["state_dict"]
    backbone = model.backbone.state_dict()
    assert all(
        torch.allclose(value, converted[f"backbone.{key}"])
        for key, value in backbone.items()
        if not key.endswith("running_var")
    )
    (line,) = [m for m in logged_messages if m.startswith("load MobileNetV2 from ")]
    assert line.startswith(
        f"load MobileNetV2 from mtvision://{NAME} (mtvision checkpoint, its 'backbone.*' keys): "
        f"{len(backbone)} of {len(backbone)} tensors loaded; left as initialised: none"
    )


def test_a_pre_filled_cache_needs_no_download(realdata, torch_home, monkeypatch):
    cache = torch_home / "hub" / "checkpoints" / "mtvision"
    cache.mkdir(parents=True)
    models = realdata / "coral_mobilenetv2_tflite" / "models"
    shutil.copy(models / f"{NAME}.tflite", cache)
    monkeypatch.setenv(MIRROR_ENV, (torch_home / "no-such-mirror").as_uri())
    path = published_checkpoint(NAME)
    assert path == str(cache / f"{NAME}-0470d2a7.pth")
    assert torch.load(path, weights_only=True)["meta"]["converted_from"]["sha256"] == (
        PUBLISHED_WEIGHTS[NAME].sha256
    )


def test_a_cached_converted_checkpoint_is_used_as_it_is(torch_home, monkeypatch):
    """A converted checkpoint already in the cache is read without the .tflite file (no
    download, no conversion, no tflite package needed)."""
    monkeypatch.setenv(MIRROR_ENV, (torch_home / "no-such-mirror").as_uri())
    torch.manual_seed(0)
    made = mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=4, width_mult=0.35)
    cache = torch_home / "hub" / "checkpoints" / "mtvision"
    cache.mkdir(parents=True)
    meta = {"model": {"name": "deeplabv3_mobilenet_v2", "kwargs": {"num_classes": 4, "width_mult": 0.35}}}  # fmt: skip
    torch.save({"meta": meta, "state_dict": made.state_dict()}, cache / f"{NAME}-0470d2a7.pth")
    loaded = mtvision.create_model("deeplabv3_mobilenet_v2", weights=NAME)
    assert loaded.heads["segmentation"].num_classes == 4
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in made.state_dict().items())


def test_offline_a_missing_file_names_the_url_and_where_to_place_it(torch_home, monkeypatch):
    mirror = torch_home.parent / "empty-mirror"
    mirror.mkdir()
    monkeypatch.setenv(MIRROR_ENV, mirror.as_uri())
    target = torch_home / "hub" / "checkpoints" / "mtvision" / f"{NAME}.tflite"
    with pytest.raises(CheckpointError) as error:
        mtvision.create_model("deeplabv3_mobilenet_v2", weights=NAME)
    message = str(error.value)
    assert message.startswith(
        f"mtvision://{NAME}: cannot download {mirror.as_uri()}/{NAME}.tflite (URLError: "
    )
    assert message.endswith(
        f"; offline, place that file (sha256 {PUBLISHED_WEIGHTS[NAME].sha256}) at {target}"
    )
    assert "\n" not in message
    assert list(target.parent.iterdir()) == []  # no partial download left behind


def test_a_wrong_sha256_is_refused_and_not_kept(torch_home, monkeypatch):
    mirror = torch_home.parent / "bad-mirror"
    mirror.mkdir()
    (mirror / f"{NAME}.tflite").write_bytes(b"TFL3 not the published file")
    monkeypatch.setenv(MIRROR_ENV, mirror.as_uri())
    bad = hashlib.sha256(b"TFL3 not the published file").hexdigest()
    with pytest.raises(CheckpointError) as error:
        published_checkpoint(NAME)
    assert str(error.value) == (
        f"mtvision://{NAME}: {mirror.as_uri()}/{NAME}.tflite gave a file with sha256 {bad}, "
        f"expected {PUBLISHED_WEIGHTS[NAME].sha256}; not kept (a changed source or a broken "
        "mirror)"
    )
    assert list(cache_dir().iterdir()) == []

    # A file placed by hand with the wrong content is named, not deleted.
    placed = cache_dir() / f"{NAME}.tflite"
    placed.write_bytes(b"something else")
    with pytest.raises(CheckpointError, match=rf"{placed} has sha256 [0-9a-f]{{64}}, expected"):
        published_checkpoint(NAME)
    assert placed.read_bytes() == b"something else"


def test_unknown_names_and_weights_of_another_model_are_one_line_errors(torch_home):
    with pytest.raises(CheckpointError) as error:
        mtvision.create_model("mobilenet_v2", weights="mobilenet_v2_imagenet")
    assert str(error.value) == (
        "mtvision://mobilenet_v2_imagenet: no published weights of that name; available: "
        "['deeplabv3_mnv2_dm05_pascal_quant', 'deeplabv3_mnv2_pascal_quant', "
        "'mobilenet_v2_1.0_224_quant', 'tf2_mobilenet_v2_1.0_224_ptq']"
    )
    with pytest.raises(CheckpointError) as error:
        mtvision.create_model("mobilenet_v2", weights=NAME)
    assert str(error.value) == (
        f"weights '{NAME}' are for create_model('deeplabv3_mobilenet_v2'), not 'mobilenet_v2'; "
        "weights for 'mobilenet_v2': ['mobilenet_v2_1.0_224_quant', "
        "'tf2_mobilenet_v2_1.0_224_ptq']"
    )
    with pytest.raises(ValueError, match="checkpoint= or weights=, not both"):
        mtvision.create_model("mobilenet_v2", checkpoint="x.pth", weights="y")
    with pytest.raises(CheckpointError, match="no published weights of that name"):
        model = mtvision.create_model(
            "mobilenet_v2_035", init_cfg=dict(type="Pretrained", checkpoint="mtvision://nope")
        )
        model.init_weights()
    assert not cache_dir().exists()  # nothing fetched for a wrong name


def test_without_the_tflite_package_the_first_conversion_says_what_to_install(
    realdata, torch_home, monkeypatch
):
    cache = torch_home / "hub" / "checkpoints" / "mtvision"
    cache.mkdir(parents=True)
    shutil.copy(realdata / "coral_mobilenetv2_tflite" / "models" / f"{NAME}.tflite", cache)
    monkeypatch.setitem(sys.modules, "tflite", None)  # as if not installed: import fails
    with pytest.raises(CheckpointError) as error:
        published_checkpoint(NAME)
    assert str(error.value) == (
        f"mtvision://{NAME}: converting {cache / f'{NAME}.tflite'} (fetched, sha256 checked) "
        "needs the 'tflite' package: pip install 'mtvision[tflite]'"
    )
