"""What the domain decides about every session, configured once: the history mode of a new session and the
budget its document is kept within.

The runtime builds one :class:`HistoryPolicy` from settings and hands it to the turn service and the
session store; repositories only store what they are given and report sizes (#27: policy in the domain,
storage in the adapters), so the same adapter serves any policy and a test states the policy it runs under.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmos_history.domain.budget import HistoryBudget
from cosmos_history.domain.modes import HistoryMode


@dataclass(frozen=True)
class HistoryPolicy:
    """A new session's mode when the request names none, and the local-mode document's budget."""

    default_mode: HistoryMode = "local"
    budget: HistoryBudget = field(default_factory=HistoryBudget)

    def mode_of_new(self, requested: HistoryMode | None) -> HistoryMode:
        """The mode a new session gets: the one requested, else the default."""
        return requested or self.default_mode


DEFAULT_POLICY = HistoryPolicy()
"""Local mode, the default budget: the policy of callers that configure none (scripts, the library API)."""
