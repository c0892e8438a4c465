"""Loading config files, with a check of their top-level keys.

mmengine's ``Config`` accepts any top-level name and ``Runner.from_cfg``
silently ignores the ones it does not know, so a typo such as ``trian_cfg``
trains with the default schedule. :func:`load_config` rejects unknown
top-level keys, naming the file that defines the key and the closest valid one.

Below the top level, :func:`mtvision.engine.config_keys.check_config_keys`
checks every dict against what will be built from it (the signature of its
``type``, mmengine's own schemas), for the file and again after
``--cfg-options`` are merged; :mod:`mtvision.engine.config_values` checks the
values whose meaning mtvision knows (batch sizes, learning rates, thresholds, ...).

Valid top-level keys:

- the arguments of ``mmengine.runner.Runner.__init__`` (what ``from_cfg``
  passes on: ``model``, ``train_dataloader``, ``optim_wrapper``, ...),
- what mmengine reads from the config elsewhere (:data:`MMENGINE_EXTRA_KEYS`),
- any name starting with ``_`` (a private helper, e.g. ``_crop = 320``),
- helper variables (``data_root``, ``train_pipeline``, ``max_epochs``) that the
  file defining them also reads. A variable is resolved when its file is read,
  so one that no entry of its file reads has no effect: a mistyped key
  (``trian_cfg``) and a ``data_root`` redefined in a derived config alike.
"""

import ast
import difflib
import inspect
import os.path as osp
import re
from pathlib import Path
from typing import NamedTuple

from mmengine.config import Config
from mmengine.runner import Runner

from mtvision.engine.config_keys import check_config_keys
from mtvision.engine.config_values import check_config_values, check_option_types
from mtvision.errors import ConfigError

RUNNER_KEYS = frozenset(inspect.signature(Runner.__init__).parameters) - {"self", "cfg"}

#: Read by mmengine outside ``Runner.__init__``'s arguments: ``Config``
#: (``custom_imports``), the registry build (``runner_type``, ``_scope_``),
#: ``Runner.wrap_model`` (``model_wrapper_cfg``, ``sync_bn``,
#: ``find_unused_parameters``), ``Runner.train`` (``compile``,
#: ``activation_checkpointing``, ``efficient_conv_bn_eval``) and
#: ``Runner.resume`` (``gpu_ids``).
MMENGINE_EXTRA_KEYS = frozenset(
    {
        "custom_imports",
        "runner_type",
        "_scope_",
        "model_wrapper_cfg",
        "sync_bn",
        "find_unused_parameters",
        "compile",
        "activation_checkpointing",
        "efficient_conv_bn_eval",
        "gpu_ids",
    }
)

#: Read by mtvision outside the Runner: ``int8_emulation``
#: (:meth:`mtvision.engine.model_source.ModelSource.build_model`).
MTVISION_KEYS = frozenset({"int8_emulation"})

VALID_KEYS = RUNNER_KEYS | MMENGINE_EXTRA_KEYS | MTVISION_KEYS


def _is_valid_key(key: str) -> bool:
    return key in VALID_KEYS or key.startswith("_")


def _suggestion(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(VALID_KEYS), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _ConfigSource(NamedTuple):
    """What one python config file assigns at top level, reads anywhere, and inherits."""

    assigned: frozenset[str]
    read: frozenset[str]
    bases: tuple[str, ...]


def _parse(path: str) -> _ConfigSource | None:
    """Names a config file assigns, reads and inherits; ``None`` if it cannot be parsed."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    except (OSError, SyntaxError):
        return None
    assigned, bases = set(), ()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            assigned |= names
            if "_base_" in names:
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    value = ()
                bases = (value,) if isinstance(value, str) else tuple(value)
    read = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    return _ConfigSource(frozenset(assigned), frozenset(read), bases)


def _file_defining(path: str, key: str) -> str | None:
    """The file among ``path`` and its local ``_base_`` files that assigns ``key``."""
    source = _parse(osp.abspath(path))
    if source is None:
        return None
    if key in source.assigned:
        return path
    for base in source.bases:
        found = _file_defining(osp.join(osp.dirname(path), base), key)
        if found:
            return found
    return None


def check_keys(cfg: Config, path: str) -> None:
    """Raise :class:`ConfigError` for the first unknown top-level key of ``cfg``.

    Known keys are the Runner's arguments and mmengine's extras; a helper
    variable is accepted when the file that defines it also reads it.
    """
    for key in cfg.keys():
        if _is_valid_key(key):
            continue
        defining = _file_defining(path, key)
        source = _parse(osp.abspath(defining)) if defining else None
        if source is None or key not in source.read:
            raise ConfigError(
                f"{defining or path}: unknown top-level config key '{key}'{_suggestion(key)}"
            )


def check_option_keys(cfg_options: dict) -> None:
    """Raise :class:`ConfigError` if a ``--cfg-options`` key starts with an unknown name."""
    for option in cfg_options:
        key = option.split(".", 1)[0]
        if not _is_valid_key(key):
            raise ConfigError(
                f"--cfg-options {option}: unknown top-level config key '{key}'{_suggestion(key)}"
            )


def load_config(config: str | Path | Config, cfg_options: dict | None = None) -> Config:
    """Read a python config with ``_base_`` inheritance, merge options, check keys.

    ``config``: a file path, or a ``Config`` already loaded (a copy gets the options;
    the given one is left as it is). ``cfg_options`` are ``--cfg-options`` style
    overrides (``{'train_cfg.max_iters': 10}``), checked the same way for both.
    ``default_scope`` defaults to ``'mtvision'``, so registered names resolve in
    mtvision's registries first.

    Raises:
        FileNotFoundError: ``config`` is a path that does not exist.
        ConfigError: an unknown key, at any depth, in the file (or one of its
            ``_base_`` files) or in ``cfg_options``, naming the key's path and
            the closest valid name; or a value its key rules out (a batch size
            below 1, a learning rate that is no number, ...:
            :mod:`~mtvision.engine.config_values`), naming the key and the value.
    """
    if isinstance(config, Config):
        cfg = config.copy()
        path = cfg.filename or "the config"
    else:
        path = str(config)
        if not osp.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        cfg = Config.fromfile(path)
        check_keys(cfg, path)
        check_config_keys(cfg, path)
        check_config_values(cfg, path)
    if cfg_options:
        check_option_keys(cfg_options)
        check_option_types(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
        source = lambda key_path: _option_source(cfg_options, key_path, path)  # noqa: E731
        check_config_keys(cfg, source)
        check_config_values(cfg, source)
    cfg.setdefault("default_scope", "mtvision")
    return cfg


def _option_source(cfg_options: dict, key_path: str, path: str) -> str:
    """The ``--cfg-options`` entry that set ``key_path`` (or an enclosing dict)."""
    key_path = re.sub(r"\[(\d+)\]", r".\1", key_path)  # list items as mmengine's options name them
    for option, value in cfg_options.items():
        if (
            key_path == option
            or key_path.startswith(f"{option}.")
            or option.startswith(f"{key_path}.")
        ):
            return f"--cfg-options {option}={value}"
    return path


def default_work_dir(path: str | Path) -> str:
    """``work_dirs/<config file stem>``, where tools put a config's outputs by default."""
    return osp.join("work_dirs", Path(path).stem)
