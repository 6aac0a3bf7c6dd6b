"""What the model providers' errors mean: the rules live in the domain (:mod:`cosmos_history.domain.model_errors`)."""

from __future__ import annotations

from cosmos_history.domain.model_errors import is_unknown_thread, model_call_error

__all__ = ["is_unknown_thread", "model_call_error"]
