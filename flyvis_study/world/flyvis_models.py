"""Pretrained flyvis networks as ground truth, by model id (``flow/0000/000``), without flyvis.

A flyvis model id is ``<ensemble name>/<ensemble id>/<network id>``, e.g. ``flow/0000/012``
(the 50 networks of the flow ensemble 0000 of Lappalainen et al., Nature 2024).

- ``flow/0000/000`` is built in: its 734 trained numbers (65 resting potentials = node
  biases, 65 time constants, 604 edge-type signs and synapse strengths) ship as package data
  (``flyvis_models/flow_0000_000.json``, flyvis, TuragaLab, MIT licence). The per-offset-group
  synapse counts n_syn are not trained (flyvis keeps ``edges_syn_count`` fixed at the
  connectome's values), so they are read from the extent-8 connectome:

      W_e = sign(type(e)) * n_syn(group(e)) * strength(type(e)).

- any other id is read from the user's flyvis data directory, filled by
  ``flyvis download-pretrained``: ``$FLYVIS_ROOT_DIR/results/<id>/best_chkpt`` if present,
  else the last ``chkpts/chkpt_*`` of that network directory (a torch zip read with
  ``ground_truth.load_flyvis_checkpoint``). flyvis itself is never imported.

Which ids exist and where their files are: ``flyvis_study.flyvis_ids``.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache

import numpy as np

from flyvis_study.flyvis_ids import BUILTIN_MODELS, builtin_model_file, check_model_id, network_checkpoint
from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.ground_truth import REFERENCE_EXTENT, GroundTruthParams, load_flyvis_checkpoint


@lru_cache(maxsize=8)
def _builtin_params(model_id: str):
    data = json.loads(builtin_model_file(model_id).read_text())
    ref = cached_connectome(REFERENCE_EXTENT)
    type_index = {name: k for k, name in enumerate(ref.cell_types)}
    names = [c["name"] for c in data["cell_types"]]
    if names != list(ref.cell_types):
        raise ValueError(f"{builtin_model_file(model_id)}: cell types differ from the connectome's")
    keys = np.asarray([(type_index[e["source"]], type_index[e["target"]]) for e in data["edge_types"]],
                      dtype=np.int64)
    return GroundTruthParams(
        source=f"flyvis {model_id}",
        V_rest_type=np.asarray([c["V_rest"] for c in data["cell_types"]], dtype=np.float32),
        tau_type=np.asarray([c["tau"] for c in data["cell_types"]], dtype=np.float32),
        edge_type_keys=keys,
        edge_type_sign=np.asarray([e["sign"] for e in data["edge_types"]], dtype=np.float32),
        edge_type_strength=np.asarray([e["strength"] for e in data["edge_types"]], dtype=np.float32),
        group_keys=ref.offset_groups.copy(),
        group_nsyn=ref.group_nsyn.copy(),
        info={"model": model_id, "file": f"flyvis_study/world/flyvis_models/{BUILTIN_MODELS[model_id]}",
              "licence": data["licence"]},
    )


def flyvis_model_params(model_id: str):
    """GroundTruthParams of a flyvis model id (built in, or from ``FLYVIS_ROOT_DIR``)."""
    check_model_id(model_id)
    if model_id in BUILTIN_MODELS:
        return _builtin_params(model_id)
    path = network_checkpoint(model_id)
    params = load_flyvis_checkpoint(path)
    return dataclasses.replace(params, source=f"flyvis {model_id}",
                               info={"model": model_id, "checkpoint": str(path)})
