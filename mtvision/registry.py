"""mmengine registries of mtvision.

Children of mmengine's root registries, so mmengine's own components
(optimizers, schedulers, hooks, loops, samplers) stay reachable from configs
with ``default_scope='mtvision'``. ``locations`` lists the modules that
register into each registry: mmengine imports them on first use, so a config
never fails with ``KeyError`` because a module was not imported.
"""

from mmengine import registry as mmengine_registry
from mmengine.registry import Registry

MODELS = Registry(
    "model",
    parent=mmengine_registry.MODELS,
    scope="mtvision",
    locations=["mtvision.backbones", "mtvision.heads", "mtvision.models"],
)
DATASETS = Registry(
    "dataset", parent=mmengine_registry.DATASETS, scope="mtvision", locations=["mtvision.data"]
)
TRANSFORMS = Registry(
    "transform", parent=mmengine_registry.TRANSFORMS, scope="mtvision", locations=["mtvision.data"]
)
FUNCTIONS = Registry(
    "function", parent=mmengine_registry.FUNCTIONS, scope="mtvision", locations=["mtvision.data"]
)
DATA_SAMPLERS = Registry(
    "data sampler",
    parent=mmengine_registry.DATA_SAMPLERS,
    scope="mtvision",
    locations=["mtvision.data", "mtvision.engine"],
)
METRICS = Registry(
    "metric", parent=mmengine_registry.METRICS, scope="mtvision", locations=["mtvision.evaluation"]
)
HOOKS = Registry(
    "hook",
    parent=mmengine_registry.HOOKS,
    scope="mtvision",
    locations=["mtvision.engine"],
)
RUNNERS = Registry(
    "runner", parent=mmengine_registry.RUNNERS, scope="mtvision", locations=["mtvision.engine"]
)

LOOPS = Registry(
    "loop", parent=mmengine_registry.LOOPS, scope="mtvision", locations=["mtvision.engine"]
)

# Registries mtvision adds nothing to. They exist so that mmengine, resolving
# e.g. `optimizer=dict(type="SGD")` under `default_scope="mtvision"`, finds a
# child registry for the scope and falls back to its own entries instead of
# logging "Failed to search registry with scope 'mtvision'" on every build.
LOG_PROCESSORS = Registry(
    "log_processor", parent=mmengine_registry.LOG_PROCESSORS, scope="mtvision"
)
MODEL_WRAPPERS = Registry(
    "model_wrapper", parent=mmengine_registry.MODEL_WRAPPERS, scope="mtvision"
)
OPTIMIZERS = Registry("optimizer", parent=mmengine_registry.OPTIMIZERS, scope="mtvision")
OPTIM_WRAPPERS = Registry(
    "optim_wrapper", parent=mmengine_registry.OPTIM_WRAPPERS, scope="mtvision"
)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor",
    parent=mmengine_registry.OPTIM_WRAPPER_CONSTRUCTORS,
    scope="mtvision",
)
PARAM_SCHEDULERS = Registry(
    "parameter scheduler", parent=mmengine_registry.PARAM_SCHEDULERS, scope="mtvision"
)
VISBACKENDS = Registry("vis_backend", parent=mmengine_registry.VISBACKENDS, scope="mtvision")
VISUALIZERS = Registry("visualizer", parent=mmengine_registry.VISUALIZERS, scope="mtvision")
# mtvision.engine replaces mmengine's "Pretrained" initializer (its weight loading
# accepts what every mtvision loader does); the location imports it on first use.
WEIGHT_INITIALIZERS = Registry(
    "weight initializer",
    parent=mmengine_registry.WEIGHT_INITIALIZERS,
    scope="mtvision",
    locations=["mtvision.engine"],
)
