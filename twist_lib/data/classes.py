"""Class lists of the datasets the package knows (paper Sec. 5.1; the book's appendix, Conventions:
"Data formats").

Every prepared dataset stores its own class list in ``meta.json``; these constants are what the
preparers write there. The *benchmark id* of a class is the integer the official evaluation
files use for it (ScanNet: the nyu40 id; S3DIS and the synthetic benchmark: semantic index + 1),
so that ``benchmark_id * 1000 + instance + 1`` is the ScanNet ground-truth encoding for all three.
"""

IGNORE_INDEX = -100

# ScanNet v2, 20 semantic classes (the benchmark's VALID_CLASS_IDS), in the order of their nyu40 ids.
SCANNET_CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
SCANNET_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
# 18 instance classes: all but wall (0) and floor (1).
SCANNET_INSTANCE_CLASSES = tuple(range(2, 20))

S3DIS_CLASS_NAMES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "chair", "table", "bookcase",
    "sofa", "board", "clutter",
)
S3DIS_INSTANCE_CLASSES = tuple(range(13))  # all 13 are instance classes (book appendix, Data)
