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
"""
from .benchmark import generate_dataset
from .classes import SYNTHETIC_CLASS_NAMES, SYNTHETIC_INSTANCE_CLASSES
from .scene import SIZES, generate_scene

__all__ = ["generate_scene", "generate_dataset", "SYNTHETIC_CLASS_NAMES", "SYNTHETIC_INSTANCE_CLASSES",
           "SIZES"]
