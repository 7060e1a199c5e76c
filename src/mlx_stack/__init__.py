"""mlx-stack: an always-on, multi-tier local LLM server for Apple Silicon."""

__version__ = "0.1.0"
