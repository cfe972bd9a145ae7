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
