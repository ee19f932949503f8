"""What every tutorial notebook does first, and how it puts pat_lite's own source on the page.

`setup(output_dir)` replaces the setup cell the five notebooks used to repeat: it works from the repository
root when JupyterLab starts the kernel in notebooks/, creates the artifact folder, silences what teaches
nothing on the page (`quiet_libraries`), sets one matplotlib style for every figure and lets tables show
whole cells.

`show_source(obj, ...)` shows the code of a pat_lite function or class, highlighted, with the file and lines
it comes from: the notebooks never re-implement PAT, so the student reads the one source of truth beside
each equation (docs/method.md §4-§8) instead of a copy that could drift from it.
"""

from __future__ import annotations

import html
import inspect
import logging
import os
import sys
import textwrap
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

#: Libraries whose own deprecation notices (raised inside their code, about their code) a student cannot act
#: on. A warning pat_lite or the notebook causes is attributed to that caller and still shows.
LIBRARY_MODULES = r"(transformers|peft|accelerate|datasets|huggingface_hub|lm_eval|evaluate|torch)(\.|$)"
#: Loggers that report progress or internals at INFO/WARNING level while models load and tasks build.
CHATTY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "accelerate", "lm_eval", "lm-eval")
#: One look for every figure the notebooks draw.
MATPLOTLIB_STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "figure.titlesize": 11,
    "legend.fontsize": 8,
    "legend.framealpha": 0.9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}


def repository_root(start: Path) -> Path | None:
    """The repository folder when `start` is its notebooks/ folder (where `make lab` starts kernels)."""
    if start.name == "notebooks" and (start.parent / "pyproject.toml").is_file():
        return start.parent
    return None


def setup(output_dir: str | os.PathLike, quiet: bool = True) -> Path:
    """Prepare a notebook: repository root as working directory, `output_dir` created, libraries quiet,
    one matplotlib style. Returns `output_dir` as a Path (relative to the repository root)."""
    root = repository_root(Path.cwd())
    if root is not None:
        os.chdir(root)  # artifact and config paths in the notebooks are relative to the repository root
    if quiet:
        quiet_libraries()
    import matplotlib.pyplot as plt  # importing pyplot first lets the inline backend set its defaults

    plt.rcParams.update(MATPLOTLIB_STYLE)
    _show_figures_as_images()
    with suppress(ImportError):  # tables show whole cells: a recipe or an answer cut with "..." teaches less
        import pandas as pd

        pd.set_option("display.max_colwidth", None)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"working directory: {Path.cwd()} | artifacts -> {out}")
    return out


def _show_figures_as_images() -> None:
    """Let `display(fig)` show a bare matplotlib Figure (what pat_lite's plot helpers return, so that they
    never touch pyplot's state) as an image. The inline backend registers this only once pyplot has drawn
    a figure of its own, which a notebook that only uses the helpers never does."""
    with suppress(ImportError):
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("png")


def quiet_libraries() -> None:
    """Switch off progress bars and INFO/WARNING chatter of transformers, datasets, huggingface_hub,
    accelerate and lm-eval, ignore deprecation warnings raised inside those libraries, and drop tqdm's text
    progress bars from stderr (lm-eval draws one per task and request type). Everything else on stderr —
    including any warning pat_lite or the notebook causes — still shows."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with suppress(ImportError):
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    with suppress(ImportError):
        # The GGUF reader draws its own tqdm bar (a widget in a notebook), deaf to disable_progress_bar.
        from transformers import modeling_gguf_pytorch_utils as gguf_reader

        if not isinstance(gguf_reader.tqdm, partial):
            gguf_reader.tqdm = partial(gguf_reader.tqdm, disable=True)
    with suppress(ImportError):
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    with suppress(ImportError):
        import huggingface_hub

        huggingface_hub.utils.disable_progress_bars()
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
    if not isinstance(sys.stderr, ProgressBarFilter):
        sys.stderr = ProgressBarFilter(sys.stderr)


class ProgressBarFilter:
    """A stderr wrapper that drops tqdm's text progress bars and passes every other write through.

    tqdm redraws a text bar by writing "\\r<bar>" and ends it with a lone newline; nothing else a library
    writes to stderr starts with a carriage return."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._in_bar = False

    def write(self, text: str) -> int:
        if text.startswith("\r"):
            self._in_bar = True
            return len(text)
        if self._in_bar and text.strip() == "":
            self._in_bar = False
            return len(text)
        self._in_bar = False
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ... of the real stream
        return getattr(self.stream, name)


# ------------------------------------------------------------------------------------------ show_source
@dataclass
class SourcePiece:
    """The source of one object and where it lives."""

    name: str
    path: str  # relative to the folder that holds the pat_lite package
    first_line: int
    source: str

    @property
    def caption(self) -> str:
        last = self.first_line + self.source.count("\n") - 1
        return f"{self.name}  ({self.path}, lines {self.first_line}-{last})"


class SourceBlock:
    """Highlighted source of one or more objects; renders as HTML in Jupyter and as text elsewhere."""

    def __init__(self, pieces: list[SourcePiece]) -> None:
        self.pieces = pieces

    def __repr__(self) -> str:
        return "\n".join(f"# {p.caption}\n{p.source}" for p in self.pieces)

    def _repr_html_(self) -> str:
        parts = []
        for piece in self.pieces:
            parts.append(
                f'<div style="font-size: 85%; color: #555; margin: 6px 0 2px 0;">'
                f"<code>{html.escape(piece.name)}</code> — {html.escape(piece.caption[len(piece.name) :])}"
                "</div>"
            )
            parts.append(_highlight(piece.source))
        return "\n".join(parts)


def _highlight(code: str) -> str:
    """Pygments HTML with its own style rules (pygments comes with IPython; plain <pre> without it)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return f"<pre>{html.escape(code)}</pre>"
    # Rendered HTML outputs do not style <pre> as code everywhere (nbconvert's HTML does not): say so here.
    code_font = (
        "font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 13px)"
    )
    formatter = HtmlFormatter(
        cssclass="pat-lite-source", style="default", prestyles=f"{code_font}; padding: 6px; margin: 0"
    )
    style = formatter.get_style_defs(".pat-lite-source")
    return f"<style>{style}</style>\n" + highlight(code, PythonLexer(), formatter)


def source_piece(obj: Callable[..., Any] | type) -> SourcePiece:
    """The source of a function, method or class defined in pat_lite (anything else is refused: the point
    is to show this project's code, not a library's)."""
    target = inspect.unwrap(obj)
    module = inspect.getmodule(target)
    if module is None or not (module.__name__ == "pat_lite" or module.__name__.startswith("pat_lite.")):
        raise ValueError(f"show_source shows pat_lite's own code; {obj!r} is not defined in pat_lite")
    lines, first_line = inspect.getsourcelines(target)
    file = Path(inspect.getsourcefile(target) or module.__file__ or "")
    package_parent = Path(sys.modules["pat_lite"].__file__).resolve().parents[1]
    with suppress(ValueError):
        file = file.resolve().relative_to(package_parent)
    name = f"{module.__name__}.{getattr(target, '__qualname__', getattr(target, '__name__', str(target)))}"
    source = textwrap.dedent("".join(lines))  # a method reads as it would at the top level
    return SourcePiece(name=name, path=file.as_posix(), first_line=first_line, source=source)


def source_block(*objects: Callable[..., Any] | type) -> SourceBlock:
    """A `SourceBlock` of pat_lite objects, in the order given."""
    if not objects:
        raise ValueError("source_block needs at least one pat_lite function or class")
    return SourceBlock([source_piece(obj) for obj in objects])


def show_source(*objects: Callable[..., Any] | type) -> None:
    """Display the highlighted source of pat_lite functions/classes, each headed by its file and lines."""
    from IPython.display import display

    display(source_block(*objects))
