"""A tiny multi-task model following the composing model's contract, for the data and evaluation tests.

The contract (what ``MultiTaskModel`` offers; see docs/multitask.md):

- ``forward(inputs, data_samples, mode="loss")``: a ``loss_*`` per head,
  each from only the samples carrying that head's annotation (``label``,
  ``boxes``/``labels``, ``mask``);
- ``mode="predict"``: one dict per image merging every active head's fields
  (``pred_score``/``pred_label``, ``boxes``/``scores``/``labels`` in original
  pixels, ``pred_mask`` at the original size) plus ``meta`` and the
  ground-truth fields ``gt_label`` / ``gt_mask``;
- ``active_heads(names)``: a context manager restricting which heads run.

``oracle=True`` predicts from the ground truth instead of the network, so
metrics have exactly known values: every image whose file stem ends in a
number divisible by ``corrupt_every`` gets a wrong class, no box and an
all-background mask. Loaded by test configs through
``custom_imports=dict(imports=["multitask_toy"])`` with ``tests/`` on the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import os.path as osp

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch import nn

from mtvision.models.data_preprocessor import build_data_preprocessor
from mtvision.registry import HOOKS, MODELS

HEADS = ("classification", "detection", "segmentation")


def _stem_number(meta: dict) -> int:
    stem = osp.splitext(osp.basename(meta["img_path"]))[0]
    return int(stem.rsplit("_", 1)[-1])


@MODELS.register_module()
class ToyMultiTaskModel(BaseModel):
    """conv stem -> {classification: pooled linear, detection: one pooled box, segmentation: 1x1 conv}.

    Args:
        num_classes: head name -> number of classes; the heads built are its keys.
        oracle: predict from the ground truth (see the module docstring).
        corrupt_every: with ``oracle``, images whose stem number is divisible by
            it are predicted wrong; 0 predicts every image right.
    """

    def __init__(self, num_classes: dict, oracle: bool = False, corrupt_every: int = 0):
        super().__init__(data_preprocessor=build_data_preprocessor(None))
        unknown = set(num_classes) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)}")
        self.num_classes = dict(num_classes)
        self.oracle = oracle
        self.corrupt_every = corrupt_every
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.heads = nn.ModuleDict()
        if "classification" in num_classes:
            self.heads["classification"] = nn.Linear(8, num_classes["classification"])
        if "detection" in num_classes:
            self.heads["detection"] = nn.Linear(8, 4 + num_classes["detection"])
        if "segmentation" in num_classes:
            self.heads["segmentation"] = nn.Conv2d(8, num_classes["segmentation"], 1)
        self._active = tuple(self.heads)
        self.active_history: list[tuple[str, ...]] = []  # heads active at each predict call

    @contextlib.contextmanager
    def active_heads(self, names):
        names = tuple(names)
        unknown = [name for name in names if name not in self.heads]
        if unknown:
            raise KeyError(f"no head named {unknown}; the model has {list(self.heads)}")
        previous, self._active = self._active, names
        try:
            yield self
        finally:
            self._active = previous

    def forward(self, inputs, data_samples=None, mode="tensor"):
        features = torch.relu(self.stem(inputs))
        if mode == "loss":
            return self._loss(features, data_samples)
        if mode == "predict":
            self.active_history.append(self._active)
            if self.oracle:
                return [self._oracle(sample) for sample in data_samples]
            return self._predict(features, data_samples)
        return features

    # ------------------------------------------------------------------ training

    def _loss(self, features, samples):
        pooled = features.mean(dim=(2, 3))
        losses = {}
        for head in self._active:
            annotated = [i for i, s in enumerate(samples) if _annotation_key(head) in s]
            out = self.heads[head](features if head == "segmentation" else pooled)
            if not annotated:
                # No sample annotates this head: no loss, but keep the graph whole for DDP.
                losses[f"loss_{head}"] = out.sum() * 0.0
                continue
            if head == "classification":
                target = torch.as_tensor([samples[i]["label"] for i in annotated])
                losses["loss_classification"] = F.cross_entropy(out[annotated], target)
            elif head == "detection":
                height, width = features.shape[2:]
                scale = torch.tensor([width, height, width, height], dtype=torch.float32)
                target = torch.stack(
                    [
                        samples[i]["boxes"][0] / scale
                        if len(samples[i]["boxes"])
                        else torch.zeros(4)
                        for i in annotated
                    ]
                )
                losses["loss_detection"] = F.l1_loss(out[annotated, :4].sigmoid(), target)
            else:
                target = torch.full(features.shape[:1] + features.shape[2:], 255, dtype=torch.long)
                for i in annotated:
                    mask = samples[i]["mask"].long()
                    target[i, : mask.shape[0], : mask.shape[1]] = mask
                losses["loss_segmentation"] = F.cross_entropy(
                    out[annotated], target[annotated], ignore_index=255
                )
        return losses

    def _predict(self, features, samples):
        pooled = features.mean(dim=(2, 3))
        predictions = []
        for index, sample in enumerate(samples):
            meta = sample["meta"]
            prediction = {"meta": meta}
            if "classification" in self._active:
                score = self.heads["classification"](pooled[index]).softmax(dim=0)
                prediction.update(pred_score=score, pred_label=int(score.argmax()))
            if "detection" in self._active:
                out = self.heads["detection"](pooled[index])
                height, width = meta["ori_shape"]
                box = out[:4].sigmoid() * torch.tensor([width, height, width, height])
                x1, y1 = torch.minimum(box[0], box[2]), torch.minimum(box[1], box[3])
                x2, y2 = torch.maximum(box[0], box[2]) + 1, torch.maximum(box[1], box[3]) + 1
                prediction.update(
                    boxes=torch.stack([x1, y1, x2, y2])[None],
                    scores=out[4:].softmax(dim=0).max()[None],
                    labels=out[4:].argmax()[None],
                )
            if "segmentation" in self._active:
                logits = self.heads["segmentation"](features[index : index + 1])
                height, width = meta["img_shape"]
                logits = F.interpolate(
                    logits[..., :height, :width], size=tuple(meta["ori_shape"]), mode="bilinear"
                )
                prediction["pred_mask"] = logits[0].argmax(dim=0)
            _copy_ground_truth(prediction, sample)
            predictions.append(prediction)
        return predictions

    # ------------------------------------------------------------------ oracle

    def _oracle(self, sample):
        meta = sample["meta"]
        wrong = bool(self.corrupt_every) and _stem_number(meta) % self.corrupt_every == 0
        prediction = {"meta": meta}
        if "classification" in self._active:
            classes = self.num_classes["classification"]
            label = (sample["label"] + int(wrong)) % classes
            prediction.update(
                pred_score=F.one_hot(torch.tensor(label), classes).float(), pred_label=label
            )
        if "detection" in self._active:
            height, width = meta["img_shape"]
            ori_height, ori_width = meta["ori_shape"]
            scale = torch.tensor([ori_width / width, ori_height / height] * 2)
            keep = 0 if wrong else len(sample["boxes"])
            prediction.update(
                boxes=sample["boxes"][:keep] * scale,
                scores=torch.ones(keep),
                labels=sample["labels"][:keep],
            )
        if "segmentation" in self._active:
            mask = sample["mask"].long()
            mask = torch.where(mask == 255, 0, mask)
            if wrong:
                mask = torch.zeros_like(mask)
            if tuple(mask.shape) != tuple(meta["ori_shape"]):
                mask = F.interpolate(
                    mask[None, None].float(), size=tuple(meta["ori_shape"]), mode="nearest"
                )[0, 0].long()
            prediction["pred_mask"] = mask
        _copy_ground_truth(prediction, sample)
        return prediction


def _annotation_key(head: str) -> str:
    return {"classification": "label", "detection": "boxes", "segmentation": "mask"}[head]


def _copy_ground_truth(prediction: dict, sample: dict) -> None:
    if "label" in sample:
        prediction["gt_label"] = int(sample["label"])
    if "mask" in sample:
        prediction["gt_mask"] = sample["mask"]


@HOOKS.register_module()
class RecordBatchesHook(Hook):
    """Writes, per process, every training batch as a list of (image file, annotation kinds).

    File: ``<work_dir>/batches_rank<rank>.json``: ``[[epoch, [[img_path, [kinds]], ...]], ...]``.
    """

    def __init__(self):
        self.batches = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.batches.append(
            [
                runner.epoch,
                [
                    [
                        sample["meta"]["img_path"],
                        sorted(k for k in ("label", "boxes", "mask") if k in sample),
                    ]
                    for sample in data_batch["data_samples"]
                ],
            ]
        )

    def after_train(self, runner):
        path = osp.join(runner.work_dir, f"batches_rank{runner.rank}.json")
        os.makedirs(runner.work_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.batches, file)


def config_on_data(config_path: str, root, demo_root: str = "data/demo/"):
    """A shipped config (loaded by ``mtvision.engine.load_config``) with every path under
    ``demo_root`` moved to ``root``: the shipped data config, on a tree in tmp_path."""
    from mtvision.engine import load_config

    cfg = load_config(config_path)
    prefix = str(root).rstrip("/") + "/"

    def moved(value):
        if isinstance(value, str) and value.startswith(demo_root):
            return prefix + value[len(demo_root) :]
        if isinstance(value, dict):
            return type(value)({key: moved(item) for key, item in value.items()})
        if isinstance(value, list | tuple):
            return type(value)(moved(item) for item in value)
        return value

    for key in list(cfg.keys()):
        cfg[key] = moved(cfg[key])
    return cfg
