"""Cancellation that a driver lost.

A loop that runs until it is cancelled and catches ``Exception`` around a driver call can
outlive its cancellation: a driver may turn a cancellation that arrives mid-command into a
normal return or an error of its own (redis-py does, now and then, under load). Whoever
cancelled the loop (a stopping server, a task group, the end of a job) then waits for it
forever. Such loops call :func:`reraise_cancellation` after each driver call."""

import asyncio


def reraise_cancellation() -> None:
    """Raise ``CancelledError`` if the current task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
