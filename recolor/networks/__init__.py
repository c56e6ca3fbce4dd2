"""Generators and critics, one file per paper architecture; shared blocks live in ``blocks``.

Importing this package imports every module in it, so each network file's ``register_model``
calls run: a new network file registers its models with no edit elsewhere.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
