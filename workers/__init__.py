"""The worker side: Celery app, the step, context compilation, the LLM and tools."""
