"""Write ``notebooks/blockN.ipynb`` for every block from the one source ``notebooks/sources/block.py``.

Each block's notebook is the source with three things of the block's own, all read from its
definition (``study.blocks.BLOCKS``): the first markdown cell (title, question, prose and the
usage line), the parameters cell (every parameter of the block's validated model with its
default and meaning, so papermill and the CLI take the same names) and ``BLOCK = N``.

    python tools/block_notebooks.py          # write notebooks/block0.ipynb .. block8.ipynb (+ the package manifest)
    python tools/block_notebooks.py --check  # exit 1 naming each notebook that differs

``tests/report/test_notebooks.py`` checks that the committed notebooks equal what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat

from flyvis_study.resources import write_package_manifest
from flyvis_study.study.blocks import BLOCKS, BlockDefinition

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "notebooks" / "sources" / "block.py"
GROUPS = (("scale and seeds", ("preset", "replicates", "seed_mode", "seed_base", "sim_seeds", "train_seeds",
                               "ground_truth_models", "stack")),
          ("execution", ("workers", "scheduler", "device", "out_dir", "cache_dir", "overrides", "compare_with")))


def title_cell(block: BlockDefinition) -> str:
    papermill_args, cli_args = block.examples
    parts = [f"# {block.title}", f"**Question.** {block.question}"]
    parts += [block.about] if block.about else []
    parts.append(f"Run it from the project folder: `papermill notebooks/{block.notebook} out.ipynb {papermill_args}`, "
                 f"or `flyvis-study block {block.number} --preset small {cli_args}` (which also renders the HTML "
                 f"report).")
    return "\n\n".join(parts)


def _literal(value) -> str:
    return "None" if value is None else json.dumps(value) if isinstance(value, (str, list, dict)) else repr(value)


def parameters_cell(block: BlockDefinition) -> str:
    fields = block.parameters.model_fields
    own = tuple(name for name in fields if all(name not in names for _, names in GROUPS))
    lines = []
    for title, names in (*GROUPS, ("this block's grid", own)):
        if names:
            lines.append(f"# --- {title} " + "-" * (76 - len(title)))
            for name in names:
                default = fields[name].get_default(call_default_factory=True)
                lines.append(f"{name} = {_literal(default)}  # {fields[name].description}")
    return "\n".join(lines)


def block_notebook(number: int) -> nbformat.NotebookNode:
    """Block ``number``'s notebook, from the one source (cell ids ``block{N}-{k}``, no outputs)."""
    block = BLOCKS[number]
    source = jupytext.read(SOURCE)
    cells = []
    for k, cell in enumerate(source.cells):
        text = {0: title_cell(block), 1: parameters_cell(block)}.get(k, cell.source)
        text = text.replace("BLOCK = 0", f"BLOCK = {number}")
        new = nbformat.v4.new_markdown_cell if cell.cell_type == "markdown" else nbformat.v4.new_code_cell
        cells.append(new(text, metadata=dict(cell.metadata), id=f"block{number}-{k}"))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "display_name": "Python 3", "language": "python", "name": "python3"}})
    return nb


def main(argv: list[str]) -> int:
    stale = []
    for number, block in BLOCKS.items():
        path = REPO / "notebooks" / block.notebook
        text = nbformat.writes(block_notebook(number)) + "\n"
        if "--check" in argv:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if "--check" not in argv:
        write_package_manifest()  # the notebooks are package data, verified against it at load
    if stale:
        print(f"differ from notebooks/sources/block.py: {', '.join(stale)}; run `python tools/block_notebooks.py`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
