"""Plotly views: traces, legend names, downsampling, colours, serialisation."""
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from twist_lib.synthetic import SYNTHETIC_CLASS_NAMES, generate_scene
from twist_lib.viz import GREY, palette, point_colours, show_offsets, show_proposals, show_scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(3)


def _n_points(fig):
    return sum(len(t.x) for t in fig.data if t.mode == "markers")


def test_palette_colours_are_distinct():
    for n in (1, 8, 50):
        colours = palette(n)
        assert len(colours) == n and len(set(colours)) == n
        assert all(c.startswith("rgb(") for c in colours)


def test_semantic_view_has_one_named_trace_per_present_class(scene):
    fig = show_scene(scene, "semantic", SYNTHETIC_CLASS_NAMES)
    present = np.unique(scene["semantic"])
    assert [t.name for t in fig.data] == [SYNTHETIC_CLASS_NAMES[k] for k in present]
    assert all(t.showlegend for t in fig.data)
    for t, k in zip(fig.data, present):  # each trace holds exactly that class's points
        assert len(t.x) == np.sum(scene["semantic"] == k)
    assert _n_points(fig) == len(scene["xyz"])
    assert fig.layout.scene.aspectmode == "data"


def test_semantic_view_shows_ignored_points_and_default_names():
    toy = {"xyz": np.random.default_rng(0).random((30, 3)), "rgb": np.zeros((30, 3)),
           "semantic": np.repeat([2, -100, 5], 10), "instance": np.full(30, -100), "name": "toy"}
    fig = show_scene(toy, "semantic")
    assert [t.name for t in fig.data] == ["class 2", "class 5", "ignored"]
    assert fig.data[2].marker.color == GREY


@pytest.mark.parametrize("mode", ["rgb", "semantic", "instance"])
def test_downsampling_respects_max_points_and_is_seeded(scene, mode):
    fig = show_scene(scene, mode, SYNTHETIC_CLASS_NAMES, max_points=1000)
    assert _n_points(fig) == 1000
    again = show_scene(scene, mode, SYNTHETIC_CLASS_NAMES, max_points=1000)
    other = show_scene(scene, mode, SYNTHETIC_CLASS_NAMES, max_points=1000, seed=1)
    assert np.array_equal(np.concatenate([t.x for t in fig.data]), np.concatenate([t.x for t in again.data]))
    assert not np.array_equal(np.sort(np.concatenate([t.x for t in fig.data])),
                              np.sort(np.concatenate([t.x for t in other.data])))
    xs = set(np.round(scene["xyz"][:, 0], 6).tolist())  # drawn points are scene points
    assert set(np.round(np.concatenate([t.x for t in fig.data]), 6).tolist()) <= xs


def test_rgb_view_maps_colours_from_minus_one_one():
    toy = {"xyz": np.zeros((3, 3)), "rgb": np.array([[-1, -1, -1], [1, 1, 1], [1, -1, 0]], float),
           "semantic": np.zeros(3, int), "instance": np.zeros(3, int), "name": "toy"}
    fig = show_scene(toy, "rgb")
    assert len(fig.data) == 1
    assert point_colours(fig.data[0]) == ["rgb(0,0,0)", "rgb(255,255,255)", "rgb(255,0,136)"]
    assert show_scene(toy, "rgb").to_json() == fig.to_json()


def test_per_point_colours_are_indices_into_a_colour_scale_and_smaller(scene):
    """The compact encoding: uint indices + a stepped scale that reads back as the same colours,
    at well under the size of one colour string per point."""
    from twist_lib.viz import rgb_strings, subsample
    fig = show_scene(scene, "rgb", max_points=3000)
    marker = fig.data[0].marker
    assert np.asarray(marker.color).dtype.kind == "u"
    idx = subsample(len(scene["xyz"]), 3000)
    expected = rgb_strings(scene["rgb"][idx])
    assert point_colours(fig.data[0]) == expected
    strings = go.Figure(go.Scatter3d(x=fig.data[0].x, y=fig.data[0].y, z=fig.data[0].z,
                                     mode="markers", marker=dict(color=expected)))
    assert len(fig.to_json()) < 0.75 * len(strings.to_json())


def test_instance_view_distinct_colours_and_grey_background():
    inst = np.array([-100, 0, 0, 4, 4, 4, 7, -100])
    toy = {"xyz": np.arange(24, dtype=float).reshape(8, 3), "rgb": np.zeros((8, 3)),
           "semantic": np.zeros(8, int), "instance": inst, "name": "toy"}
    colours = np.array(point_colours(show_scene(toy, "instance").data[0]))
    assert np.all(colours[inst == -100] == GREY)
    per_instance = {k: set(colours[inst == k]) for k in (0, 4, 7)}
    assert all(len(c) == 1 for c in per_instance.values())
    chosen = [c.pop() for c in per_instance.values()]
    assert len(set(chosen)) == 3 and GREY not in chosen


def test_proposals_view_colours_per_id_and_grey_for_unassigned():
    ids = np.array([-1, 3, 3, 9, -1])
    colours = np.array(point_colours(show_proposals(np.zeros((5, 3)), ids).data[0]))
    assert np.all(colours[ids == -1] == GREY)
    assert colours[1] == colours[2] != colours[3] and GREY not in colours[1:4]


def test_offsets_view_draws_segments_from_p_to_p_plus_offset():
    rng = np.random.default_rng(0)
    xyz, off = rng.random((500, 3)), rng.normal(size=(500, 3))
    fig = show_offsets(xyz, off, max_arrows=100)
    lines = next(t for t in fig.data if t.mode == "lines")
    seg = np.column_stack([lines.x, lines.y, lines.z]).astype(float)
    assert len(seg) == 300 and np.isnan(seg[2::3]).all()
    start, end = seg[0::3], seg[1::3]
    idx = [int(np.flatnonzero(np.all(xyz == p, axis=1))[0]) for p in start]  # each start is a point
    np.testing.assert_allclose(end, xyz[idx] + off[idx])
    assert len(set(idx)) == 100


def test_figures_serialise(scene):
    for fig in (show_scene(scene, "semantic", SYNTHETIC_CLASS_NAMES, max_points=500, title="t"),
                show_scene(scene, "instance", max_points=500),
                show_offsets(scene["xyz"], np.zeros_like(scene["xyz"]), max_arrows=50, max_points=500),
                show_proposals(scene["xyz"], scene["instance"].clip(-1), max_points=500)):
        assert isinstance(fig, go.Figure)
        assert json.loads(fig.to_json())["data"]
    with pytest.raises(ValueError, match="color_by"):
        show_scene(scene, "depth")
