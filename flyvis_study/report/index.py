"""The study index: ``index.html`` beside the block reports, linking each with its verdict.

``write_index(reports_dir)`` reads every ``blockN.nc`` in the folder and writes one offline
HTML page: the study's answer and a link to ``study_summary.html``; then per block its title,
a one-line verdict (``report.verdicts.block_headline``: paired differences against block 0,
else the means), its runs, the provenance of its block file (package version, commit, torch,
device) and the command that reproduces it (``reproduce_command``, from the block parameters
stored in the file).
"""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

import xarray as xr

from flyvis_study.atomic import write_text_atomic
from flyvis_study.evaluation.names import R2_DEFINITIONS
from flyvis_study.report.levers import headline as lever_headline
from flyvis_study.report.summary import load_blocks, self_controlled, study_comparisons
from flyvis_study.report.summary import scope as summary_scope
from flyvis_study.report.verdicts import block_headline, study_answer
from flyvis_study.study.blocks import BASELINE_BLOCK, block_definition
from flyvis_study.study.levers import lever_comparisons
from flyvis_study.study.statistics import config_statistics

INDEX = "index.html"
_HIDDEN = {"out_dir", "preset"}  # given as --out and --preset


def reproduce_command(ds: xr.Dataset, out: str) -> str:
    """``flyvis-study block N --preset P --out OUT -p name=value ...`` for the non-default parameters."""
    number = int(ds.attrs["block"])
    stored = json.loads(ds.attrs.get("parameters", "{}") or "{}")
    defaults = block_definition(number).parameters().model_dump(mode="json")
    words = ["flyvis-study", "block", str(number), "--preset", str(stored.get("preset", ds.attrs.get("preset"))),
             "--out", out]
    for name, value in stored.items():
        if name in _HIDDEN or value == defaults.get(name):
            continue
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        words += ["-p", f"{name}={text}"]
    return " ".join(shlex.quote(w) for w in words)


def _display_folder(folder: Path) -> str:
    """The folder as a user types it: relative to the working directory when inside it."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(folder)


def index_html(reports_dir: str | Path, baseline_block: int = BASELINE_BLOCK) -> str:
    """The index page's HTML (self-contained, nothing loaded from the network)."""
    folder = Path(reports_dir)
    blocks = load_blocks(folder)
    comparisons = study_comparisons(blocks, baseline_block)
    out = _display_folder(folder)
    e = html.escape
    rows = []
    for number, ds in blocks.items():
        a = ds.attrs
        own = [c for c in comparisons if c.block == number]
        headline = (lever_headline(lever_comparisons(ds)) if self_controlled(number)
                    else block_headline(config_statistics(ds), own))
        n_runs = int((ds["run_id"] != "").sum())
        report = folder / f"block{number}.html"
        link = f'<a href="{report.name}">block{number}.html</a>' if report.is_file() else "(no HTML report yet)"
        rows.append(
            f"<tr><td>{number}</td><td>{e(str(a.get('title', '')))}<br>{link}</td>"
            f"<td>{e(headline)}</td><td>{n_runs}</td>"
            f"<td>flyvis_study {e(str(a.get('package_version', '?')))}, commit <code>"
            f"{e(str(a.get('git_commit') or 'n/a'))}</code>, torch {e(str(a.get('torch_version', '?')))}, "
            f"{e(str(a.get('device_name', a.get('device', '?'))))}</td>"
            f"<td><code>{e(reproduce_command(ds, out))}</code></td></tr>")
    answer = study_answer(comparisons).split("\n", 1)[0].replace("**", "")
    scope = "\n".join(f"<p>{e(line.replace('**', '').replace('`', ''))}</p>" for line in summary_scope(blocks))
    summary = folder / "study_summary.html"
    summary_link = (f'<a href="{summary.name}">study_summary.html</a>' if summary.is_file()
                    else f"not rendered yet (<code>flyvis-study report --out {e(out)}</code>)")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>flyvis_study: study index</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 90em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.4em; vertical-align: top; }}
th {{ background: #f3f3f3; text-align: left; }} code {{ font-size: 0.9em; }}
</style></head><body>
<h1>flyvis_study: study index</h1>
{scope}
<p><b>{e(answer)}</b></p>
<p>Study summary (paired comparisons of every block with block {baseline_block}, figures and tables):
{summary_link}. Every R2 here is affine: the {R2_DEFINITIONS['affine']}.</p>
<table>
<tr><th>block</th><th>report</th><th>verdict</th><th>runs</th><th>made by</th><th>reproduce (from the project
folder)</th></tr>
{chr(10).join(rows)}
</table>
<p>The commands rerun nothing that is finished: a block reuses the runs in <code>{e(out)}/runs/</code> and
trains only the missing ones.</p>
</body></html>
"""


def write_index(reports_dir: str | Path, baseline_block: int = BASELINE_BLOCK) -> Path:
    """Write ``reports_dir/index.html``; returns its path."""
    path = Path(reports_dir) / INDEX
    write_text_atomic(path, index_html(reports_dir, baseline_block))
    return path
