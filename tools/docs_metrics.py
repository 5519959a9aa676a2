"""Write the metric catalogue of ``docs/metrics.md`` (between its two marker lines) from
``evaluation.names.METRICS``, so the docs list every metric with the definition the code uses.

    python tools/docs_metrics.py          # rewrite the table in docs/metrics.md
    python tools/docs_metrics.py --check  # exit 1 if the committed table differs

``tests/test_docs.py`` checks that the committed page is what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flyvis_study.evaluation.names import METRICS, R2_DEFINITIONS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
BEGIN, END = "<!-- metric catalogue: begin (tools/docs_metrics.py) -->", "<!-- metric catalogue: end -->"


def catalogue() -> str:
    """The markdown table: one row per metric, with its section, R2 definition, readout, units, meaning."""
    rows = ["| metric | section | R2 definition | readout | units | meaning |", "|---|---|---|---|---|---|"]
    for m in METRICS.values():
        rows.append(f"| `{m.name}` | {m.section} | {m.definition or '-'} | {m.readout or '-'} | {m.units} | "
                    f"{m.meaning.replace('|', '&#124;')} |")
    definitions = [f"- **{name}**: {text.replace('|', '&#124;')}" for name, text in R2_DEFINITIONS.items()]
    return "\n".join(["R2 definitions:", "", *definitions, "", *rows])


def page(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{catalogue()}\n{END}{tail}"


if __name__ == "__main__":
    current = PAGE.read_text()
    if "--check" in sys.argv:
        sys.exit(0 if page(current) == current else f"{PAGE}: the metric catalogue differs; run tools/docs_metrics.py")
    PAGE.write_text(page(current))
