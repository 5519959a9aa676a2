"""HTML reports: rendering an executed notebook offline, and the check every report must pass.

``render_html(executed, html)`` is nbconvert's JupyterLab template without its input cells and
without the three scripts the template loads from the network (require.js, MathJax, mermaid;
``templates/offline``); CSS comments, which carry the stylesheet authors' URLs, are dropped.
Figures are embedded PNGs, so a report is one self-contained file that opens offline.

``report_problems(text, min_figures)`` lists what is wrong with a rendered report (empty when
nothing is): a Python traceback, anything printed on stderr, a warning, an ``http(s)://`` address anywhere,
widget state, fewer embedded figures than expected.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from flyvis_study.atomic import write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "offline"
FIGURE = 'src="data:image/png;base64'
_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.S)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_PROBLEMS = {"a traceback": re.compile(r"Traceback \(most recent call last\)"),
             "output on stderr": re.compile(r'data-mime-type="application/vnd\.jupyter\.stderr"'),
             "a warning": re.compile(r"\b\w+Warning: |\bWARNING\b"),
             "an external URL": re.compile(r"\bhttps?://"),
             "widget state": re.compile(r"application/vnd\.jupyter\.widget")}


def strip_css_comments(html: str) -> str:
    """``html`` with ``/* ... */`` removed inside every ``<style>`` element."""
    return _STYLE.sub(lambda m: m.group(1) + _CSS_COMMENT.sub("", m.group(2)) + m.group(3), html)


def render_html(executed: Path, html: Path) -> Path:
    """nbconvert HTML of an executed notebook: no input cells, no re-execution, nothing from the network."""
    nb = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES)], exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    write_text_atomic(html, strip_css_comments(body))
    return html


def report_problems(text: str, min_figures: int = 0) -> list[str]:
    """What is wrong with a rendered report, one phrase each (empty list: it passes)."""
    problems = []
    for what, pattern in _PROBLEMS.items():
        match = pattern.search(text)
        if match:
            start = max(0, match.start() - 60)
            context = re.sub(r"\s+", " ", text[start:match.end() + 60])
            problems.append(f"{what}: ...{context}...")
    figures = text.count(FIGURE)
    if figures < min_figures:
        problems.append(f"{figures} embedded figures, expected at least {min_figures}")
    return problems
