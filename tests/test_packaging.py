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
