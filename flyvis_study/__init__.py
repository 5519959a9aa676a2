"""flyvis_study: does two-stage training of a GNN recover the resting potentials of a simulated
fly optic lobe better than standard training, and what does?

The results API is importable from here (loaded on first use, so ``import flyvis_study``
stays light): ``run_block(N, parameters)``, ``open_block(path)``, ``open_run(path)``,
``compare(block_a, block_b, metric)`` (``flyvis_study.access``); and the adaptive exploration:
``run_exploration(parameters)``, ``open_exploration(parameters)`` (``flyvis_study.exploration``).
"""

_RESULTS_API = ("run_block", "open_block", "open_run", "compare", "Block", "Run")
_EXPLORATION_API = ("run_exploration", "open_exploration")
__all__ = [*_RESULTS_API, *_EXPLORATION_API]


def __getattr__(name: str):
    if name in _RESULTS_API:
        from flyvis_study import access

        return getattr(access, name)
    if name in _EXPLORATION_API:
        from flyvis_study.exploration import search

        return getattr(search, name)
    raise AttributeError(f"module 'flyvis_study' has no attribute {name!r}")
