"""twist_lib: the package behind the TWIST book (Chu et al., CVPR 2022).

Modules (each small, each explained in a chapter of the book):

- :mod:`twist_lib.data`           the one scene/batch convention (ignore = -100,
  :data:`twist_lib.data.IGNORE_INDEX`), datasets, voxels, augmentations, splits, pseudo-label files
- :mod:`twist_lib.synthetic`      the procedural synthetic indoor benchmark
- :mod:`twist_lib.prepare`        ScanNet v2 / S3DIS raw files -> prepared scenes
- :mod:`twist_lib.sparse`         sparse convolution: pure-PyTorch, MinkowskiEngine or spconv backend
- :mod:`twist_lib.network`        Phi, the sparse U-Net; :mod:`twist_lib.losses` its losses (eqs. 1-4)
- :mod:`twist_lib.clustering`     module A's semantic-guided BFS (:mod:`twist_lib.neighbour_graph`)
- :mod:`twist_lib.proposals`      Phi's outputs -> module A -> module B, one step for every caller
- :mod:`twist_lib.recorrection`   module B, Psi (eq. 5); :mod:`twist_lib.object_samples` its samples;
  :mod:`twist_lib.psi_training` how it trains
- :mod:`twist_lib.pseudo_labels`  module C (eqs. 6-8)
- :mod:`twist_lib.trainer`, :mod:`twist_lib.self_training`  Sup-only training and TWIST's rounds
- :mod:`twist_lib.checkpoints`    weights, run folders' checkpoints; :mod:`twist_lib.atomic` files
- :mod:`twist_lib.inference`, :mod:`twist_lib.predict`  instances of a trained model
- :mod:`twist_lib.evaluation`     the ScanNet instance benchmark protocol, mIoU, pseudo-label quality
- :mod:`twist_lib.pipeline`, :mod:`twist_lib.runs`  the pipeline job and its run folders
- :mod:`twist_lib.viz`            plotly views of scenes
- :mod:`twist_lib.book`           the book's pages' helpers and runner (the core never imports it)
"""
__version__ = "0.1.0"
