"""Build-time model toolchain: train, prune, distil, quantise, export and report the shipped models.

Only :mod:`gateway.toolchain.recipe` is imported eagerly; TensorFlow is imported lazily by the build
steps, so the runtime gateway never needs it (install the ``[train]`` extra to build models).
"""

from gateway.toolchain.recipe import ENTRY_POINT_GROUP, VARIANTS, Dataset, Recipe

__all__ = ["ENTRY_POINT_GROUP", "VARIANTS", "Dataset", "Recipe"]
