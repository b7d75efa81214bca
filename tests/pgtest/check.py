"""check: a failed check is a TestFailure (an AssertionError: pytest reports its message)."""


class TestFailure(AssertionError):
    """A failed check: the message says what was expected and what came."""

    __test__ = False  # not a test class, whatever pytest's name patterns say


def check(condition, message):
    if not condition:
        raise TestFailure(message)
