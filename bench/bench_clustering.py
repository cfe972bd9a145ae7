"""Speed of module A's clustering (twist_lib.clustering.semantic_bfs) on a realistic scene.

A ScanNet-sized scene of 150k points: 40 % wall/floor (ignored classes), the rest shifted object
points p + o_hat piled up around ~100 object centres (per-object spread 1-4 cm, a few cm more for
the 15 % of points with poor offsets) with 10 % semantic noise over 18 classes. PointGroup's
parameters (book appendix, Module A clustering): r = 0.03 m, min 50 points. Prints the time of the
CPU path (NumPy in, scipy components), the torch path on the CPU and on CUDA when there is one, and
a brute-force O(N^2) BFS on a small subset for comparison (also checks that all agree there).

``--scaling`` instead times module A against point count on uniformly sampled surfaces
(:func:`surface_patches`: 2 cm mean spacing, 18 classes in 40 cm patches, all foreground,
r = 3 cm, >= 50 points) beside a plain scipy baseline (:func:`kdtree_baseline`: cKDTree
``query_pairs``, same-class pairs, ``connected_components``, size filter), asserting that both
give the same sets of points per proposal (:func:`module_a_scaling`, used by ``bench/run.py``).

    python bench/bench_clustering.py [--points 150000] [--brute 3000] [--threads 1]
    python bench/bench_clustering.py --scaling [--sizes 10000 40000 160000 250000]
"""
from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from twist_lib.clustering import semantic_bfs

RADIUS, MIN_POINTS, IGNORE = 0.03, 50, (0, 1)
SURFACE_RADIUS = 0.03


def realistic_scene(n_points: int, n_objects: int = 100, n_classes: int = 20, seed: int = 0):
    """Shifted coordinates and predicted classes of a synthetic 8 x 8 x 2.5 m room."""
    rng = np.random.default_rng(seed)
    n_bg = int(0.4 * n_points)
    bg = rng.uniform([0, 0, 0], [8, 8, 2.5], (n_bg, 3))
    floor = rng.random(n_bg) < 0.5
    bg[floor, 2] = 0.0
    bg[~floor, rng.integers(0, 2)] = 0.0                  # wall points on one side wall
    bg_cls = np.where(floor, 1, 0)
    centres = rng.uniform([0.5, 0.5, 0.2], [7.5, 7.5, 1.5], (n_objects, 3))
    obj_cls = rng.integers(2, n_classes, n_objects)
    sizes = rng.lognormal(0, 0.8, n_objects)
    n_fg = n_points - n_bg
    obj = rng.choice(n_objects, n_fg, p=sizes / sizes.sum())
    spread = rng.uniform(0.01, 0.04, n_objects)[obj]
    spread = np.where(rng.random(n_fg) < 0.15, spread + rng.uniform(0.02, 0.1, n_fg), spread)
    fg = centres[obj] + rng.normal(size=(n_fg, 3)) * spread[:, None]
    fg_cls = np.where(rng.random(n_fg) < 0.9, obj_cls[obj], rng.integers(2, n_classes, n_fg))
    xyz = np.concatenate([bg, fg]).astype(np.float32)
    cls = np.concatenate([bg_cls, fg_cls]).astype(np.int64)
    perm = rng.permutation(n_points)
    return xyz[perm], cls[perm]


def brute_force_bfs(xyz, cls, radius, min_points, ignore):
    """Queue-based BFS over the dense same-class d^2 < r^2 adjacency matrix (O(N^2))."""
    p = xyz.astype(np.float64)
    ok = (cls >= 0) & ~np.isin(cls, ignore)
    ids, seen, next_id = np.full(len(p), -1), ~ok, 0
    for i in np.nonzero(ok)[0]:
        if seen[i]:
            continue
        seen[i], queue, members = True, collections.deque([i]), [i]
        while queue:
            d = p - p[queue.popleft()]
            near = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2] < radius ** 2)
            new = np.nonzero(near & (cls == cls[i]) & ~seen)[0]
            seen[new] = True
            queue.extend(new)
            members.extend(new)
        if len(members) >= min_points:
            ids[members], next_id = next_id, next_id + 1
    return ids


def surface_patches(n_points: int, n_classes: int = 18, spacing: float = 0.02,
                    patch: float = 0.4, seed: int = 0):
    """``n_points`` uniformly sampled on a flat square surface (+-2 mm of z noise) at a mean
    spacing of ``spacing`` (one point per ``spacing^2``), cut into ``patch``-sized squares each
    of a random one of ``n_classes`` classes; all points are foreground."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(n_points) * spacing
    xy = rng.uniform(0, side, (n_points, 2))
    xyz = np.c_[xy, rng.uniform(-0.002, 0.002, n_points)].astype(np.float32)
    cell = np.floor(xy / patch).astype(np.int64)
    per_row = int(np.ceil(side / patch))
    patch_cls = rng.integers(0, n_classes, per_row * per_row)
    return xyz, patch_cls[cell[:, 0] * per_row + cell[:, 1]]


def kdtree_baseline(xyz, cls, radius: float, min_points: int):
    """The plain scipy clustering: cKDTree pairs within ``radius`` (d <= r), same-class pairs
    kept, connected components, components under ``min_points`` dropped. Returns a component
    label per point (-1 = dropped), not numbered like :func:`semantic_bfs`."""
    p = np.asarray(xyz, dtype=np.float64)
    pairs = cKDTree(p).query_pairs(radius, output_type="ndarray")
    pairs = pairs[cls[pairs[:, 0]] == cls[pairs[:, 1]]]
    n = len(p)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    return np.where(np.bincount(labels)[labels] >= min_points, labels, -1)


def same_partition(a, b) -> bool:
    """Whether two labellings (-1 = no proposal) group the points into the same sets."""
    a, b = np.asarray(a), np.asarray(b)
    if not np.array_equal(a < 0, b < 0):
        return False
    a, b = a[a >= 0], b[b >= 0]
    pairs = np.unique(np.c_[a, b], axis=0)          # a partition match is a bijection a <-> b
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def module_a_scaling(sizes=(10_000, 40_000, 160_000, 250_000), repeats: int = 3):
    """Time :func:`semantic_bfs` and :func:`kdtree_baseline` on :func:`surface_patches` of each
    size, interleaved in one run (best of ``repeats`` after a warm-up), asserting that both give
    the same partition. Returns one dict per size (times in seconds)."""
    out = []
    for n in sizes:
        xyz, cls = surface_patches(n)
        ours = lambda: semantic_bfs(xyz, cls, SURFACE_RADIUS, MIN_POINTS)  # noqa: E731
        base = lambda: kdtree_baseline(xyz, cls, SURFACE_RADIUS, MIN_POINTS)  # noqa: E731
        ids, ref = ours(), base()
        assert same_partition(ids, ref), f"{n} points: semantic_bfs and the cKDTree baseline differ"
        times = {"ours": [], "base": []}
        for _ in range(repeats):                        # interleaved: same load for both
            for name, fn in (("ours", ours), ("base", base)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        out.append(dict(points=n, proposals=int(ids.max()) + 1, semantic_bfs_s=min(times["ours"]),
                        baseline_s=min(times["base"])))
    return out


def best_time(fn, repeats: int):
    """Smallest wall time of ``repeats`` calls (after one warm-up call) and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=150_000)
    parser.add_argument("--brute", type=int, default=3000, help="points for the O(N^2) run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (with other processes busy on the cores, more "
                             "than one thread can be 100x slower: OpenMP barriers wait)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", action="store_true",
                        help="module A vs the cKDTree baseline on surfaces of --sizes points")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 160_000, 250_000])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.scaling:
        rows = module_a_scaling(args.sizes, args.repeats)
        for r in rows:
            print(f"{r['points']:7d} points, {r['proposals']:4d} proposals: semantic_bfs "
                  f"{r['semantic_bfs_s'] * 1e3:7.1f} ms, cKDTree baseline {r['baseline_s'] * 1e3:7.1f} ms "
                  f"(same partition)")
        for a, b in zip(rows, rows[1:]):
            if b["points"] == 4 * a["points"]:
                print(f"time({b['points']}) / time({a['points']}): semantic_bfs "
                      f"{b['semantic_bfs_s'] / a['semantic_bfs_s']:.2f}, baseline "
                      f"{b['baseline_s'] / a['baseline_s']:.2f}")
        return
    xyz, cls = realistic_scene(args.points)
    run = dict(radius=RADIUS, min_points=MIN_POINTS, ignore_classes=IGNORE)
    print(f"{args.points} points, {(~np.isin(cls, IGNORE)).sum()} foreground, r={RADIUS}, "
          f"min {MIN_POINTS}, torch threads {args.threads}")

    t, ids = best_time(lambda: semantic_bfs(xyz, cls, **run), args.repeats)
    print(f"  CPU path   (numpy, scipy components): {t * 1e3:8.1f} ms, {ids.max() + 1} proposals, "
          f"{(ids >= 0).mean():.1%} of points in one")
    xyz_t, cls_t = torch.from_numpy(xyz), torch.from_numpy(cls)
    for backend in ("scipy", "torch"):
        t, ids_t = best_time(lambda: semantic_bfs(xyz_t, cls_t, **run, backend=backend),
                             args.repeats)
        assert np.array_equal(ids_t.numpy(), ids), "torch path disagrees with the CPU path"
        print(f"  torch path (CPU tensors, {backend} components): {t * 1e3:8.1f} ms")
    if torch.cuda.is_available():
        xyz_c, cls_c = xyz_t.cuda(), cls_t.cuda()
        t, ids_c = best_time(lambda: semantic_bfs(xyz_c, cls_c, **run), args.repeats)
        assert np.array_equal(ids_c.cpu().numpy(), ids), "CUDA path disagrees with the CPU path"
        print(f"  torch path (CUDA {torch.cuda.get_device_name()}): {t * 1e3:8.1f} ms")

    sub_xyz, sub_cls = realistic_scene(args.brute, n_objects=max(2, args.brute * 100 // args.points))
    t_brute, ref = best_time(lambda: brute_force_bfs(sub_xyz, sub_cls, RADIUS, 5, IGNORE), 1)
    t_fast, ids = best_time(lambda: semantic_bfs(sub_xyz, sub_cls, RADIUS, 5, IGNORE), args.repeats)
    assert np.array_equal(ids, ref), "semantic_bfs disagrees with the brute-force BFS"
    print(f"{args.brute} points (min 5 points): brute-force BFS {t_brute * 1e3:8.1f} ms, "
          f"semantic_bfs {t_fast * 1e3:6.1f} ms, identical partition ({ref.max() + 1} proposals)")


if __name__ == "__main__":
    main()
