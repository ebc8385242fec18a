"""listrank: dense retrievers trained on graded synthetic lists (SyCL), with honest evaluation."""

__version__ = "0.1.0"
