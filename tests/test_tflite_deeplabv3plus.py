"""Google's MLPerf DeepLabv3+ MobileNetV2 (ADE20K-Top31, int8 TFLite) converted, against a
float64 run of its op list (exactness) and Google's runtime (ai-edge-litert) on real photos.

The file and the photos come from ../shared/realdata (mlperf_deeplabv3plus_ade20k/, the
Coral photos and the VOC crops); the tests skip when it is absent.
"""

import functools

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter
from engine_toy import load_tool
from PIL import Image
from tflite_float_reference import run_float_reference

import mtvision
from mtvision.convert.int8_emulation import META_KEY, apply_int8_emulation
from mtvision.convert.tflite_conversion import convert_tflite
from mtvision.convert.tflite_graph import TfliteGraph
from mtvision.convert.tflite_mobilenet_graph import read_mobilenet_v2_graph
from mtvision.errors import ConversionError
from mtvision.heads import DeepLabV3PlusHead

FILE = "mlperf_deeplabv3plus_ade20k/deeplabv3_mnv2_ade20k_int8.tflite"
CONFIG = "configs/pretrained/deeplabv3plus_tflite_ade20k.py"
VOC = "voc2012_seg_samples_vainf/VOCdevkit/VOC2012"
SIZE = 512


@pytest.fixture
def ade_file(realdata) -> str:
    path = realdata / FILE
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared/realdata/mlperf_deeplabv3plus_ade20k)")
    return str(path)


@functools.cache
def _converted(path: str):
    model, meta = convert_tflite(path)
    return model.eval(), meta


def _photos(realdata) -> list:
    """The 14 Coral photos (masks left out) and the 14 VOC crops."""
    coral = sorted(
        p for p in (realdata / "coral_mobilenetv2_tflite/images").iterdir() if "_mask" not in p.name
    )
    voc = realdata / VOC
    ids = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    photos = coral + [voc / "JPEGImages" / f"{i}.jpg" for i in ids]
    assert len(photos) == 28
    return photos


def _resized(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))


def _logits(model, image: np.ndarray) -> torch.Tensor:
    """(K, 512, 512) logits for a uint8 HWC image through the model's own preprocessor."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    with torch.no_grad():
        inputs = model.data_preprocessor({"inputs": [pixels]})["inputs"]
        outputs = model(inputs, mode="tensor")["segmentation"]
        return model.heads["segmentation"].postprocess(outputs, (SIZE, SIZE))["seg_logits"][0]


class Runtime:
    def __init__(self, path: str, keep_tensors: bool = False) -> None:
        self.interpreter = Interpreter(
            model_path=path, experimental_preserve_all_tensors=keep_tensors
        )
        self.interpreter.allocate_tensors()
        self.details = {d["index"]: d for d in self.interpreter.get_tensor_details()}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.interpreter.get_input_details()[0]["index"], image[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"])[0]


def test_the_graph_walk_finds_the_decoder(ade_file):
    parsed = read_mobilenet_v2_graph(TfliteGraph(ade_file))
    decoder = parsed.tail.decoder
    assert parsed.output_stride == 16 and parsed.width_mult == 1.0
    assert parsed.input_size == (SIZE, SIZE)
    # Block 2 (stage2's second block): its depthwise output, TF-DeepLab's layer_4.
    assert decoder.low_level_block == 2 and decoder.low_level.weight.shape == (48, 144, 1, 1)
    assert decoder.concat_order == ("encoder", "low_level")
    assert [(d.weight.shape, p.weight.shape) for d, p in decoder.separable] == [
        ((304, 1, 3, 3), (256, 304, 1, 1)),
        ((256, 1, 3, 3), (256, 256, 1, 1)),
    ]
    assert decoder.resize == parsed.tail.resize == "asymmetric"
    assert parsed.tail.logits.out_channels == 32


def test_float_model_equals_the_float_graph(ade_file):
    """mtvision's logits at 512x512 equal a float64 run of the file's op list to 1e-4."""
    model, meta = _converted(ade_file)
    assert meta["model"]["name"] == "deeplabv3plus_mobilenet_v2" and meta["not_converted"] == []
    assert meta["dataset_meta"]["classes"][:3] == ["background", "wall", "building"]
    assert type(model.heads["segmentation"]) is DeepLabV3PlusHead
    graph = TfliteGraph(ade_file)
    parsed = read_mobilenet_v2_graph(graph)
    image = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), np.uint8)
    reference = run_float_reference(graph, image)
    inputs = torch.from_numpy(image).permute(0, 3, 1, 2).double() - parsed.input_zero_point
    inputs = (inputs * parsed.input_scale).float()
    with torch.no_grad():
        outputs = model(inputs, mode="tensor")["segmentation"]
        ours = model.heads["segmentation"].postprocess(outputs, (SIZE, SIZE))["seg_logits"][0]
    expected = reference[graph.ops[-1].inputs[0]][0].permute(2, 0, 1)  # what ARG_MAX reads
    assert float(expected.abs().max()) > 5.0
    assert float((ours.double() - expected).abs().max()) < 1e-4
    assert torch.equal(ours.argmax(0), reference[graph.outputs[0]][0])


def _agreement_table(ade_file, photos, int8_emulation: bool = False) -> dict[str, float]:
    model, meta = _converted(ade_file)
    runtime = Runtime(ade_file)
    emulation = apply_int8_emulation(model, meta[META_KEY]) if int8_emulation else None
    table = {}
    try:
        for photo in photos:
            image = _resized(photo)
            ours = _logits(model, image).argmax(0).numpy()
            table[photo.name] = float((ours == runtime(image)).mean())
            print(f"{photo.name}: class-map agreement with the runtime {table[photo.name]:.4f}")
    finally:
        if emulation is not None:
            emulation.remove()
    return table


def test_the_int8_emulation_gives_the_runtimes_class_maps_on_three_photos(realdata, ade_file):
    """Measured: 1.0 on each (the emulation is bit-exact to the runtime's int8 tensors)."""
    photos = [p for p in _photos(realdata) if p.stem in ("pets", "sunflower", "vainf_val_0001")]
    table = _agreement_table(ade_file, photos, int8_emulation=True)
    assert min(table.values()) >= 0.999, table
    float_table = _agreement_table(ade_file, photos[:1])  # the hooks came off
    assert float_table[photos[0].name] < 0.999


@pytest.mark.slow
def test_the_int8_emulation_reaches_the_issues_agreement_on_every_photo(realdata, ade_file):
    """The issue's numbers: >= 0.97 on every photo and >= 0.99 on average (measured:
    1.0 on all 28 photos)."""
    table = _agreement_table(ade_file, _photos(realdata), int8_emulation=True)
    assert min(table.values()) >= 0.97 and np.mean(list(table.values())) >= 0.99, table


def test_class_maps_agree_with_the_runtime_on_three_photos(realdata, ade_file):
    photos = [p for p in _photos(realdata) if p.stem in ("pets", "sunflower", "vainf_val_0001")]
    table = _agreement_table(ade_file, photos)
    assert min(table.values()) >= 0.98, table


@pytest.mark.slow
def test_class_maps_agree_with_the_runtime_on_every_photo_up_to_its_int8_resolution(
    realdata, ade_file
):
    """All 28 photos at 512x512. Measured: 0.874 (vainf_val_0114) to 0.998, mean 0.956;
    below the issue's 0.97 / 0.99 because the runtime computes in int8: its logits differ
    from the float network's (= this model, to 3e-5) by ~1 quantisation step on average,
    and where the maps differ our float top-2 margin is mostly below 2 such steps."""
    photos = _photos(realdata)
    table = _agreement_table(ade_file, photos)
    assert min(table.values()) >= 0.85 and np.mean(list(table.values())) >= 0.95, table

    model, _ = _converted(ade_file)
    parsed = read_mobilenet_v2_graph(TfliteGraph(ade_file))
    runtime = Runtime(ade_file, keep_tensors=True)
    scale, zero_point = runtime.details[parsed.tail.logits_tensor]["quantization"]
    for photo in sorted(photos, key=lambda p: table[p.name])[:3]:  # the three lowest
        image = _resized(photo)
        theirs = runtime(image)
        logits = _logits(model, image)
        top2 = logits.topk(2, dim=0).values
        differ = logits.argmax(0).numpy() != theirs
        margin = float(np.median((top2[0] - top2[1]).numpy()[differ]))
        int8_logits = runtime.interpreter.get_tensor(parsed.tail.logits_tensor)[0]
        int8_logits = (int8_logits.astype(np.float64) - zero_point) * scale
        with torch.no_grad():
            pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
            inputs = model.data_preprocessor({"inputs": [pixels]})["inputs"]
            ours = model(inputs, mode="tensor")["segmentation"]["seg_logits"][0]
        drift = float(np.abs(int8_logits - ours.permute(1, 2, 0).double().numpy()).mean())
        print(
            f"{photo.name}: agreement {table[photo.name]:.4f}, median float margin where the "
            f"maps differ {margin:.3f}, runtime logit step {scale:.3f}, mean |int8 - float| "
            f"logit {drift:.3f}"
        )
        assert margin < 2 * scale and drift < 2 * scale


def test_convert_weights_with_and_without_config_and_predict_give_the_same_map(
    realdata, ade_file, tmp_path
):
    convert = load_tool("convert_weights")
    described = tmp_path / "described.pth"
    meta = convert.main([ade_file, "--out", str(described)])
    assert meta["model"]["kwargs"]["tf_legacy_resize"] is True
    configured = tmp_path / "configured.pth"
    convert.main([ade_file, "--out", str(configured), "--config", CONFIG])
    rebuilt = mtvision.create_model("deeplabv3plus_mobilenet_v2", checkpoint=str(described))
    converted, _ = _converted(ade_file)
    photo = realdata / "coral_mobilenetv2_tflite/images/pets.jpg"
    image = _resized(photo)
    expected = _logits(converted, image).argmax(0).numpy()
    assert np.array_equal(_logits(rebuilt, image).argmax(0).numpy(), expected)

    Image.fromarray(image).save(tmp_path / "pets512.png")
    load_tool("predict").main(
        [CONFIG, str(configured), str(tmp_path / "pets512.png"), "--out-dir", str(tmp_path / "out"),
         "--no-progress"]
    )  # fmt: skip
    # The config asks for the int8 emulation: the runtime's map, not the float model's.
    mask = np.asarray(Image.open(tmp_path / "out" / "pets512_mask.png"))
    theirs = Runtime(ade_file)(image)
    assert float((mask == theirs).mean()) >= 0.999
    assert float((expected == theirs).mean()) < 0.999


def test_a_model_of_the_other_head_is_refused_in_one_line(realdata, ade_file, tmp_path):
    convert = load_tool("convert_weights")
    with pytest.raises(
        ConversionError,
        match=r"op 77 CONV_2D .*: the model must have one DeepLabV3PlusHead \(segmentation\), "
        r"it has \{'segmentation': 'DeepLabV3Head'\}",
    ):
        convert.main(
            [ade_file, "--out", str(tmp_path / "a.pth"), "--config",
             "configs/pretrained/deeplabv3_tflite_voc.py"]
        )  # fmt: skip
    voc_file = realdata / "coral_mobilenetv2_tflite/models/deeplabv3_mnv2_pascal_quant.tflite"
    with pytest.raises(ConversionError, match=r"must have one DeepLabV3Head \(segmentation\)"):
        convert.main([str(voc_file), "--out", str(tmp_path / "b.pth"), "--config", CONFIG])
    symmetric = mtvision.create_model(
        "deeplabv3plus_mobilenet_v2",
        num_classes=32,
        padding="same",
        data_preprocessor=dict(type="DataPreprocessor", mean=(127.5,) * 3, std=(127.5,) * 3),
    )
    with pytest.raises(ConversionError, match=r"tf_legacy_resize=False; the graph upsamples"):
        convert_tflite(ade_file, model=symmetric)
    assert not any(tmp_path.iterdir())
