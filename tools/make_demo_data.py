"""Write the synthetic shapes dataset (ImageNet, COCO and VOC layouts) to a folder.

    python tools/make_demo_data.py --out data/demo --seed 0
    python tools/make_demo_data.py --out /tmp/shapes --seed 1 --num-train 12 --num-val 6

Same arguments give byte-identical files. See ``mtvision/synthetic/shapes.py``
for the layouts and label spaces.
"""

from __future__ import annotations

import argparse
import sys
import time

from mtvision.synthetic.shapes import generate_shapes_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=600)
    parser.add_argument("--num-val", type=int, default=150)
    parser.add_argument("--min-size", type=int, default=96, help="smallest image side, px")
    parser.add_argument("--max-size", type=int, default=192, help="largest image side, px")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        summary = generate_shapes_dataset(
            args.out,
            seed=args.seed,
            num_train=args.num_train,
            num_val=args.num_val,
            min_size=args.min_size,
            max_size=args.max_size,
        )
    except ValueError as err:
        print(f"make_demo_data: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start

    print(
        f"wrote synthetic shapes dataset (seed {args.seed}) to {summary['root']} in {elapsed:.1f} s"
    )
    print(f"  classes: {', '.join(summary['classes'])}")
    for split, counts in summary["counts"].items():
        print(f"  {split}: {counts['images']} images, {counts['annotations']} COCO annotations")
    for name, path in summary["layouts"].items():
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
