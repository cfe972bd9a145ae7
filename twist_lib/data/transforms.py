"""Scene augmentations for training the network Phi, and the offset targets computed after them.

The paper (Sec. 5.1) uses the standard VoteNet scene augmentation; as in PointGroup's code (the
book's appendix, Conventions: "Training schedule and scene augmentation") that is: random flip of
x, rotation about z, a small scale/jitter matrix, elastic distortion, a crop to at most 250k
points, and colour noise. Each augmentation here is a small callable class
``t(scene, rng) -> scene`` that

* takes a scene dict (:mod:`twist_lib.data.io`) and a :class:`numpy.random.Generator`, draws all
  its randomness from that generator (same generator state -> identical output), and
* returns a new dict, never modifying the input (a cached scene stays intact).

Points are never reordered. Only :class:`RandomCrop` removes points, and it removes the same rows
from every *per-point array* of the scene: every numpy array whose first dimension equals the
number of points (``xyz``, ``rgb``, ``semantic``, ``instance`` and any extra per-point array a
caller adds), so labels stay aligned with their points.

Offset targets (:func:`instance_offsets`) depend on the final coordinates, so they are computed
after augmentation (by :class:`twist_lib.data.dataset.SceneDataset` or
:func:`twist_lib.data.batch.collate`), never stored on disk.

Pseudo-labelled scenes (paper Sec. 4.3) carry a per-point *target centre* ``center`` (N, 3), the
point plus its pseudo offset (eq. 8: the proposal's mean-shift centre of eq. 7), which cannot be
recomputed from instance ids. Every geometric augmentation moves ``center`` exactly as it moves
the points (:data:`COORDINATE_KEYS`), so ``center - xyz`` after augmentation is the pseudo offset
of the augmented scene.

Difference from PointGroup: PointGroup computes its offset targets and float coordinates on the
points before the elastic distortion and voxelises the distorted ones; here the distorted
coordinates are the scene's coordinates, so ``xyz + offset`` is exactly the mean of the
instance's points the network sees.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import uniform_filter1d

from .classes import IGNORE_INDEX
from .voxels import voxel_mean

MAX_POINTS = 250_000  # PointGroup crops to <= 250k points (book appendix, Training schedule)
COORDINATE_KEYS = ("xyz", "center")  # per-point positions that geometric augmentations move


def per_point_keys(scene: dict) -> list[str]:
    """Names of the scene's per-point arrays: numpy arrays with ``len(scene['xyz'])`` rows."""
    n = len(scene["xyz"])
    return [k for k, v in scene.items() if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n]


def select_points(scene: dict, keep) -> dict:
    """A new scene with only the points ``keep`` (boolean mask or indices) of every per-point array."""
    out = dict(scene)
    for key in per_point_keys(scene):
        out[key] = scene[key][keep]
    return out


def _move_coordinates(scene: dict, move) -> dict:
    """A new scene whose :data:`COORDINATE_KEYS` arrays are ``move(float64 array)``, as float32."""
    out = dict(scene)
    for key in COORDINATE_KEYS:
        if key in scene:
            out[key] = np.asarray(move(scene[key].astype(np.float64)), dtype=np.float32)
    return out


class LinearTransform:
    """Base of the augmentations that multiply the coordinates by a 3x3 matrix: ``xyz @ m``."""

    def matrix(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        m = self.matrix(rng)
        return _move_coordinates(scene, lambda xyz: xyz @ m)


class RandomJitterMatrix(LinearTransform):
    """PointGroup's "jitter": ``xyz @ (I + sigma * G)`` with G a 3x3 standard normal matrix — a
    small random scale and shear (sigma = 0.1 in PointGroup)."""

    def __init__(self, sigma: float = 0.1):
        self.sigma = float(sigma)

    def matrix(self, rng):
        return np.eye(3) + rng.standard_normal((3, 3)) * self.sigma

    def __repr__(self):
        return f"RandomJitterMatrix(sigma={self.sigma})"


class RandomFlipX(LinearTransform):
    """Negate x with probability ``p`` (0.5 in PointGroup)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def matrix(self, rng):
        return np.diag([-1.0 if rng.random() < self.p else 1.0, 1.0, 1.0])

    def __repr__(self):
        return f"RandomFlipX(p={self.p})"


class RandomRotateZ(LinearTransform):
    """Rotate about the z axis by an angle uniform in ``[0, max_angle)`` (PointGroup: a full turn)."""

    def __init__(self, max_angle: float = 2 * math.pi):
        self.max_angle = float(max_angle)

    def matrix(self, rng):
        theta = rng.random() * self.max_angle
        c, s = math.cos(theta), math.sin(theta)
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def __repr__(self):
        return f"RandomRotateZ(max_angle={self.max_angle:.4f})"


class ElasticDistortion:
    """PointGroup's (SparseConvNet's) elastic distortion, in metres.

    Three grids of standard normal noise (one per axis) with nodes ``spacing`` apart over the
    scene's bounding box are smoothed by a 3-wide box filter twice along each axis (zero padding),
    trilinearly interpolated at every point, and added as a displacement times ``magnitude``.

    PointGroup calls ``elastic(x, gran, mag)`` on coordinates in voxels (scale 50) with
    (gran, mag) = (6, 40) then (20, 160), and lays its noise nodes ``2 * gran`` apart; in metres
    that is ``ElasticDistortion(0.24, 0.8)`` then ``ElasticDistortion(0.8, 3.2)``
    (see :func:`default_train_transforms`).
    """

    def __init__(self, spacing: float, magnitude: float):
        if not spacing > 0:
            raise ValueError(f"ElasticDistortion: spacing must be positive, got {spacing}")
        self.spacing = float(spacing)
        self.magnitude = float(magnitude)

    def field(self, xyz: np.ndarray, rng: np.random.Generator) -> RegularGridInterpolator:
        """The smooth random displacement field (before ``magnitude``) over ``xyz``'s box."""
        lo = xyz.min(axis=0) - self.spacing
        shape = np.floor((xyz.max(axis=0) - lo) / self.spacing).astype(np.int64) + 2
        noise = rng.standard_normal((3, *shape)).astype(np.float32)
        for _ in range(2):
            for axis in (1, 2, 3):
                noise = uniform_filter1d(noise, size=3, axis=axis, mode="constant", cval=0.0)
        axes = [lo[d] + self.spacing * np.arange(shape[d]) for d in range(3)]
        return RegularGridInterpolator(axes, np.moveaxis(noise, 0, -1), bounds_error=False,
                                       fill_value=0.0)

    def displacement(self, xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The displacement field (before ``magnitude``) at the points ``xyz``."""
        return self.field(xyz, rng)(xyz)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        field = self.field(scene["xyz"].astype(np.float64), rng)
        return _move_coordinates(scene, lambda p: p + field(p) * self.magnitude)

    def __repr__(self):
        return f"ElasticDistortion(spacing={self.spacing}, magnitude={self.magnitude})"


class RandomCrop:
    """Keep the points inside an axis-aligned box in x-y so that at most ``max_points`` remain.

    PointGroup's crop: a square box of side ``initial_size`` (512 voxels = 10.24 m) is placed at a
    random position inside the scene's x-y extent and shrunk by ``step`` (32 voxels = 0.64 m),
    re-placed each time, until it holds at most ``max_points`` points; z is not cut. The crop is
    therefore spatially contiguous: a point is kept iff it lies in the box. Difference from
    PointGroup: the box is placed uniformly among the positions that contain a randomly drawn
    anchor point (drawn once), so it can never come out empty. If even a box of side ``step``
    holds too many points, the ``max_points`` points nearest the anchor (Chebyshev distance in
    x-y) are kept. Scenes with at most ``max_points`` points are returned unchanged.
    """

    def __init__(self, max_points: int = MAX_POINTS, initial_size: float = 10.24, step: float = 0.64):
        if max_points < 1 or not step > 0:
            raise ValueError(f"RandomCrop: need max_points >= 1 and step > 0, got {max_points}, {step}")
        self.max_points = int(max_points)
        self.initial_size = float(initial_size)
        self.step = float(step)

    def _box(self, rel, room_lo, room_hi, size, rng):
        """Mask of the points inside a random box of side ``size`` containing the anchor;
        ``rel`` = x-y of the points relative to the anchor, ``room_*`` = scene extent, idem."""
        # The box is [-t*size, (1-t)*size] around the anchor; t in [t_lo, t_hi] keeps it inside
        # the scene where the scene is wider than the box (else the box covers the scene).
        t_lo = np.maximum(0.0, 1.0 - room_hi / size)
        t_hi = np.minimum(1.0, -room_lo / size)
        lo, hi = np.minimum(t_lo, t_hi), np.maximum(t_lo, t_hi)
        t = lo + (hi - lo) * rng.random(2)
        return np.all((rel >= -t * size) & (rel <= (1.0 - t) * size), axis=1)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        xy = scene["xyz"][:, :2].astype(np.float64)
        if len(xy) <= self.max_points:
            return scene
        rel = xy - xy[rng.integers(len(xy))]
        room_lo, room_hi = rel.min(axis=0), rel.max(axis=0)
        size = self.initial_size
        keep = self._box(rel, room_lo, room_hi, size, rng)
        while keep.sum() > self.max_points and size > self.step:
            size = max(size - self.step, self.step)
            keep = self._box(rel, room_lo, room_hi, size, rng)
        if keep.sum() > self.max_points:
            inside = np.flatnonzero(keep)
            nearest = np.argsort(np.abs(rel[inside]).max(axis=1), kind="stable")[: self.max_points]
            keep = np.zeros(len(xy), dtype=bool)
            keep[inside[nearest]] = True
        return select_points(scene, keep)

    def __repr__(self):
        return f"RandomCrop(max_points={self.max_points}, initial_size={self.initial_size}, step={self.step})"


class ColourShift:
    """PointGroup's colour noise: add one N(0, sigma^2) shift per channel to the whole scene
    (``feat += randn(3) * 0.1``), then clip to the colour range [-1, 1]."""

    def __init__(self, sigma: float = 0.1):
        self.sigma = float(sigma)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        shift = rng.standard_normal(3) * self.sigma
        rgb = np.clip(scene["rgb"].astype(np.float64) + shift, -1.0, 1.0)
        return {**scene, "rgb": rgb.astype(np.float32)}

    def __repr__(self):
        return f"ColourShift(sigma={self.sigma})"


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        for t in self.transforms:
            scene = t(scene, rng)
        return scene

    def __repr__(self):
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


def default_train_transforms(max_points: int = MAX_POINTS, elastic: bool = True, flip: bool = True,
                             rotate: bool = True, jitter_sigma: float = 0.1,
                             colour_sigma: float = 0.1) -> Compose:
    """PointGroup's training augmentation, in its order (paper Sec. 5.1; book appendix, Training
    schedule and scene augmentation).

    jitter matrix -> flip x -> rotation about z -> elastic (fine, then coarse) -> crop to
    ``max_points`` -> colour shift. ``jitter_sigma`` / ``colour_sigma`` = 0 disables those steps.
    """
    steps = []
    if jitter_sigma > 0:
        steps.append(RandomJitterMatrix(jitter_sigma))
    if flip:
        steps.append(RandomFlipX())
    if rotate:
        steps.append(RandomRotateZ())
    if elastic:
        steps += [ElasticDistortion(0.24, 0.8), ElasticDistortion(0.8, 3.2)]
    steps.append(RandomCrop(max_points))
    if colour_sigma > 0:
        steps.append(ColourShift(colour_sigma))
    return Compose(steps)


def _instance_centers64(xyz64: np.ndarray, instance) -> np.ndarray:
    instance = np.asarray(instance, dtype=np.int64)
    if instance.shape != (len(xyz64),):
        raise ValueError(f"instance must have shape ({len(xyz64)},), got {instance.shape}")
    centers = xyz64.copy()
    valid = instance != IGNORE_INDEX
    if valid.any():
        ids, inverse = np.unique(instance[valid], return_inverse=True)
        centers[valid] = voxel_mean(xyz64[valid], inverse, len(ids))[inverse]
    return centers


def instance_centers(xyz, instance) -> np.ndarray:
    """Per point, the mean xyz of its instance's points (PointGroup's instance centre); points
    with instance == -100 get their own coordinates. float32 (N, 3)."""
    return _instance_centers64(np.asarray(xyz, dtype=np.float64), instance).astype(np.float32)


def instance_offsets(xyz, instance) -> np.ndarray:
    """Offset targets of the offset head (eq. 2): ``center_of_instance - xyz`` per point, zeros
    where instance == -100. float32 (N, 3). Compute them after augmentation."""
    xyz64 = np.asarray(xyz, dtype=np.float64)
    return (_instance_centers64(xyz64, instance) - xyz64).astype(np.float32)
