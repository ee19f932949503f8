"""Scoring models: a fast log-likelihood multiple-choice scorer (`mc`) and lm-evaluation-harness runs of
the paper's 14 tasks and the embedded task sets, in both scorings (`lmeval`, `paper_tasks`), and of the
held-out real text (perplexity and cloze, `realtext_tasks`)."""
