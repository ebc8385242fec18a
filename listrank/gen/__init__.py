"""`listrank gen`: LLM-written passages at graded relevance levels for real queries (SyCL)."""

from listrank.gen.generate import GenConfig, GenSummary, export_beir, generate

__all__ = ["GenConfig", "GenSummary", "export_beir", "generate"]
