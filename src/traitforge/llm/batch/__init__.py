"""Provider batch APIs (OpenAI, Anthropic, Gemini) feeding the LLM cache at half price."""

from traitforge.llm.batch.runner import BatchReport, BatchRunner, batch_provider, json_request, prefetch_batch

__all__ = ["BatchReport", "BatchRunner", "batch_provider", "json_request", "prefetch_batch"]
