"""Build a config's model and load a checkpoint into it, outside a Runner."""

from __future__ import annotations

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from mtvision.engine.checkpoint import check_state_dict_fits, load_checkpoint_file
from mtvision.registry import MODELS


def state_dict_of(checkpoint: dict) -> dict:
    """The model weights of an mmengine checkpoint (``state_dict``) or a bare state dict."""
    state_dict = checkpoint.get("state_dict", checkpoint)
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def build_model_from_checkpoint(cfg: Config, checkpoint_path: str) -> nn.Module:
    """Return ``cfg.model`` built, with the checkpoint's weights loaded strictly, in eval mode.

    Raises ``CheckpointError`` naming the file when the weights do not fit.
    """
    init_default_scope(cfg.get("default_scope", "mtvision"))
    model = MODELS.build(cfg.model)
    state_dict = state_dict_of(load_checkpoint_file(checkpoint_path, map_location="cpu"))
    check_state_dict_fits(model, state_dict, checkpoint_path)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above
    return model.eval()
