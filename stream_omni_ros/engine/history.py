"""Conversation history bounded by a number of turns and a token budget."""
from __future__ import annotations

import collections
from typing import Callable

from stream_omni_ros.engine.responder import HistoryTurn


class ConversationHistory:
    """Finished exchanges, oldest dropped first once max_turns or max_tokens is exceeded."""

    def __init__(self, max_turns: int, max_tokens: int,
                 count_tokens: Callable[[str], int]) -> None:
        self._max_turns = max_turns
        self._max_tokens = max_tokens
        self._count_tokens = count_tokens
        self._turns: collections.deque[tuple[HistoryTurn, int]] = collections.deque()

    def add(self, user: str, assistant: str) -> None:
        """Append an exchange and trim the oldest ones to the bounds."""
        turn = HistoryTurn(user, assistant)
        self._turns.append((turn, self._count_tokens(user) + self._count_tokens(assistant)))
        while self._turns and (len(self._turns) > self._max_turns
                               or sum(n for _, n in self._turns) > self._max_tokens):
            self._turns.popleft()

    def clear(self) -> None:
        """Forget every exchange."""
        self._turns.clear()

    @property
    def turns(self) -> tuple[HistoryTurn, ...]:
        """The kept exchanges, oldest first."""
        return tuple(turn for turn, _ in self._turns)
