"""Notebooks exported to HTML that render their equations offline.

nbconvert's HTML export loads MathJax from a CDN, so a page exported or opened without the internet shows
raw LaTeX. The PyPI package jupyter-server-mathjax (a dev dependency) ships MathJax 2.7, the version
nbconvert's template is written for, with one web font, STIX-Web. `install_offline_mathjax` writes a small
loader script that selects that font and loads the local MathJax, and a `jupyter_config.py` that points
nbconvert's `HTMLExporter.mathjax_url` at the loader, both into the virtual environment (`make venv` runs
`python -m pat_lite.notebook.export`). Every Jupyter application started from that environment —
`jupyter nbconvert --to html` and JupyterLab's "Save and Export Notebook As > HTML" alike — then exports
pages whose equations render without the internet. `export_html` exports one notebook the same way.

The pages refer to files of this environment by their paths (file:// URLs): they render on this machine.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from pat_lite.utils.errors import PatLiteError

#: The combined configuration jupyter-server-mathjax ships (nbconvert's CDN URL names TeX-AMS_CHTML-full,
#: whose files that package does not have).
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
#: Defines MathJax's configuration before MathJax loads (the only web font shipped is STIX-Web; MathJax's
#: default, TeX, is missing and would end in "Math Processing Error"), then loads the local MathJax.js.
#: nbconvert's template adds its own settings in a text/x-mathjax-config block, which MathJax reads at start.
LOADER = """\
// Written by pat_lite.notebook.export: the local MathJax 2.7 of jupyter-server-mathjax, for offline pages.
window.MathJax = {{
  "HTML-CSS": {{availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}},
  SVG: {{font: "STIX-Web"}}
}};
(function () {{
  var script = document.createElement("script");
  script.src = "{mathjax}";
  document.head.appendChild(script);
}})();
"""
JUPYTER_CONFIG = """\
# Written by `python -m pat_lite.notebook.export` (make venv): HTML exports of notebooks (nbconvert, and
# JupyterLab's export) load the MathJax copy of jupyter-server-mathjax through this loader instead of a CDN,
# so an exported page renders its equations offline. Delete this file to go back to the CDN.
c.HTMLExporter.mathjax_url = "{loader}"
"""


def local_mathjax() -> Path:
    """The MathJax.js that jupyter-server-mathjax ships (one-line PatLiteError if it is not installed)."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    script = Path(spec.origin).parent / "static" / "MathJax.js" if spec and spec.origin else None
    if script is None or not script.is_file():
        raise PatLiteError(
            "no local MathJax: `pip install jupyter-server-mathjax` (a dev dependency of pat_lite) ships one"
        )
    return script


def install_offline_mathjax(prefix: str | os.PathLike = sys.prefix) -> tuple[Path, Path]:
    """Write the loader (`<prefix>/share/pat_lite/mathjax-offline.js`) and the environment's Jupyter config
    (`<prefix>/etc/jupyter/jupyter_config.py`, read by every Jupyter application started from it) that
    points HTML exports at it; returns both files."""
    loader = Path(prefix) / "share" / "pat_lite" / "mathjax-offline.js"
    loader.parent.mkdir(parents=True, exist_ok=True)
    loader.write_text(LOADER.format(mathjax=f"{local_mathjax().as_uri()}?config={MATHJAX_CONFIG}"))
    config = Path(prefix) / "etc" / "jupyter" / "jupyter_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(JUPYTER_CONFIG.format(loader=loader.resolve().as_uri()))
    return loader, config


def export_html(
    notebook: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    prefix: str | os.PathLike = sys.prefix,
) -> Path:
    """Export an (executed) notebook to HTML next to it or into `out_dir`, with the offline MathJax of the
    environment `prefix` (installed there first); returns the HTML file."""
    import nbformat
    from nbconvert import HTMLExporter

    loader, _ = install_offline_mathjax(prefix)
    source = Path(notebook)
    exporter = HTMLExporter(mathjax_url=loader.resolve().as_uri())
    body, _ = exporter.from_notebook_node(nbformat.read(source, as_version=4))
    target = Path(out_dir or source.parent) / f"{source.stem}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


if __name__ == "__main__":
    try:
        files = install_offline_mathjax()
    except PatLiteError as err:
        sys.exit(f"pat_lite: {err}")
    print(f"HTML exports render their equations offline: wrote {files[0]} and {files[1]}")
