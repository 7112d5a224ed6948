"""A node's parameters, declared once: the node's ``Params`` msgspec Struct and nothing else.

(Any msgspec Struct or dataclass works the same way, e.g. a command's training config.)

Each field carries its type, default, bounds (``msgspec.Meta`` ``ge``/``gt``/``le``/``lt``, ``pattern``,
``min_length``) and its meaning (``Meta(description=...)``, with the unit). Everything else derives from it:

- ``load_params``: defaults, then a TOML file, then ``key=value`` overrides, then typed values: what the
  node process runs and what ``streetloc launch --check`` validates a launch file's ``params`` with;
- ``add_params_arguments`` / ``params_from_args``: a command's argparse options (name, type, default,
  help, bounds, choices) and the Struct back from the parsed namespace (``streetloc replay``,
  ``streetloc record``, ``streetloc node run``, ``python -m nodes.<module>``);
- ``params_markdown``: the parameter reference in docs/launch.md (``python -m nodes.params`` rewrites it,
  a test keeps it in sync) and ``streetloc node params``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

# -- what a Struct declares ---------------------------------------------------------------------


@dataclass(frozen=True)
class ParamField:
    """One parameter: ``type`` is the msgspec type with its ``Meta`` unwrapped (bounds live on it)."""

    name: str
    type: mi.Type
    default: Any  # msgspec.NODEFAULT when required
    description: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the Meta's ``extra``


    @property
    def required(self) -> bool:
        return self.default is msgspec.NODEFAULT

    @property
    def type_name(self) -> str:
        return _type_name(self.type)

    @property
    def choices(self) -> tuple[Any, ...]:
        """The allowed values of a Literal/Enum field, or of a string whose pattern is a plain
        alternation (``^(jpeg|bgr8)$``); () otherwise."""
        return _choices(self.type)

    @property
    def default_text(self) -> str:
        """The default as a user types it (``32x24`` for a pair of ints); ``(required)`` if none."""
        return format_value(self.default, self.type)


def param_fields(params_type: type[msgspec.Struct]) -> list[ParamField]:
    """The parameters of a Struct in declaration order."""
    out = []
    for f in msgspec.inspect.type_info(params_type).fields:  # type: ignore[attr-defined]
        t, description, extra = f.type, "", {}
        if isinstance(t, mi.Metadata):
            description = (t.extra_json_schema or {}).get("description", "") or ""
            extra = dict(t.extra or {})
            t = t.type
        default = f.default
        if default is msgspec.NODEFAULT and f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()  # msgspec stores an empty list/dict default as a factory
        out.append(ParamField(f.name, t, default, description, extra))
    return out


def describe_params(params_type: type[msgspec.Struct]) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, description) of each parameter, from the Struct's annotations."""
    return [(f.name, f.type_name, f.default, f.description) for f in param_fields(params_type)]


def _type_name(t: mi.Type) -> str:
    """``float``, ``list of str``, ``table of float``, ``bool or str``, ``float or none``."""
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return f"list of {_type_name(t.item_type)}"
    if isinstance(t, mi.DictType):
        return f"table of {_type_name(t.value_type)}"
    if isinstance(t, mi.UnionType):
        return " or ".join(_type_name(x) for x in t.types)
    if _is_pair(t):
        return "pair of int"
    if isinstance(t, mi.LiteralType):
        return _type_name(mi.type_info(type(t.values[0])))
    if isinstance(t, mi.CustomType):
        return t.cls.__name__.lower()
    return type(t).__name__.removesuffix("Type").lower()


_ALTERNATION = re.compile(r"^\^\(([A-Za-z0-9_.-]+(?:\|[A-Za-z0-9_.-]+)*)\)\$$")


def _choices(t: mi.Type) -> tuple[Any, ...]:
    if isinstance(t, mi.LiteralType):
        return tuple(t.values)
    if isinstance(t, mi.EnumType):
        return tuple(m.value for m in t.cls)
    if isinstance(t, mi.StrType) and t.pattern and (m := _ALTERNATION.match(t.pattern)):
        return tuple(m.group(1).split("|"))
    return ()


# -- loading (node process, launch files) --------------------------------------------------------

_T = TypeVar("_T")


class ParamError(ValueError):
    """Bad parameters; ``problems`` lists each as (key, message), ``key`` naming the first (None when the
    problem is not one parameter's, e.g. a file). The message is one line naming every bad one."""

    def __init__(self, message: str, key: str | None = None,
                 problems: Sequence[tuple[str | None, str]] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.problems = list(problems) or [(key, message)]


def checked_params(params: msgspec.Struct, node: str = "node") -> msgspec.Struct:
    """``params`` with its constraints checked (``msgspec.Meta`` bounds: constructing a Struct in code
    does not check them). Raises ValueError naming every bad parameter."""
    return _convert_params(msgspec.to_builtins(params), type(params), node, strict=True)


def load_params(params_type: type[msgspec.Struct], *, file: str | None = None,
                overrides: Iterable[str] = (), values: Mapping[str, Any] | None = None,
                node: str = "node") -> msgspec.Struct:
    """Defaults, then a TOML file (top-level keys, or a ``[params]`` table), then ``key=value``
    overrides, then ``values`` (typed, from command-line options). Raises ParamError (a ValueError)
    naming every unknown key and every ill-typed or out-of-range value (not only the first)."""
    known = {f.name for f in param_fields(params_type)}
    raw: dict[str, Any] = {}
    if file:
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{file}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{file}: not a TOML text file: byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start} is not UTF-8") from None
        except OSError as exc:
            raise ValueError(f"{file}: cannot read: {exc.strerror or exc}") from None
        raw.update(data.get("params", data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamError(f"node {node}: --param {item!r} is not key=value")
        raw[key.strip()] = _parse_value(value.strip())
    raw.update(values or {})
    problems: list[tuple[str | None, str]] = []
    for key in list(raw):
        if key not in known:
            where = f" in {file}" if file else ""
            problems.append((key, f"unknown parameter {key!r}{where}; known: {', '.join(sorted(known)) or '(none)'}"))
            del raw[key]
    return _convert_params(raw, params_type, node, problems=problems)


def _convert_params(raw: dict[str, Any], params_type: type[_T], node: str, *, strict: bool = False,
                    problems: list[tuple[str | None, str]] | None = None) -> _T:
    """``raw`` as ``params_type``. msgspec stops at the first bad value, so each bad key is noted, dropped
    and the rest converted again: one ParamError names them all."""
    problems = list(problems or [])
    raw = dict(raw)
    result = None
    for _ in range(len(raw) + 1):
        try:
            result = msgspec.convert(raw, params_type, strict=strict, dec_hook=_dec_hook)
            break
        except msgspec.ValidationError as exc:
            key = _error_key(exc)
            problems.append((key, f"bad parameter: {friendly(exc)}"))
            if key is None or key not in raw:
                break
            del raw[key]
    if result is not None:  # msgspec's bounds let inf and nan through (inf >= 0); no parameter means them
        for f in param_fields(params_type):
            value = getattr(result, f.name, None)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append((f.name, f"bad parameter: {f.name}: {value} is not a finite number"))
    if problems or result is None:
        message = "; ".join(m for _, m in problems)
        if len(problems) > 1:
            message = f"{len(problems)} bad parameters: {message}"
        raise ParamError(f"node {node}: {message}", problems[0][0], problems)
    return result


def _error_key(exc: msgspec.ValidationError) -> str | None:
    """The top-level field a msgspec error is at (``rate_hz`` for ``... - at `$.rate_hz```)."""
    _, sep, where = str(exc).partition(" - at `$.")
    return re.split(r"[.\[`]", where)[0] if sep else None


def _dec_hook(t: type, value: Any) -> Any:
    """Types msgspec leaves to the caller: a ``Path`` field (a dataclass config's) from its text."""
    if isinstance(t, type) and issubclass(t, PurePath) and isinstance(value, (str, PurePath)):
        return t(value)
    raise TypeError(f"cannot convert {type(value).__name__} to {getattr(t, '__name__', t)}")


def _parse_value(text: str) -> Any:
    """A TOML literal where it parses (numbers, booleans, arrays, quoted strings), else the raw text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def friendly(exc: msgspec.ValidationError) -> str:
    """``"rate_hz: Expected `float` > 0"`` from msgspec's ``"Expected `float` > 0 - at `$.rate_hz`"``."""
    msg = str(exc)
    if " - at `$." in msg:
        what, _, where = msg.partition(" - at `$.")
        return f"{where.rstrip('`')}: {what}"
    return msg


# -- command-line options -----------------------------------------------------------------------

def option_name(name: str) -> str:
    """``start_delay_s`` -> ``--start-delay-s``."""
    return "--" + name.replace("_", "-")


def add_params_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                         params_type: type[msgspec.Struct], *, dest: str = "params",
                         only: Collection[str] | None = None, exclude: Collection[str] = (),
                         aliases: Mapping[str, Sequence[str]] | None = None,
                         positional: Collection[str] = (), required: Collection[str] = (),
                         defaults: Mapping[str, Any] | None = None,
                         argparse_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """One option per parameter of ``params_type``: ``--start-delay-s S`` for ``start_delay_s``.

    The type, the default shown in the help, the bounds (``ge``/``gt``/``le``/``lt``, ``pattern``) and
    the choices (Literal, Enum, a ``^(a|b)$`` pattern) come from the Struct, the help from the field's
    description. A bool is ``--x``/``--no-x``; a list takes ``A,B`` and may repeat (values add up); a
    dict takes ``KEY=VALUE`` and may repeat; a pair of ints (``tuple[int, int]``) takes ``AxB``
    (`nodes.commands.pair_of_ints`; the metavar and each number's bounds from the Meta's ``extra``
    ``metavar``/``low``/``high``, else the items' ``ge``/``le``). An option not given is absent from the namespace, so
    ``params_from_args`` layers only what the user typed over the defaults (or a file). Fields of
    other types are left to ``--param key=value``.

    ``aliases`` adds option strings per field (the names a command had before, e.g. ``--start`` for
    ``start_s``); ``positional`` fields become positional arguments; ``required`` ones must be given;
    ``defaults`` overrides the default a command uses (and shows) for a field; ``argparse_kwargs``
    replaces argparse keywords of a field's option (``{"drives": {"nargs": "+"}}``: a list given as
    several words, ``--data a.mcap b.mcap``).
    """
    aliases = aliases or {}
    defaults = defaults or {}
    argparse_kwargs = argparse_kwargs or {}
    for f in param_fields(params_type):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        spec = _option_spec(f)
        if spec is None:
            continue
        default = defaults.get(f.name, f.default)
        description = f.description or f.name.replace("_", " ")
        must_give = f.name in positional or f.name in required or (f.required and f.name not in defaults)
        shown = "" if must_give or "default" in description else f" (default {format_value(default, f.type)})"
        help_text = description + shown
        # not given: absent from the namespace (the Struct's default applies), or the command's default
        kwargs: dict[str, Any] = {**spec, "help": help_text.replace("%", "%%"),
                                  "default": defaults[f.name] if f.name in defaults else argparse.SUPPRESS,
                                  **argparse_kwargs.get(f.name, {})}
        if f.name in positional:
            kwargs.pop("metavar", None)
            parser.add_argument(f"{dest}.{f.name}", metavar=f.name.upper(), **kwargs)
            continue
        flags = [option_name(f.name), *aliases.get(f.name, ())]
        flags.sort(key=lambda s: s.startswith("--"))  # stable: -o before --output, else as given
        parser.add_argument(*flags, dest=f"{dest}.{f.name}", required=f.name in required, **kwargs)


def params_from_args(args: argparse.Namespace, params_type: type[msgspec.Struct], *, dest: str = "params",
                     base: Mapping[str, Any] | msgspec.Struct | None = None, node: str = "node") -> msgspec.Struct:
    """The Struct of ``params_type``: its defaults, then ``base`` (a Struct or a dict of values), then
    the options given on the command line. ValueError naming the parameter for a bad value."""
    values = dict(msgspec.to_builtins(base) if isinstance(base, msgspec.Struct) else base or {})
    values.update(given_params(args, params_type, dest=dest))
    return load_params(params_type, values=values, node=node)


def given_params(args: argparse.Namespace, params_type: type[msgspec.Struct], *,
                 dest: str = "params") -> dict[str, Any]:
    """The parameters the command line set (only those), by name."""
    prefix = f"{dest}."
    names = {f.name for f in param_fields(params_type)}
    return {k.removeprefix(prefix): v for k, v in vars(args).items()
            if k.startswith(prefix) and k.removeprefix(prefix) in names}


def _option_spec(f: ParamField) -> dict[str, Any] | None:
    """argparse keywords (type, action, choices, metavar) for a field; None for a type left to
    ``--param``."""
    t, optional = f.type, False
    if isinstance(t, mi.UnionType):
        inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if len(inner) != 1:
            return None
        t, optional = inner[0], True
    metavar = _metavar(f.name, t)
    if isinstance(t, mi.BoolType):
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = _scalar(t.item_type, f"{option_name(f.name)} item")
        if item is None:
            return None
        return {"action": _ExtendList, "type": item, "metavar": f"{_metavar(f.name, t.item_type, plural=True)},..."}
    if isinstance(t, mi.DictType):
        key, value = _scalar(t.key_type, "key"), _scalar(t.value_type, f"{option_name(f.name)} value")
        if key is None or value is None:
            return None
        return {"action": _SetItem, "type": _key_value(key, value, option_name(f.name)), "metavar": "KEY=VALUE"}
    if isinstance(t, mi.CustomType) and issubclass(t.cls, PurePath):
        return {"type": t.cls, "metavar": "PATH"}
    if _is_pair(t):
        names = str(f.extra.get("metavar", "AxB"))
        convert = _pair(names, *_pair_bounds(t, f.extra))
        convert.__name__ = option_name(f.name)
        return {"type": _or_none(convert) if optional else convert, "metavar": names}
    convert = _scalar(t, option_name(f.name))
    if convert is None:
        return None
    if optional:
        convert = _or_none(convert)
    return {"type": convert, "metavar": metavar}


_UNIT_SUFFIXES = ("s", "ms", "hz", "deg", "px", "m", "mps")


def _metavar(name: str, t: mi.Type, plural: bool = False) -> str:
    """What the help shows for a value: the choices, the unit a name ends with (``S`` for
    ``start_delay_s``), else the kind (``N``, ``X``) or the name's last word (``TOPIC`` for an item of
    ``lockstep_topics``)."""
    if choices := _choices(t):
        return "{" + ",".join(map(str, choices)) + "}"
    unit = name.rpartition("_")[2]
    if unit in _UNIT_SUFFIXES and isinstance(t, (mi.IntType, mi.FloatType)):
        return unit.upper()
    if isinstance(t, mi.IntType):
        return "N"
    if isinstance(t, mi.FloatType):
        return "X"
    return (unit.removesuffix("s") if plural else unit).upper()


def _scalar(t: mi.Type, option: str) -> Callable[[str], Any] | None:
    """A converter from text to a value of ``t`` that checks its bounds and choices; ArgumentTypeError
    naming the option and the value otherwise."""
    choices = _choices(t)
    if choices:
        by_text = {str(c): c for c in choices}

        def choice(text: str) -> Any:
            if text not in by_text:
                raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(by_text)}")
            return by_text[text]
        choice.__name__ = option
        return choice
    if isinstance(t, (mi.IntType, mi.FloatType)):
        kind = int if isinstance(t, mi.IntType) else float

        def number(text: str) -> Any:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") \
                    from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
            for bound, ok, word in ((t.ge, lambda v, b: v >= b, ">="), (t.gt, lambda v, b: v > b, ">"),
                                    (t.le, lambda v, b: v <= b, "<="), (t.lt, lambda v, b: v < b, "<")):
                if bound is not None and not ok(value, bound):
                    raise argparse.ArgumentTypeError(f"{text} is out of range: must be {word} {bound}")
            return value
        number.__name__ = option
        return number
    if isinstance(t, mi.StrType):
        pattern = re.compile(t.pattern) if t.pattern else None

        def string(text: str) -> str:
            if pattern is not None and not pattern.search(text):
                raise argparse.ArgumentTypeError(f"{text!r} does not match {t.pattern}")
            if t.min_length is not None and len(text) < t.min_length:
                raise argparse.ArgumentTypeError(f"{text!r} is shorter than {t.min_length} characters")
            return text
        string.__name__ = option
        return string
    return None


def _is_pair(t: mi.Type) -> bool:
    """A ``tuple[int, int]`` (an image size, a grid), given as ``AxB``."""
    return isinstance(t, mi.TupleType) and len(t.item_types) == 2 and \
        all(isinstance(x, mi.IntType) for x in t.item_types)


def _pair_bounds(t: mi.TupleType, extra: Mapping[str, Any]) -> tuple[int, int]:
    """(low, high) of each number of a pair: the Meta's ``extra`` ``low``/``high``, else the items'
    ``ge``/``gt``/``le``/``lt``, else 1..65536."""
    lows = [x.ge if x.ge is not None else x.gt + 1 for x in t.item_types if x.ge is not None or x.gt is not None]
    highs = [x.le if x.le is not None else x.lt - 1 for x in t.item_types if x.le is not None or x.lt is not None]
    return int(extra.get("low", max(lows, default=1))), int(extra.get("high", min(highs, default=1 << 16)))


def _pair(names: str, low: int, high: int) -> Callable[[str], tuple[int, int]]:
    from nodes.commands import pair_of_ints  # the one AxB parser of the command layer

    def pair(text: str) -> tuple[int, int]:
        try:
            return pair_of_ints(text, option="", names=names, low=low, high=high)
        except argparse.ArgumentTypeError as exc:  # argparse names the option: "argument --input-size: ..."
            raise argparse.ArgumentTypeError(str(exc).strip()) from None
    return pair


def _or_none(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def optional(text: str) -> Any:
        return None if text.strip().lower() in ("", "none") else convert(text)
    optional.__name__ = convert.__name__
    return optional


def _key_value(key: Callable[[str], Any], value: Callable[[str], Any], option: str) -> Callable[[str], Any]:
    def pair(text: str) -> tuple[Any, Any]:
        k, sep, v = text.partition("=")
        if not sep or not k.strip():
            raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
        return key(k.strip()), value(v.strip())
    pair.__name__ = option
    return pair


class _ExtendList(argparse.Action):
    """``--topics a,b --topics c`` -> ``[a, b, c]``; the first occurrence replaces the default, and an
    empty value (``--topics ""``) gives an empty list. Each item goes through the field's converter."""

    def __init__(self, *args: Any, type: Callable[[str], Any], **kwargs: Any) -> None:
        self.convert = type
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)  # replace the default
        words = values if isinstance(values, list) else [values]  # a list with nargs="+"
        for text in (part for word in words for part in str(word).split(",")):
            if text.strip():
                try:
                    items.append(self.convert(text.strip()))
                except argparse.ArgumentTypeError as exc:
                    raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, items)


class _SetItem(argparse.Action):
    """``--expected-rate-hz camera/image=10 --expected-rate-hz gps/fix=1`` -> a dict."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        items = {} if current is None or current is self.default else dict(current)  # replace the default
        key, value = values
        items[key] = value
        setattr(namespace, self.dest, items)


# -- documentation ------------------------------------------------------------------------------

def format_value(value: Any, t: mi.Type | None = None) -> str:
    """A default as users type it: TOML-like scalars, lists as ``a,b`` (the CLI form), ``""``; with the
    field's type ``t``, a pair of ints as ``AxB``."""
    if value is msgspec.NODEFAULT:
        return "(required)"
    if t is not None and isinstance(t, mi.UnionType) and value is not None:
        inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
        t = inner[0] if len(inner) == 1 else None
    if t is not None and _is_pair(t) and isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if value is None:
        return "none"  # what an optional option takes (``--limit-m none``)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(format_value(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return ",".join(f"{k}={format_value(v)}" for k, v in value.items()) if value else "{}"
    return str(value)


def _bounds(t: mi.Type) -> str:
    if isinstance(t, mi.UnionType):
        inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
        return _bounds(inner[0]) if len(inner) == 1 else ""
    if isinstance(t, mi.TupleType):
        each = {_bounds(x) for x in t.item_types}
        return f"each {each.pop()}" if len(each) == 1 and "" not in each else ""
    parts = []
    for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        bound = getattr(t, attr, None)
        if bound is not None:
            parts.append(f"{word} {bound}")
    if _choices(t):
        parts.append("one of " + ", ".join(map(str, _choices(t))))
    elif getattr(t, "pattern", None):
        parts.append(f"matches `{t.pattern}`")
    if getattr(t, "min_length", None):
        parts.append(f"at least {t.min_length}")
    return ", ".join(parts)


def params_text(params_type: type[msgspec.Struct], indent: str = "  ") -> list[str]:
    """The parameters as aligned text lines: name, type, default, allowed values, meaning."""
    fields = param_fields(params_type)
    if not fields:
        return [f"{indent}(no parameters)"]
    rows = [(f.name, f.type_name, "required" if f.required else f.default_text, _bounds(f.type),
             f.description) for f in fields]
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((24, 16, 20, 24))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
            for r in rows]


def params_markdown(module: str, cls: type) -> str:
    """The Markdown reference of one node module's parameters: a heading and a table of name, type,
    default, allowed values and meaning."""
    doc = (cls.__doc__ or "").strip().splitlines()
    lines = [f"#### `{module}` ({cls.__name__})", ""]
    if doc:
        lines += [doc[0], ""]
    fields = param_fields(cls.Params)
    if not fields:
        return "\n".join([*lines, "No parameters.", ""])
    lines += ["| parameter | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        default = "required" if f.required else f"`{f.default_text}`"
        cells = [f"`{f.name}`", f.type_name, default, _bounds(f.type), f.description]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a | ends a cell
    return "\n".join([*lines, ""])


def node_modules() -> list[tuple[str, type]]:
    """(module, node class) of every node module of the ``nodes`` package, sorted by module."""
    from nodes.launcher.graph import _node_modules, import_node

    found = []
    for module in sorted(_node_modules()):
        try:
            found.append((module, import_node(module)))
        except ValueError:
            continue  # not a node module
    return found


DOC_BEGIN = "<!-- BEGIN node parameters: generated by `python -m nodes.params` from each node's Params -->"
DOC_END = "<!-- END node parameters -->"


def reference_markdown() -> str:
    """The generated section of docs/launch.md: every node module's parameters."""
    return "\n".join(params_markdown(m, c) for m, c in node_modules()).rstrip() + "\n"


def update_doc(path: Path) -> bool:
    """Rewrite the generated section of ``path``; True if it changed. ValueError if the markers are
    missing."""
    text = path.read_text()
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{path}: no generated section ({DOC_BEGIN!r} ... {DOC_END!r})")
    new = text[:begin + len(DOC_BEGIN)] + "\n\n" + reference_markdown() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m nodes.params [docs/launch.md]: regenerate the parameter reference
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs/launch.md")
    print(f"{target}: {'updated' if update_doc(target) else 'already up to date'}")
