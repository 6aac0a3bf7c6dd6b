"""The domain's own vocabulary of history keeping: the two history modes and how local history is kept short.

Settings read them from the environment (:mod:`cosmos_history.settings` re-exports them); the domain
never imports settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HistoryMode = Literal["local", "service"]
HISTORY_MODES: tuple[HistoryMode, ...] = ("local", "service")
Compaction = Literal["summarize", "window", "none"]
COMPACTIONS: tuple[Compaction, ...] = ("summarize", "window", "none")


@dataclass(frozen=True)
class CompactionSettings:
    """How local-mode history is kept short (see ``cosmos_history/domain/compaction.py``)."""

    strategy: Compaction = "summarize"
    max_input_tokens: int = 8000

    @property
    def document_tokens(self) -> int | None:
        """The token bound of a document's history: 60% of the input budget (the rest is room for the summary,
        the new message and the turn's tool rounds); ``None`` for ``none`` (message count only)."""
        return None if self.strategy == "none" else int(self.max_input_tokens * 0.6)

    @property
    def summary_chars(self) -> int:
        """The longest running summary kept: 15% of the input budget, at 4 characters a token."""
        return int(self.max_input_tokens * 0.15) * 4
