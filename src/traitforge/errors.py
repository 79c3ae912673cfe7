"""Errors that end a command with one clear line (the CLI prints str(error) and exits 2)."""


class TraitforgeError(Exception):
    """A user-facing error: the message names the file/field and the problem in one line."""


class InputError(TraitforgeError):
    """Malformed user input: traits document, run spec, data file."""


class BudgetExceeded(TraitforgeError):
    """A stage would spend past the run's budget; everything so far is kept."""
