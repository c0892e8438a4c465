"""Reading .tflite files: the tflite schema package's view equals Google's runtime's."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from mtvision.convert.tflite_graph import TfliteGraph, TfliteTensor
from mtvision.errors import ConversionError

MODELS = (
    "mobilenet_v2_1.0_224_quant",
    "tf2_mobilenet_v2_1.0_224_ptq",
    "deeplabv3_mnv2_pascal_quant",
    "deeplabv3_mnv2_dm05_pascal_quant",
)


@pytest.mark.parametrize("name", MODELS)
def test_constants_and_quantisation_equal_the_runtime(realdata, name):
    path = realdata / "coral_mobilenetv2_tflite" / "models" / f"{name}.tflite"
    graph = TfliteGraph(path)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}

    constants = [t for t in graph.tensors if t.is_constant]
    assert len(constants) > 100
    for tensor in graph.tensors:
        runtime = details[tensor.index]
        assert tuple(runtime["shape"]) == tensor.shape
        assert runtime["dtype"] == tensor.dtype
        quantization = runtime["quantization_parameters"]
        np.testing.assert_array_equal(quantization["scales"], tensor.scale)
        np.testing.assert_array_equal(quantization["zero_points"], tensor.zero_point)
        if tensor.scale.size > 1:
            assert quantization["quantized_dimension"] == tensor.quantized_dimension
    for tensor in constants:
        np.testing.assert_array_equal(interpreter.get_tensor(tensor.index), tensor.data)
    assert graph.inputs == tuple(d["index"] for d in interpreter.get_input_details())
    assert graph.outputs == tuple(d["index"] for d in interpreter.get_output_details())


def test_dequantize_per_tensor_and_per_channel():
    per_tensor = TfliteTensor(
        0,
        "w",
        np.dtype(np.uint8),
        (2, 2),
        np.array([0.5], np.float32),
        np.array([128]),
        0,
        np.array([[128, 130], [126, 255]], np.uint8),
    )
    np.testing.assert_array_equal(per_tensor.dequantize(), [[0.0, 1.0], [-1.0, 63.5]])
    # Depthwise layout [1, H, W, C]: one scale per channel on the last axis.
    per_channel = TfliteTensor(
        1,
        "dw",
        np.dtype(np.int8),
        (1, 1, 2, 3),
        np.array([1.0, 0.5, 0.25], np.float32),
        np.zeros(3, np.int64),
        3,
        np.array([[[[4, 4, 4], [-8, 2, 1]]]], np.int8),
    )
    np.testing.assert_array_equal(
        per_channel.dequantize(), [[[[4.0, 2.0, 1.0], [-8.0, 1.0, 0.25]]]]
    )
    bad_axis = TfliteTensor(
        2,
        "bad",
        np.dtype(np.int8),
        (3, 2),
        np.array([1.0, 2.0, 3.0], np.float32),
        np.zeros(3, np.int64),
        1,
        np.zeros((3, 2), np.int8),
    )
    with pytest.raises(ConversionError, match="3 per-channel scales along axis 1"):
        bad_axis.dequantize()


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        TfliteGraph(tmp_path / "missing.tflite")
    not_tflite = tmp_path / "labels.tflite"
    not_tflite.write_text("background\ncat\n")
    with pytest.raises(ConversionError, match=r"labels\.tflite: not a TFLite flatbuffer"):
        TfliteGraph(not_tflite)
