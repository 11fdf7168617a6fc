"""The one outcome loop both watchers share: run each action, then the caller's callback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from ldmscan.recording import Outcome

from .actions import Action

log = logging.getLogger(__name__)


def dispatch(
    outcomes: Iterable[Outcome],
    actions: Sequence[Action],
    on_outcome: Callable[[Outcome], None] | None = None,
) -> int:
    """Hand every outcome to the actions and on_outcome; returns how many there were. An action
    that fails is logged and the others still run: one bad webhook must not stop a watcher."""
    count = 0
    for outcome in outcomes:
        count += 1
        for action in actions:
            try:
                action(outcome)
            except Exception:
                log.exception("action %s failed for %s", type(action).__name__, outcome.uri)
        if on_outcome is not None:
            on_outcome(outcome)
    return count
