"""A toy model, dataset, metric and hook for the engine tests.

Loaded by the test configs through ``custom_imports=dict(imports=['engine_toy'])``
with ``tests/`` on ``PYTHONPATH``, exactly as a user's own module would be, so
the engine is exercised end to end (config -> registries -> runner) without
depending on the real mtvision models.
"""

import os.path as osp

import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from torch import nn
from torch.utils.data import Dataset

from mtvision.registry import DATASETS, HOOKS, METRICS, MODELS


@MODELS.register_module()
class ToyClassifier(BaseModel):
    """conv -> BatchNorm -> ReLU -> global pool -> linear."""

    def __init__(self, num_classes: int = 2, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        x = torch.relu(self.bn(self.conv(inputs)))
        logits = self.fc(x.mean(dim=(2, 3)))
        if mode == "loss":
            return {"loss_cls": nn.functional.cross_entropy(logits, data_samples)}
        if mode == "predict":
            return [
                {"logits": row, "label": int(label)}
                for row, label in zip(logits.detach(), data_samples, strict=True)
            ]
        return logits


@DATASETS.register_module()
class ToyDataset(Dataset):
    """``length`` random 3x8x8 images; the label says which channel is brightest."""

    metainfo = {"classes": ("red", "green", "blue")}

    def __init__(self, length: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(length, 3, 8, 8, generator=generator)
        self.labels = self.images.mean(dim=(2, 3)).argmax(dim=1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return {"inputs": self.images[index], "data_samples": self.labels[index]}


@METRICS.register_module()
class ToyAccuracy(BaseMetric):
    """Top-1 accuracy, plus sums that reveal duplicated or dropped samples."""

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            pred = int(sample["logits"].argmax())
            self.results.append(
                {
                    "correct": float(pred == sample["label"]),
                    "logit_sum": float(sample["logits"].sum()),
                }
            )

    def compute_metrics(self, results):
        return {
            "accuracy": sum(r["correct"] for r in results) / len(results),
            "logit_sum": sum(r["logit_sum"] for r in results),
            "num_samples": len(results),
        }


@HOOKS.register_module()
class DumpParamsHook(Hook):
    """Saves this rank's flattened parameters before and after training to the work dir.

    Files: ``params_{before,after}_rank{rank}.pt``.
    """

    def _dump(self, runner, when):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(flat, osp.join(runner.work_dir, f"params_{when}_rank{runner.rank}.pt"))

    def before_train(self, runner):
        self._dump(runner, "before")

    def after_train(self, runner):
        self._dump(runner, "after")


@HOOKS.register_module()
class RecordItersHook(Hook):
    """Remembers which training iterations this process actually ran."""

    def __init__(self):
        self.iters = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iters.append(runner.iter)


class SimulatedCrash(RuntimeError):
    """Raised by :class:`CrashAfterIterHook`."""


@HOOKS.register_module()
class CrashAfterIterHook(Hook):
    """Kills training after iteration ``iters`` ends (checkpoint hooks have run by then)."""

    priority = "LOWEST"

    def __init__(self, iters: int):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iters:
            raise SimulatedCrash(f"simulated crash after iteration {self.iters}")


def toy_config(**overrides) -> dict:
    """An iteration-based toy recipe: SGD with momentum, a step LR schedule, BatchNorm."""
    loader = dict(batch_size=4, num_workers=0, collate_fn=dict(type="default_collate"))
    cfg = dict(
        custom_imports=dict(imports=["engine_toy"], allow_failed_imports=False),
        default_scope="mtvision",
        model=dict(type="ToyClassifier", num_classes=3),
        train_dataloader=dict(
            loader,
            dataset=dict(type="ToyDataset", length=24),
            sampler=dict(type="DefaultSampler", shuffle=True),
        ),
        # 7 test samples: over 2 processes the sampler pads to 8, the metric must drop one.
        test_dataloader=dict(
            loader,
            batch_size=2,
            dataset=dict(type="ToyDataset", length=7, seed=1),
            sampler=dict(type="DefaultSampler", shuffle=False),
        ),
        test_cfg=dict(type="TestLoop"),
        test_evaluator=dict(type="ToyAccuracy"),
        train_cfg=dict(by_epoch=False, max_iters=8),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=dict(type="MultiStepLR", milestones=[2, 6], gamma=0.5, by_epoch=False),
        default_hooks=dict(
            checkpoint=dict(type="CheckpointHook", interval=4, by_epoch=False),
            logger=dict(type="LoggerHook", interval=4),
        ),
        custom_hooks=[dict(type="RecordItersHook")],
        env_cfg=dict(dist_cfg=dict(backend="nccl", timeout=120)),
        randomness=dict(seed=0),
        log_level="WARNING",
    )
    cfg.update(overrides)
    return cfg


def write_config(path, **overrides) -> str:
    """Write :func:`toy_config` as a python config file; returns its path."""
    from mmengine.config import Config

    Config(toy_config(**overrides)).dump(str(path))
    return str(path)


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    import importlib.util

    tool = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"mtvision_tools_{name}", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loader_options(*settings: str) -> list[str]:
    """``--cfg-options`` applying each ``key=value`` to the train, val and test loaders."""
    return [
        f"{loader}.{setting}"
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader")
        for setting in settings
    ]
