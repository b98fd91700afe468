"""memq: MemGPT-style stateful LLM agents on a Celery worker fleet."""

__version__ = "0.1.0"
