"""A toy model, dataset, metric and hook for the engine tests.

Loaded by the test configs through ``custom_imports=dict(imports=['engine_toy'])``
with ``tests/`` on ``PYTHONPATH``, exactly as a user's own module would be, so
the engine is exercised end to end (config -> registries -> runner) without
depending on the real mtvision models.
"""

import json
import os
import os.path as osp
import signal
import time
from pathlib import Path

import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from torch import nn
from torch.utils.data import Dataset

from mtvision.registry import DATASETS, HOOKS, METRICS, MODELS


@MODELS.register_module()
class ToyClassifier(BaseModel):
    """conv -> BatchNorm -> ReLU -> global pool -> linear.

    ``batch_norm=False`` drops the BatchNorm: its batch statistics are per
    process, so only without it do N processes x B images compute exactly
    what one process with N x B images does.
    """

    def __init__(self, num_classes: int = 2, width: int = 4, batch_norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
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
    """Remembers which training iterations this process actually ran, and their lr."""

    def __init__(self):
        self.iters, self.lrs = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        # Priority NORMAL: before ParamSchedulerHook (LOW) steps the lr for the next one.
        self.iters.append(runner.iter)
        self.lrs.append(runner.optim_wrapper.get_lr()["lr"][0])


@HOOKS.register_module()
class RecordSamplesHook(Hook):
    """Remembers which dataset images each training iteration of this process saw.

    ``samples`` is a list of ``[iteration, [dataset index, ...]]``; after
    training it is also written to ``samples_rank{rank}.json`` in the work dir.
    The images are told apart by their pixels (the toy images are random).
    """

    def __init__(self):
        self.samples = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        images = runner.train_dataloader.dataset.images.flatten(1)
        batch = data_batch["inputs"].flatten(1)
        matches = (batch[:, None, :] == images[None, :, :]).all(dim=2)
        self.samples.append([runner.iter, matches.int().argmax(dim=1).tolist()])

    def after_train(self, runner):
        with open(osp.join(runner.work_dir, f"samples_rank{runner.rank}.json"), "w") as file:
            json.dump(self.samples, file)


@HOOKS.register_module()
class KillWorkerHook(Hook):
    """SIGKILLs the process of rank ``rank`` after iteration ``iters``, in its first attempt only.

    "First attempt": torchrun's ``TORCHELASTIC_RESTART_COUNT`` is 0, so the
    workers torchrun restarts run on. Runs after the checkpoint hook.
    """

    priority = "LOWEST"

    def __init__(self, iters: int, rank: int = 1):
        self.iters, self.rank = iters, rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        first_attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) == 0
        if first_attempt and runner.rank == self.rank and runner.iter + 1 == self.iters:
            os.kill(os.getpid(), signal.SIGKILL)


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


def epoch_overrides(batch_size: int = 4, **overrides) -> dict:
    """:func:`toy_config` overrides for an epoch-based run with checkpoints inside epochs.

    24 images, 2 epochs of ``24 / (batch_size x processes)`` iterations, a
    checkpoint every 2 iterations (``iter_N.pth``), logs at INFO level, and
    ``auto_scale_lr`` prepared for a base batch of 8 (off unless asked for).
    """
    loader = dict(batch_size=batch_size, num_workers=0, collate_fn=dict(type="default_collate"))
    return dict(
        dict(
            train_cfg=dict(by_epoch=True, max_epochs=2),
            train_dataloader=dict(
                loader,
                dataset=dict(type="ToyDataset", length=24),
                sampler=dict(type="DefaultSampler", shuffle=True),
            ),
            default_hooks=dict(
                checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                logger=dict(type="LoggerHook", interval=4),
            ),
            auto_scale_lr=dict(enable=False, base_batch_size=8),
            log_level="INFO",
        ),
        **overrides,
    )


def read_logs(work_dir) -> list[str]:
    """The texts of the mmengine log files (one per run) of ``work_dir``, oldest first."""
    import glob

    logs = sorted(glob.glob(osp.join(str(work_dir), "*", "*.log")), key=osp.getmtime)
    texts = []
    for log in logs:
        with open(log, encoding="utf-8") as file:
            texts.append(file.read())
    return texts


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


def minutes_since(start: float) -> str:
    """Wall time since ``start`` (a ``time.perf_counter()`` value) as ``"M min S s"``,
    for the slow learning tests to print next to their metrics (``pytest -s``)."""
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)
    return f"{minutes} min {seconds} s"


def deployed_eval(config: str, checkpoint, options: list[str], out_dir, *export_args: str):
    """Export ``checkpoint`` with tools/export_onnx.py (torch vs onnxruntime checked on 8
    test images, every head required to agree fully) and evaluate the file with
    ``tools/eval.py --backend onnxruntime``. Returns ``(onnx_path, agreements, metrics)``."""
    out_dir = Path(out_dir)
    onnx_path = out_dir / "deployed.onnx"
    agreements = load_tool("export_onnx").main(
        [config, str(checkpoint), "--out", str(onnx_path), "--min-agreement", "1.0",
         *export_args, "--cfg-options", *options]
    )  # fmt: skip
    metrics = load_tool("eval").main(
        [config, str(onnx_path), "--backend", "onnxruntime", "--work-dir",
         str(out_dir / "eval_onnx"), "--cfg-options", *options]
    )  # fmt: skip
    return onnx_path, agreements, metrics


def phone_deployed_evals(
    config: str,
    checkpoint,
    options: list[str],
    out_dir,
    calib: int,
    calib_options=(),
    float_pte: bool = True,
) -> dict[str, dict]:
    """The phone files of ``checkpoint`` as a user makes them, each evaluated with
    ``tools/eval.py`` in its runtime: ``tflite`` (tools/export.py, checked against torch),
    ``tflite int8`` (tools/quantize.py, ``calib`` images), ``pte`` and ``pte int8``
    (tools/export.py --int8 --calib). ``calib_options``: --cfg-options that point the test
    data at the calibration images (e.g. the training split); ``float_pte=False`` leaves the
    float ``.pte`` out (an export and an evaluation less). Returns ``{kind: metrics}``."""
    out_dir = Path(out_dir)
    export, quantize, evaluate = load_tool("export"), load_tool("quantize"), load_tool("eval")
    files = {
        "tflite": out_dir / "deployed.tflite",
        "tflite int8": out_dir / "deployed.int8.tflite",
        "pte": out_dir / "deployed.pte",
        "pte int8": out_dir / "deployed.int8.pte",
    }
    export.main([config, str(checkpoint), "--out", str(files["tflite"]), "--cfg-options", *options])
    quantize.main(
        [config, str(files["tflite"]), "--out", str(files["tflite int8"]), "--calib", str(calib),
         "--cfg-options", *options, *calib_options]
    )  # fmt: skip
    if float_pte:
        export.main(
            [config, str(checkpoint), "--out", str(files["pte"]), "--cfg-options", *options]
        )
    else:
        del files["pte"]
    export.main(
        [config, str(checkpoint), "--out", str(files["pte int8"]), "--int8", "--calib",
         str(calib), "--cfg-options", *options, *calib_options]
    )  # fmt: skip
    metrics = {}
    for kind, path in files.items():
        metrics[kind] = evaluate.main(
            [config, str(path), "--work-dir", str(out_dir / f"eval_{kind.replace(' ', '_')}"),
             "--cfg-options", *options]
        )  # fmt: skip
    return metrics
