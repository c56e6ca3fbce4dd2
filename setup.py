"""Package discovery; everything else is in pyproject.toml.

Every package under recolor/ is found (a list written by hand once left recolor.evaluation out of
the wheel), plus recolor.weights, which pyproject.toml maps to the weights/ folder: its find
directive cannot add a mapped package to what it finds.
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["recolor", "recolor.*"]), "recolor.weights"])
