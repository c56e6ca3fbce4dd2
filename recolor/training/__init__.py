"""Training recipes. Importing this package imports every module in it, so each recipe file's
``attach_recipe`` calls give the registered models (``recolor.networks``) their recipes: a new
recipe file needs no edit elsewhere."""
import importlib
import pkgutil

from .. import networks  # noqa: F401  (registers the architectures the recipes attach to)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
