"""mtvision's mmengine ``Runner``: CPU torchrun, strict loading, ``last.pth``.

Differences from :class:`mmengine.runner.Runner`, each where mmengine breaks:

- ``launcher='pytorch'`` without a GPU: mmengine calls ``torch.cuda.set_device``
  and wraps DDP with ``device_ids=[LOCAL_RANK]``, both invalid on CPU. Here the
  process group is started with gloo from torchrun's environment and DDP gets
  ``device_ids=None``. With CUDA available nothing changes.
- ``load_checkpoint`` (used by ``load_from``, ``resume`` and tools/eval.py) is
  strict by default, and a checkpoint that does not fit the model raises
  :class:`~mtvision.engine.checkpoint.CheckpointError` on every rank, naming
  the file and the missing / unexpected / mis-shaped keys.
- Every checkpoint the ``CheckpointHook`` records as the latest is also
  published, atomically, as ``<work_dir>/last.pth``; auto-resume
  (``resume=True`` without ``load_from``) starts from it. mmengine's own
  ``last_checkpoint`` pointer file is written non-atomically by the hook, so a
  crash can leave it empty; ``last.pth`` cannot be half-written.

Checkpoint files are read with ``weights_only=True`` and written atomically
(see :mod:`mtvision.engine.checkpoint` and :mod:`mtvision.utils.atomic_files`).
"""

import datetime
import os.path as osp
import re
from collections import OrderedDict

import mmengine.runner
import torch
import torch.distributed as torch_dist
from mmengine.dist import master_only
from mmengine.model import is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
from torch.nn.parallel import DistributedDataParallel

from mtvision.engine.checkpoint import check_state_dict_fits
from mtvision.errors import CheckpointError
from mtvision.registry import RUNNERS
from mtvision.utils.atomic_files import atomic_publish
from mtvision.utils.state_dict import unwrap_state_dict

LAST_CHECKPOINT_NAME = "last.pth"


@RUNNERS.register_module()
class Runner(mmengine.runner.Runner):
    """:class:`mmengine.runner.Runner` that also trains on CPU under torchrun.

    Configs select it with ``runner_type = 'mtvision.Runner'``; tools/train.py
    and tools/eval.py use it when a config names no ``runner_type``.
    """

    def setup_env(self, env_cfg: dict) -> None:
        # mmengine skips its own (CUDA-only) initialisation when a process
        # group already exists, so starting one here is enough.
        if (
            self.launcher == "pytorch"
            and not torch.cuda.is_available()
            and not torch_dist.is_initialized()
        ):
            timeout = env_cfg.get("dist_cfg", {}).get("timeout")
            torch_dist.init_process_group(
                backend="gloo",
                init_method="env://",
                timeout=None if timeout is None else datetime.timedelta(seconds=timeout),
            )
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and not torch.cuda.is_available() and not is_model_wrapper(model):
            model_wrapper_cfg = dict(
                model_wrapper_cfg
                or dict(
                    type="MMDistributedDataParallel",
                    broadcast_buffers=False,
                    find_unused_parameters=self.cfg.get("find_unused_parameters", False),
                )
            )
            wrapper_type = MODEL_WRAPPERS.get(
                model_wrapper_cfg.setdefault("type", "MMDistributedDataParallel")
            )
            # mmengine passes device_ids=[LOCAL_RANK] as a default argument;
            # a value in the config takes precedence, and CPU modules need None.
            if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
                model_wrapper_cfg.setdefault("device_ids", None)
        return super().wrap_model(model_wrapper_cfg, model)

    def load_checkpoint(
        self,
        filename: str,
        map_location="cpu",
        strict: bool = True,
        revise_keys: list = [(r"^module.", "")],  # noqa: B006  (mmengine's signature)
    ):
        """Load ``filename`` into the model; strict unless ``strict=False``.

        The weights are found and checked as by every mtvision loader
        (:mod:`mtvision.utils.state_dict`): ``state_dict``/``model`` entries
        unwrapped, a uniform ``module.`` prefix stripped, and weights that do not
        fit (or, non-strict, match no key at all) refused in one line.
        """
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{filename}: holds a {type(checkpoint).__name__}, not a dict")
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state_dict = unwrap_state_dict(checkpoint, filename)
        metadata = getattr(state_dict, "_metadata", None)
        for pattern, replacement in revise_keys:
            state_dict = OrderedDict(
                (re.sub(pattern, replacement, k), v) for k, v in state_dict.items()
            )
        if metadata is not None:
            state_dict._metadata = metadata
        check_state_dict_fits(model, state_dict, filename, strict=strict)
        _load_checkpoint_to_model(model, {"state_dict": state_dict}, strict, revise_keys=[])
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint

    def resume(self, filename: str, *args, **kwargs) -> None:
        try:
            super().resume(filename, *args, **kwargs)
        except KeyError as error:
            raise CheckpointError(
                f"{filename}: not a resumable training checkpoint (it has no {error} entry); "
                "to start from its weights, use load_from instead"
            ) from error

    def load_or_resume(self) -> None:
        if self._resume and self._load_from is None and not self._has_loaded:
            last = osp.join(self.work_dir, LAST_CHECKPOINT_NAME)
            if osp.isfile(last):
                self._load_from = last
        super().load_or_resume()

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        super().save_checkpoint(out_dir, filename, *args, **kwargs)
        saved = osp.join(out_dir, filename)
        # Best-metric checkpoints also come through here; only the one the
        # CheckpointHook records as latest becomes last.pth.
        if osp.isfile(saved) and self.message_hub.get_info("last_ckpt") == saved:
            atomic_publish(saved, osp.join(self.work_dir, LAST_CHECKPOINT_NAME))


def build_runner(cfg) -> mmengine.runner.Runner:
    """The runner a config asks for: its ``runner_type`` if set, else :class:`Runner`."""
    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
