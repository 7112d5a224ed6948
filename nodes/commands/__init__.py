"""Subcommands of the ``streetloc`` CLI, one module each (see ``nodes.cli.COMMANDS``), and the argument
types they share."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def pair_of_ints(text: str, *, option: str = "--size", names: str = "WIDTHxHEIGHT",
                 low: int = 1, high: int = 1 << 16) -> tuple[int, int]:
    """The one ``AxB`` parser of the command layer (``320x240`` -> ``(320, 240)``).

    ``option`` and ``names`` only shape the error message; each side must lie in ``[low, high]``.
    Raises ``argparse.ArgumentTypeError`` naming the option and the value.
    """
    a, sep, b = text.strip().lower().partition("x")
    try:
        pair = (int(a), int(b))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} {text!r} is not {names}, e.g. 320x240") from None
    if not sep or min(pair) < low or max(pair) > high:
        raise argparse.ArgumentTypeError(f"{option} {text!r}: both numbers of {names} must be {low}..{high}")
    return pair
