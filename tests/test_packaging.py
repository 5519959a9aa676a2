"""The wheel ships the configs, presets and notebooks; provenance names the package, commit, torch, device."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


@pytest.mark.slow
def test_wheel_contains_package_data_and_every_subpackage(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("flyvis_study-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("params/two_stage.yaml", "params/gold_standard.yaml", "params/standard_2_epochs.yaml",
                 "params/lr_drop.yaml", "params/two_stage_constant_schedule.yaml", "params/silent_anchor.yaml",
                 "params/observed_target.yaml", "params/presets/tiny.yaml",
                 "params/presets/small.yaml", "params/presets/full.yaml", "notebooks/study_summary.ipynb",
                 "notebooks/explore.ipynb", *(f"notebooks/block{n}.ipynb" for n in range(9))):
        assert f"flyvis_study/{name}" in names, name
    assert "flyvis_study/world/flyvis_models/flow_0000_000.json" in names  # the built-in flyvis network
    for name in ("index.html.j2", "conf.json"):  # the offline HTML template of the reports
        assert f"flyvis_study/report/templates/offline/{name}" in names, name
    packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "flyvis_study").rglob("__init__.py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, package
    assert not any(n.startswith("flyvis_study/notebooks/sources") for n in names)
    # installed (not from the checkout), the package finds its data with importlib.resources
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = ("import flyvis_study, flyvis_study.resources as r; from flyvis_study.config import load_run_config; "
             f"assert flyvis_study.__file__.startswith(r'{target}'), flyvis_study.__file__; "
             "assert r.checkout_root() is None; "
             f"assert r.shipped_configs() == {sorted(p.name for p in (REPO / 'params').glob('*.yaml'))!r}; "
             "assert load_run_config('two_stage.yaml', preset='tiny').training.alternate_training; "
             "assert r.notebook_file('block3.ipynb').is_file(); "
             "from flyvis_study.report.html import TEMPLATES; assert (TEMPLATES / 'offline' / 'conf.json').is_file(); "
             "from flyvis_study.flyvis_ids import builtin_model_file; "
             "assert builtin_model_file('flow/0000/000').is_file(); "
             "print('ok')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert out.stdout.strip() == "ok", out.stderr
    # a damaged installed file is refused, with the installed package's remedy
    shipped = target / "flyvis_study" / "params" / "two_stage.yaml"
    shipped.write_text(shipped.read_text() + "training: {n_epochs: 9}\n")
    probe = ("from flyvis_study.config import load_run_config; from flyvis_study.resources import PackageDataError\n"
             "try:\n    load_run_config('two_stage.yaml', preset='tiny')\n"
             "except PackageDataError as err:\n    print(err)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert "two_stage.yaml: damaged package data (size" in out.stdout, out.stdout + out.stderr
    assert "pip install --force-reinstall" in out.stdout


def test_package_manifest_is_current():
    """flyvis_study/package_data.json holds the size and sha256 of every shipped config, preset,
    notebook and built-in network as committed (the package refuses a file that differs)."""
    out = subprocess.run([sys.executable, str(REPO / "tools" / "package_manifest.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, f"stale: {out.stdout}; run `python tools/package_manifest.py`"


def _damage(path, how: str) -> None:
    text = path.read_text()
    if how == "comment header only":  # parses as an empty mapping: the defaults, under the config's name
        path.write_text("".join(line for line in text.splitlines(keepends=True) if line.startswith("#")))
    else:  # "truncated"
        path.write_text(text[: len(text) // 3])


@pytest.mark.parametrize("file,how,command", [
    ("params/two_stage.yaml", "comment header only", ["block", "1"]),
    ("params/presets/tiny.yaml", "truncated", ["block", "0"]),
    ("flyvis_study/world/flyvis_models/flow_0000_000.json", "truncated",
     ["block", "0", "-p", "ground_truth_models=[flow/0000/000]"]),
    ("notebooks/block0.ipynb", "truncated", ["block", "0"]),
    ("notebooks/study_summary.ipynb", "truncated", ["report"]),
])
def test_damaged_package_data_is_one_line_before_any_compute(tmp_path, file, how, command):
    """A copy of the checkout with one shipped file damaged: the CLI stops with one line naming
    the file, what differs and how to restore it, exit 2, and writes nothing."""
    copy = tmp_path / "checkout"
    for part in ("flyvis_study", "params", "notebooks"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    _damage(copy / file, how)
    out_dir = tmp_path / "out"
    if command == ["report"]:  # a folder holding a block file, as the report needs
        out_dir.mkdir()
        shutil.copy(REPO / "reports" / "examples" / "small" / "block0.nc", out_dir / "block0.nc")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = subprocess.run([sys.executable, "-c", "from flyvis_study.cli import main; main()", *command,
                          "--preset", "tiny", "--out", str(out_dir)] if command != ["report"] else
                         [sys.executable, "-c", "from flyvis_study.cli import main; main()", "report", "--out",
                          str(out_dir)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{file}: damaged package data" in lines[0], lines
    assert f"git checkout -- {file}" in lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_provenance_names_version_commit_torch_and_device():
    import torch

    from flyvis_study.provenance import provenance

    p = provenance("cpu")
    assert p["package_version"] == "0.1.0" and p["torch_version"] == torch.__version__
    assert p["device"] == "cpu" and p["device_name"].endswith("threads)")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert p["git_commit"].startswith(head.stdout.strip())
    assert all(isinstance(v, str) and type(v) is str for v in p.values())  # netCDF attributes


def test_shipped_configs_are_overlays_on_the_defaults():
    """Each hyperparameter value lives once: the YAML files set only what differs from the pydantic defaults."""
    from flyvis_study.config import RunConfig, load_run_config

    default = RunConfig().training
    gold = load_run_config("gold_standard.yaml").training
    two = load_run_config("two_stage.yaml").training
    assert gold == default.model_copy(update={"n_epochs": 1, "alternate_training": False})
    assert two == default.model_copy(update={"n_epochs": 2, "alternate_training": True})
    assert (two.alternate_joint_ratio, two.alternate_lr_ratio) == (0.4, 0.1)


def test_provenance_is_dirty_for_code_changes_not_for_results(tmp_path):
    """A checkout whose tracked results (reports/) changed is not dirty; one whose code changed is."""
    checkout = tmp_path / "checkout"
    for part in ("flyvis_study/provenance.py", "reports/README.md"):
        (checkout / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / part, checkout / part)
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    probe = [sys.executable, "-c", "import sys; sys.path.insert(0, 'flyvis_study'); import provenance; "
             "provenance.PACKAGE_ROOT = provenance.Path('flyvis_study').resolve(); print(provenance.git_commit())"]

    def commit() -> str:
        return subprocess.run(probe, cwd=checkout, capture_output=True, text=True, check=True).stdout.strip()

    assert not commit().endswith("+dirty")
    (checkout / "reports" / "README.md").write_text("a block was written here")
    assert not commit().endswith("+dirty") and len(commit()) == 40
    (checkout / "flyvis_study" / "provenance.py").write_text((checkout / "flyvis_study" / "provenance.py")
                                                              .read_text() + "\n# edited\n")
    assert commit().endswith("+dirty")
