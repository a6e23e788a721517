"""Checks of user-given values, with the one-line errors every config's `validate()` raises.

A config field or command option that takes a number is checked here, in one way: NaN is never accepted
(every comparison with NaN is false, so a bare `x <= 0` check lets it through and a loop `while t < x` never
ends), infinity only where a bound says so, and the error names the option, the value and what is allowed:

    check_number("seconds", cfg.seconds, low=0.0, low_open=True)      # finite, > 0
    check_number("num_envs", cfg.num_envs, low=1, integer=True)        # integer >= 1
    require(cfg.lanes >= 2, "lanes", ">= 2", cfg.lanes)
"""

from __future__ import annotations

import math
import numbers


def option_name(name: str) -> str:
    """`num_envs` -> `--num-envs` (a dotted config path such as `traffic.num_vehicles` stays as it is)."""
    return name if "." in name or name.startswith("-") else "--" + name.replace("_", "-")


def require(ok: bool, name: str, allowed: str, value: object, what: str = "") -> None:
    """Raise ValueError `invalid <what>: <name>=<value>; allowed: <allowed>` unless `ok`.

    Args:
        ok: the condition the value must meet.
        name: the option or config field (`seconds`, `traffic.num_vehicles`).
        allowed: what is allowed, in words (`> 0`, `one of highway, merge`).
        value: the value given.
        what: an optional noun for the message (`config`, `control config`); default: the option as typed.
    """
    if not ok:
        label = f"invalid {what}: {name}" if what else option_name(name)
        raise ValueError(f"{label}={value!r}; allowed: {allowed}")


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    allow_inf: bool = False,
    what: str = "",
) -> None:
    """Check that `value` is a real number (an integer if `integer`) within [low, high]; NaN never passes.

    Args:
        name: the option or config field, for the message.
        value: the value given.
        low, high: inclusive bounds (exclusive with `low_open` / `high_open`); None for no bound.
        integer: require an integer (bool is refused).
        allow_inf: accept +inf / -inf (when within the bounds); off by default.
        what: as in `require`.
    Raises:
        ValueError naming the option, the value and the allowed range.
    """
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    kind = "an integer" if integer else ("a number" if allow_inf else "a finite number")
    allowed = f"{kind} {' and '.join(parts)}".strip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        require(False, name, allowed, value, what)
    v = float(value)  # type: ignore[arg-type]
    ok = not math.isnan(v) and (allow_inf or math.isfinite(v))
    if integer:
        ok = ok and math.isfinite(v) and v == int(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    require(ok, name, allowed, value, what)
