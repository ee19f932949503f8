"""lm-eval hook shim for the YAMLs in this folder (``!function pat_tasks.<name>``).

The logic lives in ``pat_lite/evaluation/paper_tasks.py`` (docs/method.md §9: the paper's protocol and the
toy sets) and ``pat_lite/evaluation/realtext_tasks.py`` (held-out real text); this file only makes it
importable when lm-eval loads these YAMLs from any working directory — through the installed package, or,
if pat_lite is not installed, from the repository this folder belongs to (``data/lm_eval_tasks`` →
repository root).
"""

import sys
from pathlib import Path

try:
    import pat_lite.evaluation.paper_tasks as _impl
except ImportError:  # not installed: use the repository this file sits in
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import pat_lite.evaluation.paper_tasks as _impl
import pat_lite.evaluation.realtext_tasks as _realtext

first_letter_filter = _impl.first_letter_filter
load_toy = _impl.load_toy
paper_doc_to_target = _impl.paper_doc_to_target
paper_doc_to_text = _impl.paper_doc_to_text
paper_process_results = _impl.paper_process_results
process_arc = _impl.process_arc
process_boolq = _impl.process_boolq
process_copa = _impl.process_copa
process_hellaswag = _impl.process_hellaswag
process_mmlu = _impl.process_mmlu
process_multirc = _impl.process_multirc
process_openbookqa = _impl.process_openbookqa
process_piqa = _impl.process_piqa
process_rte = _impl.process_rte
process_siqa = _impl.process_siqa
process_toy = _impl.process_toy
process_wic = _impl.process_wic
process_winogrande = _impl.process_winogrande
process_wsc = _impl.process_wsc
realtext_cloze_dataset = _realtext.realtext_cloze_dataset
realtext_perplexity_dataset = _realtext.realtext_perplexity_dataset
realtext_validation_perplexity_dataset = _realtext.realtext_validation_perplexity_dataset
