import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from flyvis_study.world.connectome import build_connectome, cached_connectome, fill_hull, hex_columns

EXTENT8 = {"n_neurons": 13_741, "n_edges": 434_112, "n_input_neurons": 1_736, "n_cell_types": 65,
           "n_edge_types": 604, "n_offset_groups": 2_355, "n_self_loops": 3_724,
           "n_positive_sign_edges": 282_123}


def test_extent8_counts_exact():
    counts = cached_connectome(8).counts()
    for key, value in EXTENT8.items():
        assert counts[key] == value, key


def test_extent8_counts_match_reference_file(expected_counts):
    counts = cached_connectome(8).counts()
    for key in EXTENT8:
        assert counts[key] == expected_counts[key]


def test_extent15_counts():
    c = build_connectome(15)
    assert (c.n_neurons, c.n_edges) == (45_669, 1_513_231)


def test_node_order_types_and_inputs():
    c = cached_connectome(8)
    assert c.cell_types[:8] == ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8")
    assert c.cell_types[8:13] == ("L1", "L2", "L3", "L4", "L5")
    assert c.cell_types[-1] == "TmY18" and len(c.cell_types) == 65
    np.testing.assert_array_equal(c.input_nodes, np.arange(1736))
    assert (c.node_type[:217] == 0).all() and (c.node_type[217:434] == 1).all()
    # type-major node order; 63 types x 217 columns and Lawf1/Lawf2 x 35
    sizes = np.bincount(c.node_type)
    lawf = [c.cell_types.index("Lawf1"), c.cell_types.index("Lawf2")]
    assert sorted(sizes[lawf]) == [35, 35]
    assert (np.delete(sizes, lawf) == 217).all()
    assert (np.diff(c.node_type) >= 0).all()


def test_columns_formula_and_order():
    for n in range(1, 6):
        cols = hex_columns(n)
        assert len(cols) == 3 * n * (n + 1) + 1
        assert (np.abs(cols[:, 0] + cols[:, 1]) <= n).all()
    cols = hex_columns(1)
    assert cols.tolist()[:3] == [[-1, 0], [-1, 1], [0, -1]]


def test_every_extent_builds_and_grows():
    sizes = [build_connectome(n).counts() for n in (1, 2, 3)]
    assert sizes[0]["n_neurons"] == 63 * 7 + 2 * 1
    assert sizes[0]["n_edges"] < sizes[1]["n_edges"] < sizes[2]["n_edges"]
    with pytest.raises(ValueError, match="extent"):
        build_connectome(0)


def test_edges_point_to_the_offset_position():
    c = cached_connectome(3)
    g = c.offset_groups[c.edge_group]
    du = c.node_u[c.edge_tgt] - c.node_u[c.edge_src]
    dv = c.node_v[c.edge_tgt] - c.node_v[c.edge_src]
    np.testing.assert_array_equal(du, g[:, 2])
    np.testing.assert_array_equal(dv, g[:, 3])
    np.testing.assert_array_equal(c.node_type[c.edge_src], g[:, 0])
    np.testing.assert_array_equal(c.node_type[c.edge_tgt], g[:, 1])


def test_fill_hull_uses_half_open_ccw_rule():
    offsets = [[[0, 0], 5.0], [[4, 0], 2.0], [[0, 4], 3.0]]
    filled = fill_hull(offsets)
    assert filled[:3] == offsets  # known offsets first, unchanged
    new = {tuple(o[0]) for o in filled[3:]}
    assert all(o[1] == 1 for o in filled[3:])
    # oracle: matplotlib's test on the CCW triangle, minus the known points
    grid = [(u, v) for u in range(5) for v in range(5)]
    inside = MplPath(np.array([[0, 0], [4, 0], [0, 4]])).contains_points(grid)
    expect = {p for p, ok in zip(grid, inside) if ok} - {(0, 0), (4, 0), (0, 4)}
    assert new == expect
    assert fill_hull(offsets[:2]) == offsets[:2]  # fewer than 3 offsets: untouched
