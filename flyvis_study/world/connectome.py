"""The flyvis connectome instantiated on a hexagonal lattice of extent n.

Columns are axial coordinates (u, v) with -n <= u <= n and
max(-n, -n-u) <= v <= min(n, n-u), enumerated u ascending then v ascending
(3n(n+1)+1 columns). Each cell type with ``pattern ["stride", [su, sv]]`` has one node per
column with u mod su == 0 and v mod sv == 0; nodes are type-major in JSON order.

Each edge record (src type, tar type, sign alpha, offsets [[du, dv], n_syn]) with >= 3 offsets
is first completed by filling the convex hull of its offsets with n_syn = 1 (flyvis
``n_syn_fill=1``; the boundary rule is matplotlib's half-open ``Path.contains_points`` on the
counter-clockwise hull). Then for each offset and each source node j of type src at (u, v),
an edge j -> i exists to the node i of type tar at (u+du, v+dv) if there is one.

At extent 8 this gives 13,741 neurons, 434,112 edges, 604 edge types and 2,355 offset groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.path import Path as MplPath
from scipy.spatial import ConvexHull

from flyvis_study.world.connectome_file import connectome_file_path


def hex_columns(extent: int) -> np.ndarray:
    """Axial coordinates of the 3n(n+1)+1 columns, shape (n_columns, 2), u then v ascending."""
    if extent < 0:
        raise ValueError(f"extent must be >= 0, got {extent}")
    n = extent
    cols = [(u, v) for u in range(-n, n + 1) for v in range(max(-n, -n - u), min(n, n - u) + 1)]
    return np.asarray(cols, dtype=np.int64).reshape(-1, 2)


def fill_hull(offsets: list, n_syn_fill: float = 1.0) -> list:
    """Add the integer points inside the convex hull of ``offsets`` (>= 3 points).

    ``offsets`` is a list of ``[[du, dv], n_syn]``. The hull is computed with joggled
    Qhull (robust to collinear points) on coordinates scaled by (1 + 1e-6); its vertices
    (counter-clockwise) form a matplotlib path whose half-open crossing-number test decides
    inside. The bounding-box grid is enumerated du outer, dv inner; new points get
    ``n_syn_fill`` and are appended after the known offsets.
    """
    if len(offsets) < 3 or n_syn_fill <= 0:
        return list(offsets)
    known = np.asarray([o[0] for o in offsets], dtype=np.int64)
    hull = ConvexHull((1 + 1e-6) * known, incremental=False, qhull_options="QJ")
    vertices = known[hull.vertices]
    us = np.arange(known[:, 0].min(), known[:, 0].max() + 1)
    vs = np.arange(known[:, 1].min(), known[:, 1].max() + 1)
    grid = np.stack(np.meshgrid(us, vs, indexing="ij"), axis=-1).reshape(-1, 2)
    inside = grid[MplPath(vertices).contains_points(grid)]
    seen = {(int(u), int(v)) for u, v in known}
    extra = [[[int(u), int(v)], n_syn_fill] for u, v in inside if (int(u), int(v)) not in seen]
    return list(offsets) + extra


@dataclass(frozen=True)
class Connectome:
    """A connectome instance. Shapes: N neurons, E edges, K edge types, G offset groups.

    Attributes:
        extent: lattice extent n.
        cell_types: the 65 type names in JSON order.
        columns: (C, 2) axial coordinates of the columns.
        node_type: (N,) type index of each neuron; node_u, node_v: (N,) its column.
        node_column: (N,) index into ``columns``.
        input_nodes: (N_in,) indices of the photoreceptor neurons (R1..R8), ascending.
        edge_src, edge_tgt: (E,) presynaptic j and postsynaptic i of each edge.
        edge_sign: (E,) +1/-1; edge_nsyn: (E,) mean synapse count of the offset group.
        edge_type: (E,) index into ``edge_types`` (K, 2) (src type, tar type), first appearance.
        edge_group: (E,) index into ``offset_groups`` (G, 4) (src, tar, du, dv), first appearance.
        group_nsyn: (G,) n_syn of each offset group.
    """

    extent: int
    cell_types: tuple[str, ...]
    columns: np.ndarray
    node_type: np.ndarray
    node_column: np.ndarray
    input_nodes: np.ndarray
    edge_src: np.ndarray
    edge_tgt: np.ndarray
    edge_sign: np.ndarray
    edge_nsyn: np.ndarray
    edge_type: np.ndarray
    edge_types: np.ndarray
    edge_group: np.ndarray
    offset_groups: np.ndarray
    group_nsyn: np.ndarray
    edge_type_sign: np.ndarray = field(repr=False)

    @property
    def n_neurons(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.columns.shape[0])

    @property
    def node_u(self) -> np.ndarray:
        return self.columns[self.node_column, 0]

    @property
    def node_v(self) -> np.ndarray:
        return self.columns[self.node_column, 1]

    def to_pyg(self, W: np.ndarray | None = None):
        """The graph as a ``torch_geometric.data.Data``.

        Attributes: ``edge_index`` (2, E) long, rows (source j, target i); ``edge_type`` (E,)
        index into ``edge_types``; ``edge_group`` (E,) offset group; ``edge_sign``,
        ``edge_nsyn`` (E,) float32; ``edge_attr`` (E, 1) float32, the weights ``W`` when given
        (e.g. the ground truth's W), else absent; ``node_type`` (N,) index into ``cell_types``;
        ``pos`` (N, 2) float32 axial column (u, v); ``input_mask`` (N,) bool, the photoreceptors;
        ``cell_types`` the 65 names; ``extent``; ``num_nodes`` N.
        """
        import torch  # noqa: PLC0415 - torch-free import path: the connectome is read without torch
        from torch_geometric.data import Data  # noqa: PLC0415 - torch-free import path: the connectome is read without torch

        graph = Data(
            edge_index=torch.from_numpy(np.stack([self.edge_src, self.edge_tgt]).astype(np.int64)),
            edge_type=torch.from_numpy(self.edge_type.astype(np.int64)),
            edge_group=torch.from_numpy(self.edge_group.astype(np.int64)),
            edge_sign=torch.from_numpy(self.edge_sign.astype(np.float32)),
            edge_nsyn=torch.from_numpy(self.edge_nsyn.astype(np.float32)),
            node_type=torch.from_numpy(self.node_type.astype(np.int64)),
            pos=torch.from_numpy(np.stack([self.node_u, self.node_v], axis=1).astype(np.float32)),
            input_mask=torch.from_numpy(np.isin(np.arange(self.n_neurons), self.input_nodes)),
            num_nodes=self.n_neurons,
        )
        graph.cell_types = list(self.cell_types)
        graph.extent = self.extent
        if W is not None:
            W = np.asarray(W, dtype=np.float32)
            if W.shape != (self.n_edges,):
                raise ValueError(f"W: shape {W.shape}, expected ({self.n_edges},), one weight per edge")
            graph.edge_attr = torch.from_numpy(W.copy()).unsqueeze(1)
        return graph

    def counts(self) -> dict[str, int]:
        """Graph counts, the keys printed by ``flyvis-study connectome --json``."""
        return {
            "extent": self.extent,
            "n_neurons": self.n_neurons,
            "n_edges": self.n_edges,
            "n_input_neurons": int(self.input_nodes.shape[0]),
            "n_cell_types": len(self.cell_types),
            "n_edge_types": int(self.edge_types.shape[0]),
            "n_offset_groups": int(self.offset_groups.shape[0]),
            "n_self_loops": int(np.count_nonzero(self.edge_src == self.edge_tgt)),
            "n_positive_sign_edges": int(np.count_nonzero(self.edge_sign > 0)),
        }


def load_connectome_spec(path: str | Path | None = None) -> dict:
    """Parse the flyvis connectome JSON (default: the verified cached file)."""
    path = Path(path) if path is not None else connectome_file_path()
    with open(path) as fh:
        return json.load(fh)


def _stride(node_spec: dict) -> tuple[int, int]:
    kind, arg = node_spec["pattern"][0], node_spec["pattern"][1]
    if kind != "stride":
        raise NotImplementedError(
            f"cell type {node_spec['name']}: pattern {kind!r} is not supported (only 'stride')"
        )
    return int(arg[0]), int(arg[1])


def build_connectome(extent: int, spec: dict | None = None, n_syn_fill: float = 1.0) -> Connectome:
    """Instantiate the connectome on a lattice of the given extent (>= 1)."""
    if extent < 1:
        raise ValueError(f"extent must be an integer >= 1, got {extent}")
    spec = spec if spec is not None else load_connectome_spec()
    columns = hex_columns(extent)
    n = extent
    size = 2 * n + 1
    type_names = tuple(node["name"] for node in spec["nodes"])
    type_index = {name: k for k, name in enumerate(type_names)}

    node_type, node_column = [], []
    node_at = np.full((len(type_names), size, size), -1, dtype=np.int64)
    next_id = 0
    for t, node in enumerate(spec["nodes"]):
        su, sv = _stride(node)
        keep = np.flatnonzero((columns[:, 0] % su == 0) & (columns[:, 1] % sv == 0))
        ids = np.arange(next_id, next_id + keep.size)
        node_at[t, columns[keep, 0] + n, columns[keep, 1] + n] = ids
        node_type.append(np.full(keep.size, t))
        node_column.append(keep)
        next_id += keep.size
    node_type = np.concatenate(node_type)
    node_column = np.concatenate(node_column)
    pos = columns[node_column]

    src_l, tgt_l, sign_l, nsyn_l, etype_l, group_l = [], [], [], [], [], []
    etype_ids: dict[tuple[int, int], int] = {}
    etype_sign: list[float] = []
    group_ids: dict[tuple[int, int, int, int], int] = {}
    group_nsyn: list[float] = []
    for record in spec["edges"]:
        s, t = type_index[record["src"]], type_index[record["tar"]]
        offsets = fill_hull(record["offsets"], n_syn_fill)
        src_nodes = np.flatnonzero(node_type == s)
        su, sv = pos[src_nodes, 0], pos[src_nodes, 1]
        for (du, dv), nsyn in offsets:
            tu, tv = su + du + n, sv + dv + n
            ok = (tu >= 0) & (tu < size) & (tv >= 0) & (tv < size)
            tgt = np.full(src_nodes.size, -1, dtype=np.int64)
            tgt[ok] = node_at[t, tu[ok], tv[ok]]
            hit = tgt >= 0
            if not hit.any():
                continue
            et = etype_ids.setdefault((s, t), len(etype_ids))
            if et == len(etype_sign):
                etype_sign.append(float(record["alpha"]))
            key = (s, t, int(du), int(dv))
            g = group_ids.setdefault(key, len(group_ids))
            if g == len(group_nsyn):
                group_nsyn.append(float(nsyn))
            k = int(hit.sum())
            src_l.append(src_nodes[hit])
            tgt_l.append(tgt[hit])
            sign_l.append(np.full(k, float(record["alpha"])))
            nsyn_l.append(np.full(k, float(nsyn)))
            etype_l.append(np.full(k, et))
            group_l.append(np.full(k, g))

    return Connectome(
        extent=extent,
        cell_types=type_names,
        columns=columns,
        node_type=node_type,
        node_column=node_column,
        input_nodes=np.flatnonzero(np.isin(node_type, [type_index[u] for u in spec["input_units"]])),
        edge_src=np.concatenate(src_l),
        edge_tgt=np.concatenate(tgt_l),
        edge_sign=np.concatenate(sign_l).astype(np.float32),
        edge_nsyn=np.concatenate(nsyn_l).astype(np.float32),
        edge_type=np.concatenate(etype_l),
        edge_types=np.asarray(list(etype_ids), dtype=np.int64).reshape(-1, 2),
        edge_group=np.concatenate(group_l),
        offset_groups=np.asarray(list(group_ids), dtype=np.int64).reshape(-1, 4),
        group_nsyn=np.asarray(group_nsyn, dtype=np.float32),
        edge_type_sign=np.asarray(etype_sign, dtype=np.float32),
    )


@lru_cache(maxsize=4)
def cached_connectome(extent: int) -> Connectome:
    """``build_connectome(extent)`` memoised per process (the arrays are read-only by convention)."""
    return build_connectome(extent)
