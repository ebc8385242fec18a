"""Generation backends, one module each; see `base` for the interface and the registry."""

from listrank.gen.backends.base import Backend, Completion, Request, Sampling, get_backend, register

__all__ = ["Backend", "Completion", "Request", "Sampling", "get_backend", "register"]
