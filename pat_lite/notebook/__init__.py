"""What the tutorial notebooks show, computed here rather than in their cells: the page setup and pat_lite's
source beside the equations (`page`), training-run plots (`plots`), the evaluation notebook's tables and
figures (`evaluation`) and the ablation notebook's runs (`ablations`)."""
