"""golora's training worker: (Q)LoRA on Go instruction/output pairs -> a vLLM-servable adapter.

Entry points (``python -m golora_trainer ...``):

- ``run``: what the LoraTraining Job runs; one JSON ``TrainerConfig`` (env GOLORA_CONFIG or
  ``--config FILE``), progress and result patched onto the CR's status subresource.
- ``train``: the same code path from plain flags (``--model --data --output --epochs
  --max-samples``, the blog's command line) for people without a cluster.
- ``tiny``: build the tiny Qwen2-architecture model + Go BPE tokenizer used on CPU.
"""

__version__ = "0.1.0"
