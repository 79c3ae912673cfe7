"""Backend error classes: the client retries RetryableError and stops on everything else."""

from traitforge.errors import TraitforgeError


class BackendError(TraitforgeError):
    """A backend call failed for good (auth, not found, bad request, junk that re-asks did not fix)."""


class RetryableError(Exception):
    """A transient failure: 429, 5xx, timeout, dropped connection. retry_after is in seconds if known;
    status is the HTTP status where there was one (the client cools every caller down after a 429)."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class MissingAPIKey(BackendError):
    def __init__(self, backend: str, env_var: str):
        super().__init__(f"{backend}: no API key: set the environment variable {env_var}")
        self.env_var = env_var


class Refused(BackendError):
    """The provider refused or safety-blocked the request: an outcome, never an empty answer.
    `outcome` is "refused" or "blocked"; `reason` the provider's own word (stop_reason "refusal",
    finish_reason SAFETY / content_filter, message.refusal text...)."""

    def __init__(self, model: str, outcome: str, reason: str, *, cached: bool = False):
        super().__init__(f"{model}: {outcome} by the provider ({reason or 'no reason given'})"
                         + (" [cached outcome]" if cached else ""))
        self.model = model
        self.outcome = outcome
        self.reason = reason
        self.cached = cached

    @property
    def skip_reason(self) -> str:
        """Why a unit of work gave nothing (the step engine records it as the unit's skip): the
        outcome first ("refused" / "blocked"), then the provider's reason and the model."""
        return f"{self.outcome}: {self.reason or 'no reason given'} ({self.model}{', cached' if self.cached else ''})"
