"""User-facing errors: one line naming the problem and the fix."""


class S4SError(Exception):
    """A problem with the user's input or environment.

    The CLI prints the message as one line and exits with code 2, without a traceback.
    Messages name what is wrong and what to do instead.
    """


def choice_error(kind: str, value: object, allowed: "list[str] | tuple[str, ...]") -> S4SError:
    """`unknown solver 'foo'; choose one of: a, b, c`."""
    return S4SError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")
