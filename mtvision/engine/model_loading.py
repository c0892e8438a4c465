"""Build a config's model and load a checkpoint into it, outside a Runner."""

from __future__ import annotations

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from mtvision.engine.checkpoint import check_state_dict_fits, load_checkpoint_file
from mtvision.registry import MODELS
from mtvision.utils.state_dict import unwrap_state_dict


def state_dict_of(checkpoint: dict, source: str = "the checkpoint") -> dict:
    """The model weights of a checkpoint, as every loader finds them
    (:func:`mtvision.utils.state_dict.unwrap_state_dict`)."""
    return unwrap_state_dict(checkpoint, source)


def build_model_from_checkpoint(cfg: Config, checkpoint_path: str) -> nn.Module:
    """Return ``cfg.model`` built, with the checkpoint's weights loaded strictly, in eval mode.

    Raises ``CheckpointError`` naming the file when the weights do not fit.
    """
    init_default_scope(cfg.get("default_scope", "mtvision"))
    model = MODELS.build(cfg.model)
    checkpoint = load_checkpoint_file(checkpoint_path, map_location="cpu")
    state_dict = state_dict_of(checkpoint, checkpoint_path)
    check_state_dict_fits(model, state_dict, checkpoint_path)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above
    return model.eval()
