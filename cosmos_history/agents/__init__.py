"""The app's agents: discovery, the catalog, and helpers for agent modules (:func:`delegate`)."""

from cosmos_history.agents.delegate import delegate

__all__ = ["delegate"]
