"""Run by `torchrun --nproc_per_node 2` in test_train.py: the normal entry point under DDP (gloo, CPU),
then every rank writes the mask it ended with so the test can compare them."""

import os
import sys

from safetensors.torch import save_file

from pat_lite.core.attach import get_pat
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train

if __name__ == "__main__":
    result = train(load_train_config(None, sys.argv[1:]))
    rank = int(os.environ.get("RANK", "0"))
    proxies = get_pat(result.model).mask.proxies.detach().cpu().contiguous()
    save_file({"proxies": proxies}, os.path.join(result.output_dir, f"mask_rank{rank}.safetensors"))
