"""What a config value may be: a rule is a test and the words that describe what it allows.

The checks in ``bench.config``, the knobs declared beside each schedule in
``bench.schedules`` and the arguments a component declares beside itself (``checked``) use
these, so an error message always says what is allowed.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable
from typing import Any

# (test, description of the allowed values)
Rule = tuple[Callable[[Any], bool], str]


def number(x: Any) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def integer(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def one_of(*allowed: str) -> Rule:
    return (lambda x: x in allowed, ", ".join(allowed))


def or_null(rule: Rule) -> Rule:
    return (lambda x: x is None or rule[0](x), f"null or {rule[1]}")


POSITIVE: Rule = (lambda x: number(x) and x > 0, "a number > 0")
NON_NEGATIVE: Rule = (lambda x: number(x) and x >= 0, "a number >= 0")
FRACTION: Rule = (lambda x: number(x) and 0 <= x <= 1, "a number in [0, 1]")
OPEN_FRACTION: Rule = (lambda x: number(x) and 0 < x < 1, "a number in (0, 1)")
DECAY: Rule = (lambda x: number(x) and 0 < x <= 1, "a number in (0, 1]")
AT_LEAST_ONE: Rule = (lambda x: number(x) and x >= 1, "a number >= 1")
PROPER_FRACTION: Rule = (lambda x: number(x) and 0 <= x < 1, "a number in [0, 1)")
MOMENTUM: Rule = PROPER_FRACTION  # a momentum is a proper fraction
COUNT: Rule = (lambda x: integer(x) and x >= 1, "an integer >= 1")
COUNT_OR_NULL: Rule = or_null(COUNT)
NON_NEGATIVE_INT: Rule = (lambda x: integer(x) and x >= 0, "an integer >= 0")
BOOLEAN: Rule = (lambda x: isinstance(x, bool), "true or false")
NAME: Rule = (lambda x: isinstance(x, str) and x.strip() != "", "a non-empty string")
# A figure's printed width in inches: narrower than a two-column paper's narrowest column (3.25),
# the labels no longer fit.
FIGURE_WIDTH: Rule = (
    lambda x: number(x) and 3.25 <= x <= 20,
    "a width in inches from 3.25 to 20 (6.5: a paper's text width; 3.3: one column of a two-column "
    "paper)",
)


def did_you_mean(got: str, allowed: list[str]) -> str:
    """``" did you mean X?"`` where one of ``allowed`` is close to ``got`` (a typo), else ``""``."""
    near = difflib.get_close_matches(str(got), [str(a) for a in allowed], n=2, cutoff=0.6)
    return f" did you mean {' or '.join(near)}?" if near else ""


def checked(**rules: Rule) -> Callable[[Any], Any]:
    """Declare the rules of a component's arguments beside it: ``@checked(width=COUNT)`` on a
    model factory (or a data module's class) makes the checks before any run
    (``bench.config.argument_problems``) test the config node's values against them."""

    def declare(component: Any) -> Any:
        component.rules = rules
        return component

    return declare


def round_sig(x: float, digits: int, up: bool) -> float:
    """``x`` rounded up (or down) to ``digits`` significant digits: a bound to print that stays
    on the right side of ``x``."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    q = x / scale
    q = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
    return float(f"{q * scale:.{digits}g}")


def interval(
    low: float, high: float, ok: Callable[[float], bool] | None = None
) -> tuple[float, float] | None:
    """Short printable bounds ``[a, b]`` inside ``[low, high]`` (a rounded up, b down, to as few
    significant digits as keep ``a <= b`` and, when given, ``ok(a)`` and ``ok(b)``); None when
    there are none."""
    if low > high:
        return None
    for digits in range(2, 10):
        a, b = round_sig(low, digits, up=True), round_sig(high, digits, up=False)
        if a <= b and (ok is None or (ok(a) and ok(b))):
            return a, b
    return None
