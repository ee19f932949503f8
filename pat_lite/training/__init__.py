"""PAT (and plain LoRA) tuning with the Hugging Face Trainer and stock peft, and the run folder it writes."""
