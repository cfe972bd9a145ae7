"""The procedural synthetic indoor benchmark: rooms with walls, a floor and furniture of eight
instance classes built from parametric parts, scanned with a scanner's habits (uniform surface
density, hidden faces, holes, noise). It is the package's default dataset, small enough to learn
and test the whole method on a laptop CPU.

- :mod:`.classes`    class list (wall, floor + 8 instance classes)
- :mod:`.materials`  the shared colour palette
- :mod:`.parts`      boxes / cylinders and surface sampling
- :mod:`.furniture`  one builder per class
- :mod:`.room`       room layout and placement recipes
- :mod:`.scene`      :func:`generate_scene`
- :mod:`.benchmark`  :func:`generate_dataset` (scenes/, gt/, meta.json)

The hard variant (``size="hard"``, profile ``hard``; its knobs: :class:`.scene.HardPreset`)
has seventeen classes with ScanNet-like long-tailed frequencies, several templates per class with
random proportions, touching objects, unannotated clutter, occlusion by a few viewpoints, uneven
density and per-scene colour shifts, so that its Sup-only curve keeps rising up to 100 % labels:

- :mod:`.hard_furniture`  the seven new classes, :func:`~.hard_furniture.stretch`
- :mod:`.hard_templates`  more templates for the eight classes above
- :mod:`.hard_room`       room types with long-tailed frequencies, touching placements, clutter
- :mod:`.hard`            the scan from a few viewpoints (occlusion, density, colour)
"""
from . import hard  # noqa: F401  (registers the hard variant's scene generator)
from .benchmark import generate_dataset
from .classes import (HARD_CLASS_NAMES, HARD_INSTANCE_CLASSES, SYNTHETIC_CLASS_NAMES,
                      SYNTHETIC_INSTANCE_CLASSES)
from .scene import SIZES, generate_scene

__all__ = ["generate_scene", "generate_dataset", "SYNTHETIC_CLASS_NAMES", "SYNTHETIC_INSTANCE_CLASSES",
           "HARD_CLASS_NAMES", "HARD_INSTANCE_CLASSES", "SIZES"]
