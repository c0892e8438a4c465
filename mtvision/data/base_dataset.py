"""What every mtvision dataset adds to mmengine's ``BaseDataset``.

- Pipelines are built in mtvision's ``TRANSFORMS`` registry. mmengine's
  ``BaseDataset`` builds config dicts in its root registry, which finds
  mtvision's transforms only under ``default_scope='mtvision'`` (set by the
  Runner); building here makes datasets work in plain scripts and tests too.
- Bad images can be skipped in training (``on_bad_image="skip"``): the sample
  becomes ``None`` and mmengine's ``BaseDataset`` fetches a random other one;
  each skip is counted and logged with the file name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

from mmengine.dataset import BaseDataset as MMEngineBaseDataset
from mmengine.logging import print_log

from mtvision.errors import ImageLoadError
from mtvision.registry import TRANSFORMS


class BaseDataset(MMEngineBaseDataset):
    """mmengine ``BaseDataset`` with mtvision-registry pipelines and bad-image skipping.

    Args:
        on_bad_image: ``"raise"`` (default) when an image cannot be loaded (the
            error names the file), or ``"skip"``: the sample is dropped and
            mmengine fetches a random other one; every skip is logged as a
            warning naming the file and counted in ``num_skipped_images`` (per
            process: each data-loader worker counts its own).
        pipeline: transform objects or config dicts.
        test_mode: evaluation mode; cannot be combined with
            ``on_bad_image="skip"`` because a replacement sample would be
            evaluated twice.
        ann_file, metainfo, data_root, data_prefix, indices, serialize_data,
            lazy_init, max_refetch: mmengine's ``BaseDataset`` arguments
            (``data_prefix`` defaults to ``dict(img_path="")``). Its
            ``filter_cfg`` is not taken: no mtvision dataset filters through it.

    Every parameter is explicit (no ``**kwargs``), here and in the datasets
    built on this class, so their signatures say which config keys they take
    (:mod:`mtvision.engine.config_keys` reads them).
    """

    def __init__(
        self,
        *,
        on_bad_image: Literal["raise", "skip"] = "raise",
        pipeline: Sequence = (),
        test_mode: bool = False,
        ann_file: str = "",
        metainfo: Mapping | None = None,
        data_root: str = "",
        data_prefix: dict | None = None,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        lazy_init: bool = False,
        max_refetch: int = 1000,
    ) -> None:
        if on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")
        if test_mode and on_bad_image == "skip":
            raise ValueError(
                "on_bad_image='skip' cannot be used with test_mode=True: mmengine would "
                "replace a bad image by a random other sample, counted twice in evaluation"
            )
        self.on_bad_image = on_bad_image
        self.num_skipped_images = 0
        transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(img_path="") if data_prefix is None else data_prefix,
            indices=indices,
            serialize_data=serialize_data,
            pipeline=transforms,
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )

    def prepare_data(self, idx: int) -> dict | None:
        if self.on_bad_image == "raise":
            return super().prepare_data(idx)
        try:
            return super().prepare_data(idx)
        except ImageLoadError as err:
            self.num_skipped_images += 1
            print_log(
                f"{type(self).__name__}: skipped bad image #{self.num_skipped_images}: {err}",
                logger="current",
                level=logging.WARNING,
            )
            return None
