"""Block and study reports: figures and verdicts for the notebooks, papermill execution, HTML.

``execute_block(N, out_dir, parameters)`` runs ``notebooks/blockN_*.ipynb`` with papermill
into ``out_dir/blockN.ipynb`` and renders ``out_dir/blockN.html`` with nbconvert
(``--no-input``, no re-execution; figures are embedded, so the HTML is self-contained).
Parameter names are checked against ``papermill.inspect_notebook`` first.
"""

from __future__ import annotations

from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


BLOCK_NOTEBOOKS = {0: "block0_baseline.ipynb", 1: "block1_variance.ipynb", 2: "block2_joint_ratio.ipynb",
                   3: "block3_lr_ratio.ipynb", 4: "block4_budget.ipynb", 5: "block5_replication.ipynb"}


SUMMARY_NOTEBOOK = "study_summary.ipynb"


class ReportError(ValueError):
    """Bad input to a report command (unknown block, parameter, ...)."""


# ----------------------------------------------------------------------------- execution
def notebook_path(block: int) -> Path:
    if block not in BLOCK_NOTEBOOKS:
        raise ReportError(f"block {block}: unknown; allowed: {', '.join(map(str, BLOCK_NOTEBOOKS))}")
    return NOTEBOOK_DIR / BLOCK_NOTEBOOKS[block]


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Every name must be a parameter of the notebook (papermill would only warn)."""
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ReportError(f"unknown parameter(s) {', '.join(unknown)} for {notebook.name}; "
                          f"allowed: {', '.join(sorted(known))}")


def render_html(executed: Path, html: Path) -> Path:
    """nbconvert HTML without input cells (no re-execution)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(nb)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(body)
    tmp.replace(html)
    return html


def execute_notebook(notebook: Path, executed: Path, parameters: dict, timeout: int | None = None) -> Path:
    import papermill

    executed.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name="python3",
                               progress_bar=False, cwd=str(NOTEBOOK_DIR.parent), execution_timeout=timeout)
    return executed


def execute_block(block: int, out_dir: str | Path, parameters: dict | None = None) -> dict[str, Path]:
    """papermill-run block N into out_dir, render HTML; returns the ipynb, html and nc paths."""
    out_dir = Path(out_dir).resolve()
    nb = notebook_path(block)
    params = {**(parameters or {}), "out_dir": str(out_dir)}
    check_parameters(nb, params)
    executed = execute_notebook(nb, out_dir / f"block{block}.ipynb", params)
    html = render_html(executed, out_dir / f"block{block}.html")
    return {"ipynb": executed, "html": html, "nc": out_dir / f"block{block}.nc"}


def execute_summary(out_dir: str | Path, parameters: dict | None = None) -> dict[str, Path]:
    out_dir = Path(out_dir).resolve()
    nb = NOTEBOOK_DIR / SUMMARY_NOTEBOOK
    params = {**(parameters or {}), "reports_dir": str(out_dir)}
    check_parameters(nb, params)
    executed = execute_notebook(nb, out_dir / "study_summary.ipynb", params)
    return {"ipynb": executed, "html": render_html(executed, out_dir / "study_summary.html")}
