"""The notebook helper: setup from the right folder, quiet libraries, and pat_lite's source on the page."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from pathlib import Path

import pytest

from pat_lite.core.hsm import HSM
from pat_lite.core.mask import StraightThroughStep, gate_temperature
from pat_lite.notebook import page as notebook
from pat_lite.notebook.page import ProgressBarFilter, repository_root, setup, show_source, source_block

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_process_state():
    """setup() changes the working directory, stderr, warning filters, logger levels, the libraries'
    progress-bar switches and pandas' display options of this process: put them all back afterwards."""
    import datasets
    import huggingface_hub
    import pandas as pd
    import transformers

    hf_logging = transformers.utils.logging
    cwd, stderr = Path.cwd(), sys.stderr
    levels = {name: logging.getLogger(name).level for name in notebook.CHATTY_LOGGERS}
    verbosity = (hf_logging.get_verbosity(), datasets.utils.logging.get_verbosity())
    bars = (hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
            not huggingface_hub.utils.are_progress_bars_disabled())  # fmt: skip
    with (
        warnings.catch_warnings(),
        pd.option_context("display.max_colwidth", pd.get_option("display.max_colwidth")),
    ):
        yield
    os.chdir(cwd)
    sys.stderr = stderr
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    hf_logging.set_verbosity(verbosity[0])
    datasets.utils.logging.set_verbosity(verbosity[1])
    for enabled, enable in zip(bars, (hf_logging.enable_progress_bar, datasets.enable_progress_bars,
                                      huggingface_hub.utils.enable_progress_bars), strict=True):  # fmt: skip
        if enabled:
            enable()


def test_the_repository_root_is_found_from_the_notebooks_folder_only():
    assert repository_root(ROOT / "notebooks") == ROOT
    assert repository_root(ROOT) is None
    assert repository_root(ROOT / "tests") is None


def test_setup_started_in_notebooks_works_from_the_repository_root(tmp_path, restore_process_state):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    os.chdir(tmp_path / "notebooks")
    out = setup("artifacts/nbxx")
    assert Path.cwd() == tmp_path
    assert out == Path("artifacts/nbxx") and (tmp_path / "artifacts" / "nbxx").is_dir()


def test_setup_lets_tables_show_whole_cells(tmp_path, restore_process_state):
    import pandas as pd

    os.chdir(tmp_path)
    setup("artifacts/nbxx")
    long = "{'pruning_ratio': 0.25, 'hio_rank': 8, 'milestone_fraction': 0.3333333333333333}"
    assert (
        long in pd.Series([long]).to_frame()._repr_html_()
    )  # not cut to "{'pruning_ratio': ..., 'milest..."


def test_setup_applies_one_matplotlib_style(tmp_path, restore_process_state):
    import matplotlib.pyplot as plt

    os.chdir(tmp_path)
    with plt.rc_context():
        setup("out")
        assert plt.rcParams["axes.grid"] is True
        assert plt.rcParams["legend.fontsize"] == notebook.MATPLOTLIB_STYLE["legend.fontsize"]


def test_library_deprecation_warnings_are_ignored_but_ours_still_show(restore_process_state):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a fresh kernel does; quiet_libraries' filters go first
        notebook.quiet_libraries()
        warnings.warn_explicit("old API", FutureWarning, "modeling_utils.py", 1, module="transformers.x")
        warnings.warn_explicit("old API", DeprecationWarning, "peft_model.py", 1, module="peft.peft_model")
        warnings.warn_explicit("keeps 97 channels", UserWarning, "merge.py", 1, module="pat_lite.core.merge")
        warnings.warn_explicit("we call an old API", FutureWarning, "cell.py", 1, module="__main__")
    assert [str(w.message) for w in caught] == ["keeps 97 channels", "we call an old API"]


def test_quiet_libraries_turns_off_transformers_and_datasets_progress_bars(restore_process_state):
    import datasets
    import transformers

    notebook.quiet_libraries()
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert datasets.is_progress_bar_enabled() is False
    assert logging.getLogger("lm_eval").level == logging.ERROR


def test_the_stderr_filter_drops_tqdm_text_bars_and_passes_everything_else():
    from tqdm import tqdm

    sink = io.StringIO()
    stream = ProgressBarFilter(sink)
    for _ in tqdm(range(3), file=stream, mininterval=0):
        pass
    stream.write("UserWarning: something worth reading\n")
    assert sink.getvalue() == "UserWarning: something worth reading\n"


def test_show_source_shows_the_code_with_its_file_and_lines():
    block = source_block(gate_temperature)
    (piece,) = block.pieces
    assert piece.name == "pat_lite.core.mask.gate_temperature"
    assert piece.path == "pat_lite/core/mask.py"
    assert piece.source.startswith("def gate_temperature(")
    lines = (ROOT / piece.path).read_text().splitlines()
    assert lines[piece.first_line - 1].startswith("def gate_temperature(")
    assert "return 1.0 / (1.0 - math.log" in repr(block)


def test_show_source_renders_highlighted_html_for_methods_and_classes():
    page = source_block(HSM.forward, StraightThroughStep)._repr_html_()
    assert "pat_lite.core.hsm.HSM.forward" in page and "pat_lite/core/hsm.py" in page
    assert "class StraightThroughStep" not in page  # highlighted: keywords and names sit in their own spans
    assert '<span class="k">class</span>' in page and "StraightThroughStep" in page
    assert page.count('class="pat-lite-source"') == 2


def test_show_source_refuses_code_that_is_not_pat_lite():
    with pytest.raises(ValueError, match="not defined in pat_lite"):
        source_block(os.path.join)
    with pytest.raises(ValueError, match="at least one"):
        source_block()


def test_show_source_displays_the_block(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    show_source(gate_temperature)
    assert [p.name for p in shown[0].pieces] == ["pat_lite.core.mask.gate_temperature"]


# ------------------------------------------------------------------------------------------ HTML export
def test_the_offline_mathjax_loader_points_at_files_that_exist(tmp_path):
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from traitlets.config.loader import PyFileConfigLoader

    from pat_lite.notebook.export import install_offline_mathjax

    loader, config_file = install_offline_mathjax(tmp_path)
    script = loader.read_text().split('script.src = "')[1].split('"')[0]
    mathjax = Path(url2pathname(urlparse(script).path))
    assert mathjax.name == "MathJax.js" and mathjax.is_file()
    for name in urlparse(script).query.removeprefix("config=").split(","):  # the named configurations
        assert (mathjax.parent / "config" / f"{name}.js").is_file() or name == "Safe"
    assert 'webFont: "STIX-Web"' in loader.read_text()  # the one web font the package ships
    assert (mathjax.parent / "jax" / "output" / "HTML-CSS" / "fonts" / "STIX-Web" / "fontdata.js").is_file()
    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    assert config.HTMLExporter.mathjax_url == loader.resolve().as_uri()


def test_an_exported_page_loads_the_local_mathjax_not_a_cdn(tmp_path):
    import nbformat

    from pat_lite.notebook.export import export_html

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("$$M = \\sigma(\\tau W_M) + \\beta$$")]
    )
    nbformat.write(nb, tmp_path / "page.ipynb")
    html = export_html(tmp_path / "page.ipynb", tmp_path / "html", prefix=tmp_path / "env").read_text()
    assert (tmp_path / "env" / "share" / "pat_lite" / "mathjax-offline.js").as_uri() in html
    assert not re.search(r"https://[^\"']*mathjax", html, re.IGNORECASE), "MathJax still comes from a CDN"
