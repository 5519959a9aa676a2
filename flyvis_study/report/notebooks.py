"""Notebook execution (papermill) and HTML rendering (nbconvert) of the block and summary reports.

``execute_block(N, parameters)`` validates the parameters (``study.blocks.block_parameters``),
runs ``notebooks/blockN.ipynb`` with papermill into ``out_dir/blockN.ipynb`` and renders
``out_dir/blockN.html`` with nbconvert (``report.html``: no input, no re-execution, figures
embedded, nothing loaded from the network), holding the output folder's writer lock
(``study.execute.block_lock``) throughout. ``execute_summary(reports_dir)`` does the same for
``study_summary.ipynb`` and writes the study index (``report.index``). The kernel runs in the
project folder (``resources.project_path``), connected over IPC (``LocalKernelManager``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager

from flyvis_study.atomic import write_text_atomic
from flyvis_study.report.html import render_html
from flyvis_study.report.index import write_index
from flyvis_study.resources import EXPLORATION_NOTEBOOK, SUMMARY_NOTEBOOK, notebook_file, project_path
from flyvis_study.study.blocks import block_definition, block_parameters
from flyvis_study.study.execute import block_lock, folder_lock

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class LocalKernelManager(AsyncKernelManager):
    """A kernel on this machine reached over IPC (unix sockets) instead of TCP where the system
    has them (POSIX): no port is opened, and the kernel has no unencrypted-transport warning to
    print on every notebook run. The sockets live in a private folder under the system's temporary
    directory, not in the project folder, so a run killed before its kernel shut down leaves no
    ``kernel-ipc-N`` files beside the user's work."""

    def __init__(self, **kwargs):
        if os.name == "posix":
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(Path(tempfile.mkdtemp(prefix="flyvis-study-kernel-")) / "kernel"))
        super().__init__(**kwargs)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        """What the manager cleans at shutdown, then the private socket folder (not on restart)."""
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self.transport == "ipc":
            shutil.rmtree(Path(self.ip).parent, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources  # an AsyncKernelManager's public name is the coroutine


def execute_notebook(notebook: Path, executed: Path, parameters: dict, timeout: int | None = None) -> Path:
    """papermill ``notebook`` into ``executed`` (kernel in the project folder), widget state removed."""
    executed.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name="python3",
                               progress_bar=False, cwd=str(project_path(".")), execution_timeout=timeout,
                               kernel_manager_class=LocalKernelManager)
    strip_widget_state(executed)
    return executed


def strip_widget_state(path: Path) -> None:
    """Drop ipywidgets state (``metadata.widgets``) and widget views (e.g. tqdm bars) from a notebook.

    A progress bar is live feedback in JupyterLab; saved, it is a dead widget and kilobytes of
    state in every executed notebook and HTML report.
    """
    nb = nbformat.read(str(path), as_version=4)
    changed = nb.metadata.pop("widgets", None) is not None
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if WIDGET_VIEW not in o.get("data", {})]
        if len(kept) != len(outputs):
            cell["outputs"], changed = kept, True
    if changed:
        write_text_atomic(path, nbformat.writes(nb))


def execute_block(block: int, parameters: dict | None = None) -> dict[str, Path]:
    """Validate, papermill-run block N into its out_dir, render HTML; returns the ipynb, html and nc paths."""
    params = block_parameters(block, **(parameters or {}))
    out_dir = project_path(params.out_dir)
    values = {**(parameters or {}), "out_dir": str(out_dir)}
    notebook = notebook_file(block_definition(block).notebook)
    with block_lock(out_dir, block):  # the kernel's run_block works under this lock
        executed = execute_notebook(notebook, out_dir / f"block{block}.ipynb", values)
        html = render_html(executed, out_dir / f"block{block}.html")
    return {"ipynb": executed, "html": html, "nc": out_dir / f"block{block}.nc"}


def execute_exploration(parameters: dict | None = None) -> dict[str, Path]:
    """Validate, papermill-run ``explore_search.ipynb`` into ``out_dir/<name>.ipynb``, render its
    HTML; returns the ipynb, html, analysis log and memory paths (``exploration.search``)."""
    from flyvis_study.exploration.logs import analysis_path, memory_path  # noqa: PLC0415 - optuna only here
    from flyvis_study.report.exploration import check_exploration  # noqa: PLC0415 - optuna only here

    params = check_exploration(**(parameters or {}))
    out_dir = project_path(params.out_dir)
    values = {**(parameters or {}), "out_dir": str(out_dir)}
    with folder_lock(out_dir, f"flyvis-study explore {params.name}"):  # the kernel's loop works under it
        executed = execute_notebook(notebook_file(EXPLORATION_NOTEBOOK), out_dir / f"{params.name}.ipynb", values)
        html = render_html(executed, out_dir / f"{params.name}.html")
    return {"ipynb": executed, "html": html, "log": analysis_path(out_dir, params.name),
            "memory": memory_path(out_dir, params.name)}


def execute_summary(reports_dir: str | Path, parameters: dict | None = None) -> dict[str, Path]:
    folder = project_path(reports_dir)
    values = {**(parameters or {}), "reports_dir": str(folder)}
    executed = execute_notebook(notebook_file(SUMMARY_NOTEBOOK), folder / "study_summary.ipynb", values)
    html = render_html(executed, folder / "study_summary.html")
    return {"ipynb": executed, "html": html, "index": write_index(folder)}
