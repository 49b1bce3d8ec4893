"""Graph failures in plain words for the page: what happened and what the user can do about it."""

from __future__ import annotations

from dfocus_refocus.ui.graph import (
    GoalAbortedError,
    GoalCanceledError,
    GoalRejectedError,
    GraphTimeoutError,
    NodeUnavailableError,
)

# What each action does, in the user's words.
_TASKS = {"render": "Rendering", "preview": "The preview", "capture": "Capturing", "sequences": "Listing sequences"}


class UiError(ValueError):
    """A request from the page is malformed or impossible (bad control values, unknown sequence)."""


def plain_message(task: str, exc: BaseException) -> str:
    """One or two sentences for the page's error banner."""
    what = _TASKS.get(task, task.capitalize())
    if isinstance(exc, NodeUnavailableError):
        return (
            f"{what} failed: the {exc.node} node is not running (no answer from its '{exc.interface}' "
            f"interface within {exc.waited_s:g} s). Start it and try again."
        )
    if isinstance(exc, GraphTimeoutError):
        return f"{what} failed: {exc.what} took longer than {exc.waited_s:g} s, so it was stopped. Try again."
    if isinstance(exc, GoalRejectedError):
        return f"{what} failed: the request was refused ({exc})."
    if isinstance(exc, GoalCanceledError):
        return f"{what} was cancelled."
    if isinstance(exc, GoalAbortedError):
        reason = str(exc) or "no reason given"
        if "no sequence" in reason.lower():
            return f"{what} failed: no sequence has been captured yet. Press Capture first ({reason})."
        return f"{what} failed: {reason}"
    if isinstance(exc, UiError):
        return f"{what} failed: {exc}"
    return f"{what} failed unexpectedly: {type(exc).__name__}: {exc}"
