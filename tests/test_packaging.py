"""The package ships what it needs: an installed wheel runs a recipe from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "pat_lite").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages"


def test_every_shipped_data_folder_is_listed_so_the_build_does_not_warn_about_it():
    """configs/ and data/ ship as pat_lite.resources.{configs,data}; a subfolder not listed as a package
    still ships through package-data, but setuptools then warns about it on every install."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    shipped = {"configs": "pat_lite.resources.configs", "data": "pat_lite.resources.data"}
    folders = {
        ".".join([package, *path.relative_to(ROOT / top).parts])
        for top, package in shipped.items()
        for path in (ROOT / top).rglob("*")
        if path.is_dir() and "__pycache__" not in path.parts
    }
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages"


def test_shipped_files_are_found_through_the_package():
    from pat_lite.resources import configs_dir, data_dir, recipe_names

    assert {"tiny", "smollm2", "llama2-7b-a100"} <= set(recipe_names())
    assert (configs_dir() / "bench" / "tinyllama-cpu.yaml").is_file()
    assert (data_dir() / "toy" / "instructions.jsonl").is_file()
    assert (data_dir() / "realtext" / "tune.jsonl").is_file()
    assert (data_dir() / "lm_eval_tasks" / "realtext_cloze.yaml").is_file()
    assert (data_dir() / "lm_eval_tasks" / "_toy_loglik_template_yaml").is_file()
    assert (data_dir() / "tiny_base" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_wheel_installed_into_a_fresh_environment_trains_from_another_directory(tmp_path):
    """The wheel carries the tiny base: `--config tiny` trains with an empty project cache, which stays
    empty (nothing is built on first use)."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
         str(ROOT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("pat_lite-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The fresh environment borrows the third-party packages of this one (a plain path entry, so the
    # editable pat_lite of this checkout is NOT visible there) and gets pat_lite from the wheel only.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    borrowed = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PAT_LITE_CACHE": str(cache)}
    where = subprocess.run(
        [python, "-c", "import pat_lite.resources as r, json; "
         "print(json.dumps([r.__file__, str(r.configs_dir()), str(r.data_dir())]))"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(venv), f"{path} does not come from the installed wheel"
    run = subprocess.run(
        [venv / "bin" / "pat-lite", "train", "--config", "tiny", "max_steps=2", "save_steps=100",
         "logging_steps=1", "output_dir=run", "report_to=[]"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    summary = json.loads((elsewhere / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["merged_hidden_size"] == 96
    assert list(cache.iterdir()) == []
