"""Batching scenes into the one structure every model and trainer of the package reads.

:func:`collate` concatenates B scene dicts (:mod:`twist_lib.data.io`, usually after
augmentation by :class:`twist_lib.data.dataset.SceneDataset`) point-wise and voxelises each
scene (:func:`twist_lib.data.voxels.voxelize`). The batch dict holds torch tensors on the CPU;
N = total points, M = total voxels, B = scenes, C = feature channels (3, or 6 with xyz)::

    xyz            float32 (N, 3)  point coordinates in metres, scenes concatenated in order
    rgb            float32 (N, 3)  colour in [-1, 1]
    feats          float32 (N, C)  network input per point: rgb, then (if use_xyz_features)
                                   xyz minus the scene's mean xyz (book appendix, Backbone)
    semantic       int64   (N,)    class 0..K-1, -100 = ignored
    instance       int64   (N,)    instance id unique across the batch: each scene's ids are
                                   renumbered to 0..I_b-1 (in increasing order of the scene's
                                   ids) and shifted by the instances of the scenes before it,
                                   so the batch holds ids 0..I-1; -100 = no instance
    offset         float32 (N, 3)  offset target: mean xyz of the point's instance minus xyz
                                   (zeros where instance == -100); the scene's own ``offset``
                                   array if it has one, else computed here from xyz/instance
    offset_valid   bool    (N,)    points whose offset is supervised: the scene's own
                                   ``offset_valid`` (pseudo labels), else instance != -100
    labelled       bool    (B,)    whether each scene carries ground truth (the scene's
                                   ``labelled`` flag, default True); L^l and L^u of eq. (3)
                                   are means over the points of these / the other scenes
    batch_index    int64   (N,)    scene (0..B-1) of each point
    point_offsets  int64   (B+1,)  points of scene b are rows point_offsets[b]:point_offsets[b+1]
    voxel_coords   int32   (M, 4)  [batch, x, y, z] grid coordinates, per scene shifted so the
                                   minimum is 0 (voxel size ``voxel_size``)
    voxel_feats    float32 (M, C)  mean of ``feats`` over the points of each voxel
    p2v            int64   (N,)    row of voxel_coords each point falls into
    names          list[str]       scene names, length B
"""
from __future__ import annotations

import numpy as np
import torch

from .classes import IGNORE_INDEX
from .transforms import instance_offsets
from .voxels import VOXEL_SIZE, voxel_mean, voxelize

BATCH_KEYS = ("xyz", "rgb", "feats", "semantic", "instance", "offset", "offset_valid",
              "labelled", "batch_index", "point_offsets", "voxel_coords", "voxel_feats", "p2v",
              "names")


def point_features(scene: dict, use_xyz_features: bool = False) -> np.ndarray:
    """Network input features of one scene: rgb, plus xyz relative to the scene's mean if asked."""
    rgb = np.asarray(scene["rgb"], dtype=np.float32)
    if not use_xyz_features:
        return rgb
    xyz = np.asarray(scene["xyz"], dtype=np.float64)
    return np.concatenate([rgb, (xyz - xyz.mean(axis=0)).astype(np.float32)], axis=1)


def _renumber_instances(instance: np.ndarray, first_id: int) -> tuple[np.ndarray, int]:
    """Map a scene's instance ids to first_id, first_id+1, ...; return them and the next free id."""
    out = np.full(len(instance), IGNORE_INDEX, dtype=np.int64)
    valid = instance != IGNORE_INDEX
    ids, inverse = np.unique(instance[valid], return_inverse=True)
    out[valid] = inverse.reshape(-1) + first_id
    return out, first_id + len(ids)


def collate(scenes: list[dict], voxel_size: float = VOXEL_SIZE, use_xyz_features: bool = False) -> dict:
    """Concatenate scene dicts into the batch dict documented in this module.

    Parameters
    ----------
    scenes : list of scene dicts
        Each with ``xyz``, ``rgb``, ``semantic``, ``instance``, ``name`` and optionally ``offset``.
    voxel_size : float
        Voxel edge in metres (paper Sec. 5.1: 2 cm).
    use_xyz_features : bool
        Append centred xyz to the rgb input features.
    """
    if len(scenes) == 0:
        raise ValueError("collate: got an empty list of scenes")
    parts = {k: [] for k in ("xyz", "rgb", "feats", "semantic", "instance", "offset",
                             "offset_valid", "batch_index", "voxel_coords", "p2v")}
    point_offsets, next_instance, num_voxels = [0], 0, 0
    for b, scene in enumerate(scenes):
        xyz = np.asarray(scene["xyz"], dtype=np.float32)
        n = len(xyz)
        instance = np.asarray(scene["instance"], dtype=np.int64)
        offset = scene.get("offset")
        if offset is None:
            offset = instance_offsets(xyz, instance)
        coords, p2v, _ = voxelize(xyz, voxel_size)
        global_instance, next_instance = _renumber_instances(instance, next_instance)
        parts["xyz"].append(xyz)
        parts["rgb"].append(np.asarray(scene["rgb"], dtype=np.float32))
        parts["feats"].append(point_features(scene, use_xyz_features))
        parts["semantic"].append(np.asarray(scene["semantic"], dtype=np.int64))
        parts["instance"].append(global_instance)
        parts["offset"].append(np.asarray(offset, dtype=np.float32))
        valid = scene.get("offset_valid")
        parts["offset_valid"].append(instance != IGNORE_INDEX if valid is None
                                     else np.asarray(valid, dtype=bool))
        parts["batch_index"].append(np.full(n, b, dtype=np.int64))
        parts["voxel_coords"].append(
            np.concatenate([np.full((len(coords), 1), b, dtype=np.int32), coords], axis=1))
        parts["p2v"].append(p2v + num_voxels)
        num_voxels += len(coords)
        point_offsets.append(point_offsets[-1] + n)
    batch = {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}
    batch["point_offsets"] = torch.tensor(point_offsets, dtype=torch.int64)
    batch["voxel_feats"] = voxel_mean(batch["feats"], batch["p2v"], num_voxels)
    batch["labelled"] = torch.tensor([bool(s.get("labelled", True)) for s in scenes])
    batch["names"] = [str(s.get("name", "")) for s in scenes]
    return batch


def to_device(batch: dict, device) -> dict:
    """The batch dict with every tensor moved to ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}
