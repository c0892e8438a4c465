"""Convert Google's TFLite MobileNetV2 / DeepLabv3 / DeepLabv3+ weights into an mtvision checkpoint.

    python tools/convert_weights.py SRC.tflite --out CKPT.pth
        [--config CONFIG [--cfg-options KEY=VALUE ...]] [--labels LABELS.txt]
        [--num-classes 1000]

Reads the ``.tflite`` flatbuffer (needs ``pip install 'mtvision[tflite]'``), walks
its graph, dequantises every weight and writes ``CKPT.pth`` in mmengine's checkpoint
layout (``state_dict`` + ``meta``), which ``tools/eval.py CONFIG CKPT``, ``load_from``
and ``mtvision.create_model(name, checkpoint=CKPT)`` read. ``--out`` is checked before
the conversion; the file is written beside it, read back with the weights-only
loader, and only then renamed over it.

Supported: the MobileNetV2 ImageNet classifier (1001 outputs, row 0 "background"),
the on-device DeepLabv3-MobileNetV2 segmenter (PASCAL VOC, any width) and the
DeepLabv3+ MobileNetV2 of MLPerf Mobile (ADE20K-Top31, 512x512;
``configs/pretrained/deeplabv3plus_tflite_ade20k.py``). See
docs/pretrained.md for what the graphs are and what the checkpoint holds.

- ``--config``: convert into that config's model (every layer, padding rule,
  activation and the normalisation are checked against the graph); use the config
  you will evaluate or fine-tune with, e.g. ``configs/pretrained/deeplabv3_tflite_voc.py``.
  Without it, the model is the one the graph describes (``meta["model"]`` then
  rebuilds it: ``create_model(name, checkpoint=CKPT)``).
- ``--labels``: class names for ``meta["dataset_meta"]["classes"]``, one per line up
  to the first blank line (DeepLab defaults to the PASCAL VOC names).
- ``--num-classes 1000`` (without ``--config``): drop the classifier's background row,
  so label i is ImageNet class i (the sorted-synset order of ImageNet folders).
"""

from __future__ import annotations

import argparse
import sys

from mtvision.engine import load_config
from mtvision.engine.checkpoint import check_state_dict_fits, load_checkpoint_file
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.utils.atomic_files import check_output_file, staged_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a TFLite MobileNetV2 classifier or DeepLabv3(+) file to a checkpoint."
    )
    parser.add_argument("source", help="the .tflite file")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pth)")
    parser.add_argument("--config", help="convert into this config's model")
    add_cfg_options_argument(parser, "model.heads.classification.num_classes=1000")
    parser.add_argument("--labels", help="class-name file, one name per line")
    parser.add_argument(
        "--num-classes",
        type=int,
        help="without --config: 1000 drops the classifier's background output",
    )
    args = parser.parse_args(argv)
    if args.config is None and args.cfg_options:
        parser.error("--cfg-options needs --config")
    if args.config is not None and args.num_classes is not None:
        parser.error("--num-classes is for conversions without --config; set it in the config")
    return args


def main(argv=None) -> dict:
    """Convert as the command line says; returns the checkpoint's meta."""
    args = parse_args(argv)
    check_output_file(args.out, "--out", example="model.pth")
    from mtvision.convert.tflite_conversion import convert_tflite, save_checkpoint
    from mtvision.convert.tflite_graph import require_tflite

    try:
        require_tflite()
    except ImportError as error:  # the optional extra is missing: one line, like run_cli
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    model = None
    if args.config is not None:
        from mmengine.registry import init_default_scope

        from mtvision.registry import MODELS

        cfg = load_config(args.config, args.cfg_options)
        init_default_scope(cfg.get("default_scope", "mtvision"))
        model = MODELS.build(cfg.model)
    model, meta = convert_tflite(
        args.source, model=model, num_classes=args.num_classes, labels=args.labels
    )
    if args.config is not None:
        meta["config"] = args.config
    with staged_file(args.out) as staged:  # replaces --out only once it reads back
        save_checkpoint(model, meta, staged)
        check_state_dict_fits(model, load_checkpoint_file(staged)["state_dict"], args.out)

    described = meta["model"]
    classes = meta["dataset_meta"].get("classes")
    print(f"converted {args.source} ({meta['converted_from']['input']})")
    print(
        f"  into {type(model).__name__}: create_model({described['name']!r}, **{described['kwargs']})"
    )
    print(f"  classes: {len(classes) if classes else 'unnamed'}; wrote {args.out}")
    if meta["not_converted"]:
        print(
            f"  not in the file, left as initialised ({len(meta['not_converted'])} tensors, "
            f"unused by this model's forward): {', '.join(meta['not_converted'][:3])}, ..."
        )
    print(
        "  BatchNorm: folded (identity carrying the bias); exact in eval mode, fine-tune "
        "with the backbone's norm_eval=True"
    )
    return meta


if __name__ == "__main__":
    run_cli(main)
