"""golora: a Kubernetes operator that turns Go repositories into a LoRA adapter served by vLLM."""

__version__ = "0.1.0"
