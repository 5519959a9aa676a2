"""flyvis model ids: which networks exist, and where their numbers are, without loading them.

A flyvis model id is ``<ensemble name>/<ensemble id>/<network id>``, e.g. ``flow/0000/012``
(the 50 networks of the flow ensemble 0000 of Lappalainen et al., Nature 2024). ``flow/0000/000``
is built in (package data ``world/flyvis_models/flow_0000_000.json``); any other id is found in
the user's flyvis data directory (``$FLYVIS_ROOT_DIR``, filled by ``flyvis download-pretrained``).
Configs validate ids with ``resolvable`` (no compute); ``world.flyvis_models`` loads the numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flyvis_study.resources import verified

MODEL_ID = re.compile(r"^[A-Za-z0-9_.-]+/\d{4}/\d{3}$")
BUILTIN_MODELS = {"flow/0000/000": "flow_0000_000.json"}
DEFAULT_MODEL = "flow/0000/000"
ROOT_ENV = "FLYVIS_ROOT_DIR"
DOWNLOAD_HINT = "fill it with `flyvis download-pretrained` (pip install flyvis in another environment)"


class FlyvisModelNotFound(ValueError):
    """A flyvis model id that is neither built in nor found in the flyvis data directory."""


def builtin_model_file(model_id: str) -> Path:
    """The package data file of a built-in model, verified (``resources.verified``)."""
    name = BUILTIN_MODELS[model_id]
    return verified(Path(__file__).resolve().parent / "world" / "flyvis_models" / name, f"world/flyvis_models/{name}")


def check_model_id(model_id: str) -> str:
    if not MODEL_ID.match(model_id):
        raise FlyvisModelNotFound(f"{model_id!r} is not a flyvis model id; allowed: "
                                  f"<ensemble>/<4 digits>/<3 digits>, e.g. {DEFAULT_MODEL} or flow/0000/012")
    return model_id


def network_checkpoint(model_id: str) -> Path:
    """The checkpoint file of a downloaded flyvis network (see the module docstring).

    ``FLYVIS_ROOT_DIR`` may name the flyvis data directory (holding ``results/``) or its
    ``results/`` folder itself. Raises FlyvisModelNotFound naming the directory and the command.
    """
    check_model_id(model_id)
    root = os.environ.get(ROOT_ENV, "")
    if not root:
        raise FlyvisModelNotFound(
            f"{model_id}: not built in (built in: {', '.join(BUILTIN_MODELS)}) and {ROOT_ENV} is not set; "
            f"set it to the flyvis data directory and {DOWNLOAD_HINT}")
    root_dir = Path(root).expanduser()
    for network_dir in (root_dir / "results" / model_id, root_dir / model_id):
        if (network_dir / "best_chkpt").is_file():
            return network_dir / "best_chkpt"
        chkpts = sorted((network_dir / "chkpts").glob("chkpt_*"),
                        key=lambda p: int(re.sub(r"\D", "", p.name) or -1))
        if chkpts:
            return chkpts[-1]
    raise FlyvisModelNotFound(
        f"{model_id}: no checkpoint (best_chkpt or chkpts/chkpt_*) under {root_dir / 'results' / model_id} "
        f"({ROOT_ENV}={root}); {DOWNLOAD_HINT}")


def resolvable(model_id: str) -> str:
    """``model_id`` if it is built in or its checkpoint is found, else FlyvisModelNotFound (no compute)."""
    check_model_id(model_id)
    if model_id in BUILTIN_MODELS:
        builtin_model_file(model_id)  # its bytes checked against the package manifest
    else:
        network_checkpoint(model_id)
    return model_id
