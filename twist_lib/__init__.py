"""twist_lib: the package behind the TWIST book (Chu et al., CVPR 2022).

Modules (each small, each explained in a chapter of the book):

- :mod:`twist_lib.data`        the one scene/batch convention, datasets, voxels, augmentations, splits
- :mod:`twist_lib.synthetic`   the procedural synthetic indoor benchmark
- :mod:`twist_lib.prepare`     ScanNet v2 / S3DIS raw files -> prepared scenes
- :mod:`twist_lib.sparse`      sparse convolution: MinkowskiEngine or pure-PyTorch backend
- :mod:`twist_lib.clustering`  module A, semantic-guided BFS proposals
- :mod:`twist_lib.evaluation`  the ScanNet instance benchmark protocol, mIoU, pseudo-label quality
- :mod:`twist_lib.viz`         plotly views of scenes
"""
__version__ = "0.1.0"
IGNORE_INDEX = -100
