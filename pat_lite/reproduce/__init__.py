"""`pat-lite reproduce`: the committed studies behind `results/` — methods (`methods`), suites and their grids
(`suites`), one row (`rows`), the runner that resumes row by row (`runner`), tables and figures (`report`),
what PAT's mask chose (`diagnostics`), the committed tables beside the paper's (`results_view`) and the toy
world's recovery gate (`recovery`)."""
