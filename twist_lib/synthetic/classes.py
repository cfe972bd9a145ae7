"""Class list of the synthetic benchmark (benchmark id = semantic index + 1; the book's appendix,
Conventions: "The synthetic benchmark and the profiles").

Like ScanNet, wall and floor are semantic classes without instances; the other eight are
instance classes. The confusable pairs are deliberate: chair / sofa (seats, backs, fabric),
table / desk (tops on legs, wood), cabinet / bookshelf (wooden boxes against a wall).
"""

SYNTHETIC_CLASS_NAMES = (
    "wall", "floor", "chair", "sofa", "table", "desk", "cabinet", "bookshelf", "bed", "lamp",
)
WALL, FLOOR, CHAIR, SOFA, TABLE, DESK, CABINET, BOOKSHELF, BED, LAMP = range(len(SYNTHETIC_CLASS_NAMES))
SYNTHETIC_INSTANCE_CLASSES = tuple(range(CHAIR, len(SYNTHETIC_CLASS_NAMES)))

# The "hard" variant (:mod:`twist_lib.synthetic.hard`) keeps these ten classes at the same
# indices and adds seven, seventeen in all like ScanNet's twenty minus its thin wall-mounted ones
# (window, picture, curtain): rare kitchen and bathroom classes give its long tail, and
# ``otherfurniture`` is ScanNet's catch-all (stools, bins, crates, carts, racks).
HARD_CLASS_NAMES = SYNTHETIC_CLASS_NAMES + (
    "door", "refrigerator", "counter", "toilet", "sink", "bathtub", "otherfurniture",
)
DOOR, REFRIGERATOR, COUNTER, TOILET, SINK, BATHTUB, OTHERFURNITURE = range(
    len(SYNTHETIC_CLASS_NAMES), len(HARD_CLASS_NAMES))
HARD_INSTANCE_CLASSES = tuple(range(CHAIR, len(HARD_CLASS_NAMES)))
