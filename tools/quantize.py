"""Quantise a deployed float ONNX graph to int8 with onnxruntime, calibrated on test images.

    python tools/quantize.py CONFIG FILE.onnx --out FILE.int8.onnx --calib N
        [--seed S] [--batch-size B] [--method minmax|percentile|entropy]
        [--activation-type uint8|int8] [--per-tensor] [--int8-last-layers]
        [--no-fold-pads] [--cfg-options KEY=VALUE ...]

``FILE.onnx`` takes uint8 RGB images (N, 3, H, W): the deployed graph of
``tools/export_onnx.py`` (normalisation inside). ``N`` calibration images are
drawn at random (``--seed``, without replacement) from the config's test
dataset - every entry's dataset of a multi-task config - and run through its
test pipeline (the resize); a progress bar counts them. The graph's input size
comes from its ``"mtvision"`` metadata (``input_size``), else from its input
shape; images the pipeline leaves at another size are resized to it (said in
one line). A graph of dynamic size (segmentation) is calibrated one image at a
time at each image's own size.

When the dataset has fewer than ``N`` images, one warning line names it and
both numbers, and all of them are used; none at all is an error. What is
quantised and the measured accuracy and speed: docs/quantization.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.config import test_dataset_entries
from mtvision.errors import ConfigError, ExportError
from mtvision.export.deploy import METADATA_KEY
from mtvision.export.quantize import QuantizationSettings, quantize_onnx


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Quantise a deployed ONNX graph to int8.")
    parser.add_argument("config", help="config file path (its test dataset calibrates)")
    parser.add_argument("onnx", help="float ONNX file with uint8 image input")
    parser.add_argument("--out", required=True, help="int8 ONNX file to write")
    parser.add_argument(
        "--calib", type=int, required=True, metavar="N", help="number of calibration images"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="calibration batch for fixed-size graphs (default 8; dynamic size: 1)",
    )
    parser.add_argument(
        "--method",
        choices=("minmax", "percentile", "entropy"),
        default=QuantizationSettings.method,
        help=f"activation-range calibration (default {QuantizationSettings.method})",
    )
    parser.add_argument(
        "--activation-type",
        choices=("uint8", "int8"),
        default=QuantizationSettings.activation_type,
        help=f"activation type (default {QuantizationSettings.activation_type})",
    )
    parser.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor instead of per output channel (far less accurate "
        "on MobileNetV2's folded BatchNorms; docs/quantization.md)",
    )
    parser.add_argument(
        "--int8-last-layers",
        action="store_true",
        help="quantise the heads' last layers too (logits, box codes; default: float)",
    )
    parser.add_argument(
        "--no-fold-pads",
        action="store_true",
        help="keep TF-SAME Pad nodes apart from their convolutions (slower)",
    )
    add_cfg_options_argument(parser, "test_dataloader.dataset.data_root=/data/val")
    args = parser.parse_args(argv)
    if args.calib < 1:
        parser.error(f"--calib must be at least 1, got {args.calib}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def graph_input(path: str) -> tuple[tuple[int, int] | None, int | None]:
    """``(input_size, batch)`` of the ONNX file: ``input_size`` (H, W) from the
    ``"mtvision"`` metadata, else the input's static shape, ``None`` when dynamic;
    ``batch`` the input's fixed batch size or ``None`` when dynamic.

    Raises ``ExportError`` naming the file when it is no ONNX model or its one
    image input is not uint8 (N, 3, H, W).
    """
    try:
        model = onnx.load(path, load_external_data=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX file
        raise ExportError(f"{path}: not a readable ONNX model ({error})") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    tensor = inputs[0].type.tensor_type if len(inputs) == 1 else None
    dims = (
        [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor
        else []
    )
    if (
        tensor is None
        or tensor.elem_type != onnx.TensorProto.UINT8
        or len(dims) != 4
        or dims[1] != 3
    ):
        found = [
            f"{v.name} {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()}"
            for v in inputs
        ]
        raise ExportError(
            f"{path}: expected one uint8 (N, 3, H, W) image input (a deployed graph, "
            f"tools/export_onnx.py), got inputs {found}"
        )
    size = (dims[2], dims[3]) if dims[2] and dims[3] else None
    props = {prop.key: prop.value for prop in model.metadata_props}
    if METADATA_KEY in props:
        metadata = json.loads(props[METADATA_KEY])
        if "input_size" in metadata:
            given = metadata["input_size"]
            size = None if given is None else (int(given[0]), int(given[1]))
    return size, dims[0] or None


def config_test_datasets(cfg) -> list[tuple[str, object]]:
    """``[(description, dataset), ...]`` of the config's test data: one dataset, or one
    per entry of a multi-task config's ``test_dataloader``."""
    from mmengine.registry import init_default_scope

    from mtvision.registry import DATASETS

    init_default_scope(cfg.get("default_scope", "mtvision"))
    datasets = []
    for name, dataset_cfg, _ in test_dataset_entries(cfg):
        dataset = DATASETS.build(_unserialized(dataset_cfg))
        kind = type(dataset).__name__
        root = getattr(dataset, "data_root", None)
        where = f"{kind} at {root}" if root else kind
        datasets.append((f"test entry {name!r} ({where})" if name else where, dataset))
    return datasets


def _unserialized(config: dict) -> dict:
    """mmengine's ``serialize_data`` off: the calibration reads in this process, and
    serialising an empty data list fails with a bare numpy error instead of the
    "no images" message."""
    from mmengine.dataset import BaseDataset as MMEngineBaseDataset

    from mtvision.registry import DATASETS

    kind = config.get("type")
    kind = DATASETS.get(kind) if isinstance(kind, str) else kind
    if isinstance(kind, type) and issubclass(kind, MMEngineBaseDataset):
        return {**config, "serialize_data": False}
    return config


def draw(sizes: Sequence[int], count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` distinct ``(dataset index, sample index)`` pairs drawn uniformly from
    all samples of datasets of ``sizes`` (without replacement; all when fewer)."""
    total = sum(sizes)
    picks = np.random.default_rng(seed).permutation(total)[: min(count, total)]
    offsets = np.cumsum([0, *sizes])
    which = np.searchsorted(offsets, picks, side="right") - 1
    return [(int(d), int(p - offsets[d])) for d, p in zip(which, picks, strict=True)]


def calibration_batches(
    datasets: Sequence, picks: Sequence[tuple[int, int]], size, batch_size: int, resized: list
) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) batches of the picked samples through their test pipelines;
    ``size`` None: one image per batch at its own size. Images whose pipeline output
    differs from ``size`` are resized (bilinear) and counted in ``resized``."""
    batch = []
    for dataset_index, sample_index in picks:
        image = datasets[dataset_index][sample_index]["inputs"]
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            resized.append(tuple(image.shape[-2:]))
            image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)
            image = image[0].round().clamp(0, 255).to(torch.uint8)
        batch.append(image)
        if size is None or len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def main(argv=None) -> dict:
    """Quantise as the command line says; returns the quantisation record."""
    args = parse_args(argv)
    size, fixed_batch = graph_input(args.onnx)
    cfg = load_config(args.config, args.cfg_options)
    datasets = config_test_datasets(cfg)
    sizes = [len(dataset) for _, dataset in datasets]
    names = " + ".join(description for description, _ in datasets)
    if sum(sizes) == 0:
        raise ConfigError(f"{args.config}: the test dataset {names} has no images to calibrate on")
    if sum(sizes) < args.calib:
        print(
            f"warning: the test dataset {names} has {sum(sizes)} images, fewer than "
            f"--calib {args.calib}; calibrating on all {sum(sizes)}",
            file=sys.stderr,
        )
    picks = draw(sizes, args.calib, args.seed)
    batch_size = fixed_batch or (args.batch_size if size is not None else 1)
    resized: list = []
    settings = QuantizationSettings(
        method=args.method,
        activation_type=args.activation_type,
        per_channel=not args.per_tensor,
        float_last_layers=not args.int8_last_layers,
        fold_pads=not args.no_fold_pads,
    )
    with tqdm(total=len(picks), desc="calibration", unit="img", file=sys.stderr) as bar:
        record = quantize_onnx(
            args.onnx,
            args.out,
            calibration_batches([d for _, d in datasets], picks, size, batch_size, resized),
            settings,
            on_batch=bar.update,
        )
    if resized:
        print(
            f"note: {len(resized)} of {len(picks)} calibration images were resized from the "
            f"test pipeline's size (e.g. {resized[0][0]}x{resized[0][1]}) to the graph's "
            f"{size[0]}x{size[1]}",
            file=sys.stderr,
        )
    print(
        f"wrote {args.out}: int8 QDQ, {record['method']} calibration on "
        f"{record['calibration_images']} images, {record['activation_type']} activations, "
        f"per-{'channel' if record['per_channel'] else 'tensor'} int8 weights; float: "
        f"{record['postprocessing_nodes']} post-processing "
        f"nodes and {len(record['float_nodes'])} last layers"
    )
    return record


if __name__ == "__main__":
    run_cli(main)
