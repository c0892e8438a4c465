"""Which keys a config dict may hold, at every depth, read from what will be built.

mmengine builds ``dict(type=X, **kwargs)`` as ``X(**kwargs)``: a misspelt key
(``ann_flie``) surfaces as a ``TypeError`` deep inside a dataset, a data loader
or a hook, after minutes of setup, or is dropped without a word where a class
takes ``**kwargs``. :func:`check_config_keys` walks a loaded config before
anything is built and raises :class:`~mtvision.errors.ConfigError` for the
first key nothing will read, naming its path (``test_dataloader.dataset.ann_flie``)
and the closest valid name.

Where the valid keys come from:

- a dict with ``type``: the signature (``inspect.signature``) of that class or
  function, found in the registry mmengine will build it from. mtvision's own
  classes take explicit parameters, no ``**kwargs`` (a test keeps it so). A
  ``**kwargs`` elsewhere accepts any key, except in mmengine's families known to
  hand it to the base class (:func:`_forwarding_bases`; the parameters along
  the MRO count) and its ``CheckpointHook`` and ``EMAHook``
  (:func:`_forwarded_kwargs`). A dict of named configs without a ``type`` (a
  ``MultiTaskModel``'s ``heads``) is walked entry by entry.
- dicts mmengine reads without a ``type``, by mmengine's own schema: the data
  loaders (torch's ``DataLoader`` arguments and what mmengine takes out first;
  a multi-task loop's ``{entry: loader}``), the loops' ``*_cfg``, evaluators
  (``{entry: {head: metric}}`` too), ``optim_wrapper`` (with ``paramwise_cfg``
  and ``clip_grad``), ``default_hooks``, ``log_processor``, ``env_cfg``,
  ``randomness``, ``auto_scale_lr``.
- mmengine's build-time extras: ``_scope_`` everywhere, ``priority`` on
  hooks, ``convert_to_iter_based`` on parameter schedulers.

Classes may name how their nested ``type`` strings resolve when it is not a
registry (mtvision's ``Albumentations`` takes albumentations class names) with
a class attribute ``nested_config_types = {"argument": resolver}``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

import torch
from torch.utils.data import DataLoader

from mtvision import registry as mtv
from mtvision.errors import ConfigError

__all__ = ["accepted_keys", "check_config_keys"]

Resolver = Callable[[str], Any]

# Arguments that name the registry their nested configs are built from, whatever
# the parent's registry is.
_CHILD_REGISTRIES = {
    "pipeline": mtv.TRANSFORMS,
    "dataset": mtv.DATASETS,
    "datasets": mtv.DATASETS,
    "sampler": mtv.DATA_SAMPLERS,
    "batch_sampler": mtv.DATA_SAMPLERS,
    "collate_fn": mtv.FUNCTIONS,
    "worker_init_fn": mtv.FUNCTIONS,
    "optimizer": mtv.OPTIMIZERS,
    "data_preprocessor": mtv.MODELS,
    "init_cfg": mtv.WEIGHT_INITIALIZERS,
    "metrics": mtv.METRICS,
    "vis_backends": mtv.VISBACKENDS,
}

#: Arguments whose dicts use ``type`` for something else (``clip_grad``: "norm" or
#: "value", checked by the optim_wrapper schema).
_NOT_CONFIGS = frozenset({"type", "clip_grad"})

#: Keys mmengine consumes while building from a registry, beyond the signature.
_BUILD_EXTRAS = {
    mtv.HOOKS: frozenset({"priority"}),
    mtv.PARAM_SCHEDULERS: frozenset({"convert_to_iter_based"}),
}

#: mmengine's default hooks and the types it gives them (Runner.register_default_hooks).
_DEFAULT_HOOK_TYPES = {
    "runtime_info": "RuntimeInfoHook",
    "timer": "IterTimerHook",
    "sampler_seed": "DistSamplerSeedHook",
    "logger": "LoggerHook",
    "param_scheduler": "ParamSchedulerHook",
    "checkpoint": "CheckpointHook",
}

#: Keys of the DefaultOptimWrapperConstructor's ``paramwise_cfg``.
_PARAMWISE_KEYS = frozenset(
    {
        "custom_keys",
        "bias_lr_mult",
        "bias_decay_mult",
        "norm_decay_mult",
        "dwconv_decay_mult",
        "flat_decay_mult",
        "bypass_duplicate",
        "dcn_offset_lr_mult",
    }
)

#: What ``Runner.setup_env`` reads from ``env_cfg`` (``dist_cfg`` goes to
#: ``init_dist(**dist_cfg)`` and on to torch, so its keys are not checked).
_ENV_KEYS = frozenset({"cudnn_benchmark", "mp_cfg", "dist_cfg", "resource_limit"})
_MP_KEYS = frozenset({"mp_start_method", "opencv_num_threads"})

#: What ``Runner.build_dataloader`` takes out of a data loader config before the
#: rest goes to torch's ``DataLoader``.
_MMENGINE_LOADER_KEYS = frozenset(
    {
        "dataset",
        "sampler",
        "batch_sampler",
        "collate_fn",
        "worker_init_fn",
        "num_batch_per_epoch",
        "disable_subprocess_warning",
    }
)


def check_config_keys(cfg: Mapping, source: str | Callable[[str], str]) -> None:
    """Raise :class:`ConfigError` for the first key of ``cfg``, at any depth, that
    what will be built does not take.

    ``source`` starts the message: the config file, or a function from the
    key's path to where it came from (``--cfg-options KEY=VALUE``).
    """
    _Checker(source).check(cfg)


# ---------------------------------------------------------------- signatures


@cache
def accepted_keys(target: Any) -> frozenset[str] | None:
    """Keyword arguments ``target`` (a class or a function) accepts; ``None`` for any.

    Read from ``inspect.signature``. A ``**kwargs`` accepts any key, except in
    the families of :func:`_forwarding_bases`: there the parameters of each
    ``__init__`` along the MRO count, up to the first without ``**kwargs``.
    """
    keys, open_ended = _parameters(target)
    if keys is None or not open_ended:
        return None if keys is None else frozenset(keys)
    if not (inspect.isclass(target) and issubclass(target, _forwarding_bases())):
        return None
    names: set[str] = set()
    for cls in target.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        keys, open_ended = _parameters(init)
        names |= keys or set()
        if not open_ended or init is object.__init__:
            break
    return frozenset(names)


@cache
def _forwarding_bases() -> tuple[type, ...]:
    """Classes whose subclasses hand ``**kwargs`` on to ``super().__init__``: mmengine's
    parameter schedulers (the ``LR``/``Momentum`` mixins), weight initialisers, optimiser
    wrappers (``AmpOptimWrapper``) and its DDP and FSDP model wrappers."""
    from mmengine.model.weight_init import BaseInit
    from mmengine.optim import OptimWrapper
    from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    return (
        _ParamScheduler,
        BaseInit,
        OptimWrapper,
        DistributedDataParallel,
        FullyShardedDataParallel,
    )


def _parameters(function: Any) -> tuple[set[str] | None, bool]:
    """(keyword-passable parameter names, whether it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return None, True
    names = {
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _registry_lookup(registry: Any, name: str) -> Any:
    try:
        return registry.get(name)
    except (KeyError, ImportError, AttributeError):
        return None


def _registered_names(registry: Any) -> list[str]:
    names, current = set(), registry
    while current is not None:
        names |= set(current.module_dict)
        current = current.parent
    return sorted(names)


# ---------------------------------------------------------------- the walk


class _Checker:
    def __init__(self, source: str | Callable[[str], str]) -> None:
        self.source_of = source if callable(source) else lambda path: source

    def fail(self, path: str, key: str, valid: Iterable[str], owner: str) -> None:
        close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {sorted(valid)}"
        raise ConfigError(
            f"{self.source_of(path)}: unknown config key '{path}' ({owner} takes no '{key}'){hint}"
        )

    def keys(self, value: Mapping, path: str, valid: Iterable[str] | None, owner: str) -> None:
        if valid is None:
            return
        valid = set(valid) | {"_scope_"}
        for key in value:
            if isinstance(key, str) and key not in valid and not key.startswith("_"):
                self.fail(f"{path}.{key}", key, valid - {"_scope_"}, owner)

    # -- the top level

    def check(self, cfg: Mapping) -> None:
        handlers = {
            "model": lambda v, p: self.typed(v, p, mtv.MODELS),
            "model_wrapper_cfg": lambda v, p: self.typed(v, p, mtv.MODEL_WRAPPERS),
            "train_dataloader": self.dataloader,
            "val_dataloader": self.dataloader,
            "test_dataloader": self.dataloader,
            "train_cfg": lambda v, p: self.loop(v, p, "train"),
            "val_cfg": lambda v, p: self.loop(v, p, "val"),
            "test_cfg": lambda v, p: self.loop(v, p, "test"),
            "val_evaluator": self.evaluator,
            "test_evaluator": self.evaluator,
            "optim_wrapper": self.optim_wrapper,
            "param_scheduler": lambda v, p: self.each(v, p, mtv.PARAM_SCHEDULERS),
            "default_hooks": self.default_hooks,
            "custom_hooks": lambda v, p: self.each(v, p, mtv.HOOKS),
            "visualizer": lambda v, p: self.typed(v, p, mtv.VISUALIZERS),
            "log_processor": lambda v, p: self.typed(
                v, p, mtv.LOG_PROCESSORS, default_type="LogProcessor"
            ),
            "env_cfg": self.env_cfg,
            "randomness": lambda v, p: self.plain(
                v, p, accepted_keys(_set_randomness()), "randomness"
            ),
            "auto_scale_lr": lambda v, p: self.plain(
                v, p, {"enable", "base_batch_size"}, "auto_scale_lr"
            ),
        }
        for key, handler in handlers.items():
            if key in cfg and cfg[key] is not None:
                handler(cfg[key], key)

    def plain(self, value: Any, path: str, valid: Iterable[str] | None, owner: str) -> None:
        if isinstance(value, Mapping):
            self.keys(value, path, valid, owner)

    def each(self, value: Any, path: str, registry: Any) -> None:
        if isinstance(value, list | tuple):
            for index, item in enumerate(value):
                self.typed(item, f"{path}[{index}]", registry)
        else:
            self.typed(value, path, registry)

    # -- dicts with a type

    def typed(
        self,
        value: Any,
        path: str,
        registry: Any,
        default_type: Any = None,
        resolver: Resolver | None = None,
        also: Iterable[str] = (),
        certain: bool = True,
    ) -> None:
        """Check ``value`` (a ``dict(type=...)``) against its type's signature, then its
        nested configs. ``certain``: the registry is surely the right one, so a type
        it does not know is an error too."""
        if not isinstance(value, Mapping):
            return
        type_ = value.get("type", default_type)
        if type_ is None:
            return
        target = type_ if not isinstance(type_, str) else None
        if target is None:
            target = resolver(type_) if resolver is not None else _registry_lookup(registry, type_)
        if target is None:
            if resolver is not None:
                raise ConfigError(
                    f"{self.source_of(path)}: '{path}.type' is {type_!r}, which is no "
                    "transform of albumentations or of mtvision.data.ssd_transforms"
                )
            # A model's parts are built from MODELS or some other registry: a name that
            # no registry knows is a typo there, too.
            unknown_part = registry is mtv.MODELS and not _registered_anywhere(type_)
            if isinstance(type_, str) and (certain or unknown_part):
                close = difflib.get_close_matches(type_, _registered_names(registry), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"{self.source_of(path)}: '{path}.type' is {type_!r}, which is not in "
                    f"mtvision's or mmengine's {registry.name} registry{hint}"
                )
            return
        valid = accepted_keys(target)
        if valid is None:
            valid = _forwarded_kwargs(target, value)
        if valid is not None:
            extra = _BUILD_EXTRAS.get(registry, frozenset())
            self.keys(value, path, {*valid, *extra, *also, "type"}, _name_of(target))
        self.children(value, path, target, registry, resolver)

    def children(
        self, value: Mapping, path: str, target: Any, registry: Any, resolver: Resolver | None
    ) -> None:
        nested_types = getattr(target, "nested_config_types", {}) if inspect.isclass(target) else {}
        for key, child in value.items():
            if key in _NOT_CONFIGS or not isinstance(key, str):
                continue
            child_resolver = nested_types.get(key, resolver if resolver else None)
            child_registry = _CHILD_REGISTRIES.get(key, registry)
            # Nested types resolve for sure in the registries named by argument, or
            # through a class's resolver; elsewhere (a model's parts) an unknown name
            # may live in a registry this walk cannot know.
            certain = key in _CHILD_REGISTRIES
            if isinstance(child, list | tuple):
                items = [(f"{path}.{key}[{i}]", item) for i, item in enumerate(child)]
            elif _is_named_configs(child):  # e.g. a MultiTaskModel's heads
                items = [(f"{path}.{key}.{name}", item) for name, item in child.items()]
            else:
                items = [(f"{path}.{key}", child)]
            for child_path, item in items:
                if isinstance(item, Mapping) and "type" in item:
                    self.typed(
                        item,
                        child_path,
                        child_registry,
                        resolver=child_resolver,
                        certain=certain,
                    )

    # -- what mmengine reads without a type

    def dataloader(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            return
        if _is_loader_entries(value):  # a multi-task loop's {entry: data loader}
            for name, loader in value.items():
                self.dataloader(loader, f"{path}.{name}")
            return
        valid = set(accepted_keys(DataLoader) or ()) | _MMENGINE_LOADER_KEYS
        self.keys(value, path, valid, "a data loader")
        self.typed(value.get("dataset"), f"{path}.dataset", mtv.DATASETS)
        for key in ("sampler", "batch_sampler"):
            self.typed(value.get(key), f"{path}.{key}", mtv.DATA_SAMPLERS)
        for key in ("collate_fn", "worker_init_fn"):
            self.typed(value.get(key), f"{path}.{key}", mtv.FUNCTIONS)

    def loop(self, value: Any, path: str, stage: str) -> None:
        if not isinstance(value, Mapping):
            return
        if "type" not in value:
            from mmengine.runner import loops

            default = {
                "train": loops.EpochBasedTrainLoop
                if value.get("by_epoch", True)
                else loops.IterBasedTrainLoop,
                "val": loops.ValLoop,
                "test": loops.TestLoop,
            }[stage]
            value = {"type": default, **{k: v for k, v in value.items() if k != "by_epoch"}}
        self.typed(value, path, mtv.LOOPS)

    def evaluator(self, value: Any, path: str) -> None:
        if isinstance(value, Mapping) and "type" not in value and "metrics" not in value:
            # a multi-task loop's {entry: {head: metric or metrics}}
            for entry, heads in value.items():
                if isinstance(heads, Mapping) and "type" not in heads:
                    for head, metrics in heads.items():
                        self.each(metrics, f"{path}.{entry}.{head}", mtv.METRICS)
                else:  # the loop refuses it, saying the head level is missing
                    self.each(heads, f"{path}.{entry}", mtv.METRICS)
            return
        if isinstance(value, Mapping) and "metrics" in value:  # an Evaluator of metrics
            from mmengine.evaluator import Evaluator
            from mmengine.registry import EVALUATOR

            self.typed(value, path, EVALUATOR, default_type=Evaluator)
        else:
            self.each(value, path, mtv.METRICS)

    def optim_wrapper(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            return
        if "optimizer" not in value and "constructor" not in value:
            for name, wrapper in value.items():  # one wrapper per sub-module
                if isinstance(wrapper, Mapping):
                    self.optim_wrapper(wrapper, f"{path}.{name}")
            return
        constructor = value.get("constructor", "DefaultOptimWrapperConstructor")
        if _registry_lookup(mtv.OPTIM_WRAPPER_CONSTRUCTORS, constructor) is not _default_ctor():
            return  # a custom constructor reads what it likes
        self.typed(
            value,
            path,
            mtv.OPTIM_WRAPPERS,
            default_type="OptimWrapper",
            also=("optimizer", "constructor", "paramwise_cfg"),
        )
        optimizer = value.get("optimizer")
        if isinstance(optimizer, Mapping):
            self.typed(optimizer, f"{path}.optimizer", mtv.OPTIMIZERS)
        paramwise = value.get("paramwise_cfg")
        self.plain(paramwise, f"{path}.paramwise_cfg", _PARAMWISE_KEYS, "paramwise_cfg")
        if isinstance(paramwise, Mapping) and isinstance(paramwise.get("custom_keys"), Mapping):
            for name, multipliers in paramwise["custom_keys"].items():
                self.plain(
                    multipliers,
                    f"{path}.paramwise_cfg.custom_keys.{name}",
                    {"lr_mult", "decay_mult"},
                    "a custom_keys entry",
                )
        clip = value.get("clip_grad")
        if isinstance(clip, Mapping):
            clip_function = (
                torch.nn.utils.clip_grad_value_
                if clip.get("type") == "value"
                else torch.nn.utils.clip_grad_norm_
            )
            valid = set(accepted_keys(clip_function) or ()) - {"parameters"} | {"type"}
            self.keys(clip, f"{path}.clip_grad", valid, clip_function.__name__)

    def default_hooks(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            return
        for name, hook in value.items():
            self.typed(
                hook, f"{path}.{name}", mtv.HOOKS, default_type=_DEFAULT_HOOK_TYPES.get(name)
            )

    def env_cfg(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            return
        self.keys(value, path, _ENV_KEYS, "env_cfg")
        self.plain(value.get("mp_cfg"), f"{path}.mp_cfg", _MP_KEYS, "env_cfg.mp_cfg")


def _is_loader_entries(value: Mapping) -> bool:
    """``{entry name: data loader config}`` of mtvision's multi-task evaluation loops."""
    return (
        "dataset" not in value
        and bool(value)
        and all(isinstance(item, Mapping) and "dataset" in item for item in value.values())
    )


def _is_named_configs(value: Any) -> bool:
    """A dict without a ``type`` whose values are all configs with one (names -> parts)."""
    return (
        isinstance(value, Mapping)
        and "type" not in value
        and bool(value)
        and all(isinstance(item, Mapping) and "type" in item for item in value.values())
    )


def _forwarded_kwargs(target: Any, value: Mapping) -> frozenset[str] | None:
    """Keys of mmengine hooks whose ``**kwargs`` go somewhere this module can name."""
    from mmengine.hooks import CheckpointHook, EMAHook

    own = _parameters(target.__init__)[0] if inspect.isclass(target) else None
    if own is None:
        return None
    if inspect.isclass(target) and issubclass(target, CheckpointHook):
        # Its **kwargs go to Runner.save_checkpoint, which already gets every one of
        # its arguments from the hook: any further key fails at the first save.
        return frozenset(own)
    if inspect.isclass(target) and issubclass(target, EMAHook):
        # Its **kwargs build the averaged model: dict(type=ema_type, **kwargs).
        ema = _registry_lookup(mtv.MODELS, value.get("ema_type", "ExponentialMovingAverage"))
        ema_keys = accepted_keys(ema) if ema is not None else None
        return None if ema_keys is None else frozenset(own | ema_keys - {"model"})
    return None


def _registered_anywhere(name: str) -> bool:
    """Whether any mtvision or mmengine registry knows the type ``name``."""
    from mmengine import registry as mmengine_registry
    from mmengine.registry import Registry

    registries = [
        value
        for module in (mtv, mmengine_registry)
        for value in vars(module).values()
        if isinstance(value, Registry)
    ]
    return any(_registry_lookup(registry, name) is not None for registry in registries)


def _name_of(target: Any) -> str:
    return getattr(target, "__name__", None) or type(target).__name__


def _set_randomness() -> Any:
    from mmengine.runner import Runner

    return Runner.set_randomness


def _default_ctor() -> Any:
    from mmengine.optim import DefaultOptimWrapperConstructor

    return DefaultOptimWrapperConstructor
