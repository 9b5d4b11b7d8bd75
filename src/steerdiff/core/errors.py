"""The one exception type steerdiff raises for bad input: its message names the problem and the fix."""


class SteerdiffError(ValueError):
    """Bad input or a missing/corrupt file. The message says what is wrong and how to fix it."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`SteerdiffError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SteerdiffError(message)
