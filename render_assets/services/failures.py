"""How a stage says it failed, and whether anything should try again."""

from __future__ import annotations


class RenderFailed(Exception):
    """A stage failed.

    `permanent`: no attempt can succeed (BullMQ must not retry either). `retry_step`: running the
    same step again may help (a provider hiccup), which is not so when its input is the problem.
    """

    def __init__(self, reason: str, *, permanent: bool, retry_step: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_step = retry_step and not permanent
