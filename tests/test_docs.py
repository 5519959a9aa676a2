"""The README and the documentation site: the site builds strictly, every command they show is
a real command with real options and block parameters, and the metric catalogue is the code's."""

import os
import re
import shlex
import subprocess
import sys

import typer
from conftest import REPO

from flyvis_study.cli import app
from flyvis_study.exploration.parameters import ExploreParameters
from flyvis_study.study.blocks import block_definition

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CLI = typer.main.get_command(app)


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) for every ``flyvis-study ...`` or ``papermill notebooks/...`` the pages
    show, in code blocks or inline code, with continuation lines joined and comments dropped."""
    found = []
    for page in PAGES:
        text = page.read_text().replace("\\\n", " ")
        snippets = re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S) + re.findall(r"`([^`\n]+)`", text)
        for snippet in snippets:
            for line in snippet.splitlines():
                line = line.split("  #")[0].strip()
                for part in re.split(r"&&|;", line):
                    part = part.strip()
                    if part.startswith(("flyvis-study ", "papermill notebooks/block",
                                        "papermill notebooks/explore_search")):
                        found.append((page.name, part))
    return found


def _check(line: str) -> list[str]:
    """What is wrong with one documented command line (empty: nothing)."""
    words = [w.strip("[]") for w in shlex.split(line.replace("\\|", "|").replace("...", ""))]  # [--opt X]: optional
    if words[0] == "papermill" and "explore_search" in words[1]:
        names = [words[i + 1] for i, w in enumerate(words) if w == "-p"]
        return _exploration_parameters(names)
    if words[0] == "papermill":  # papermill notebooks/blockN.ipynb out.ipynb -p name value
        number = int(re.search(r"block(\d+)\.ipynb", words[1]).group(1))
        names = [words[i + 1] for i, w in enumerate(words) if w == "-p"]
        return _block_parameters(number, names)
    name = words[1]
    if name not in CLI.commands:
        return [f"no command {name}"]
    command = CLI.commands[name]
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    problems = [f"{name}: no option {w.split('=')[0]}" for w in words[2:]
                if w.startswith("-") and w.split("=")[0] not in options]
    if name in ("block", "window") and len(words) > 2 and words[2].isdigit():
        names = [words[i + 1].split("=")[0] for i, w in enumerate(words) if w == "-p" and i + 1 < len(words)]
        problems += _block_parameters(int(words[2]), names)
    if name == "explore":
        problems += _exploration_parameters([words[i + 1].split("=")[0] for i, w in enumerate(words)
                                             if w == "-p" and i + 1 < len(words)])
    return problems


def _exploration_parameters(names: list[str]) -> list[str]:
    return [f"explore: no parameter {n}" for n in names if n not in ExploreParameters.model_fields and n != "..."]


def _block_parameters(number: int, names: list[str]) -> list[str]:
    fields = block_definition(number).parameters.model_fields
    return [f"block {number}: no parameter {n}" for n in names if n not in fields and n != "..."]


def test_every_documented_command_names_a_real_command_option_and_parameter():
    commands = documented_commands()
    assert len(commands) > 40 and {page for page, _ in commands} >= {"README.md", "commands.md", "vrest.md"}
    problems = [f"{page}: {line}: {p}" for page, line in commands for p in _check(line)]
    assert problems == []


def test_the_checker_catches_a_wrong_command_option_and_parameter():
    """The check above can fail: a misspelt command, option and block parameter are each caught."""
    assert _check("flyvis-study blok 1") == ["no command blok"]
    assert _check("flyvis-study block 3 --preet small") == ["block: no option --preet"]
    assert _check("flyvis-study block 3 -p lr_ratoi=0.05") == ["block 3: no parameter lr_ratoi"]
    assert _check("papermill notebooks/block8.ipynb out.ipynb -p budget 3") == []
    assert _check("papermill notebooks/block3.ipynb out.ipynb -p budget 3") == ["block 3: no parameter budget"]
    assert _check("flyvis-study explore -p bugdet=12") == ["explore: no parameter bugdet"]
    assert _check("papermill notebooks/explore_search.ipynb out.ipynb -p budget 12 -p proposr tpe") == [
        "explore: no parameter proposr"]
    assert _check("flyvis-study bench [--preset P] [--device cpu|cuda] [--replicaets R]") == [
        "bench: no option --replicaets"]


def test_the_metric_catalogue_page_is_the_codes():
    out = subprocess.run([sys.executable, str(REPO / "tools" / "docs_metrics.py"), "--check"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: every page in the navigation, no broken link or cross-reference,
    the API reference rendered from the docstrings."""
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    html = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "open_block" in html and "PairedComparison" in html
    assert "connectivity_R2_identity" in (tmp_path / "site" / "metrics" / "index.html").read_text()

