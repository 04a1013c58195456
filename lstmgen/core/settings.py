"""One home per setting: a dataclass field declared with its default, help text and limits.

    @dataclass
    class SamplingConfig:
        temperature: float = setting(0.8, "0 = greedy", low=0.0, high=2.0)

From that one declaration come the command-line flags (`add_flags`), the checks every caller's
values go through (`checked`) and the ranges the UI's sliders use (`ranges`). A preset overrides
values with `dataclasses.replace`; it never restates the schema.

Every request the program takes is checked this way, so one style of message answers every caller: the
sampling settings (lstmgen.core.sampling), the service's other inputs (lstmgen.serve.service.Inputs) and a training
request (lstmgen.serve.studio.TrainRequest). For text, `low` and `high` bound its length (`unit`: characters or
UTF-8 bytes). A limit known only at run time (a model's layer count, a server's configured budget) is
given to `checked` as `bounds`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import typing


SHOWN_CHARS = 60  # a visitor's value quoted in a message (and so in the server's log) is cut to this


def shown(value) -> str:
    """repr(value) for a message, cut to SHOWN_CHARS: a 9 MB value must not travel into a reply or a log line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


class SettingError(ValueError):
    """A value outside a setting's declared type or limits, or another request the program refuses
    (lstmgen.serve.service.RequestError, lstmgen.serve.studio.TrainingError): the message is meant for the user."""


def setting(default, help: str, low=None, high=None, choices=None, flag: str | None = None, cli: bool = True,
            env: str | None = None, **more):
    """A dataclass field with its help text and limits. `flag` renames the command-line flag; `cli=False`
    keeps the setting off the command line (values the program derives itself); `env` names the environment
    variable an operator sets it with (`from_environment`). `more`: further facts a module declares beside its
    settings (lstmgen.core.sampling: which values the step graph serves)."""
    meta = {"help": help, "low": low, "high": high, "choices": choices, "flag": flag, "cli": cli, "env": env, **more}
    return dataclasses.field(default=default, metadata=meta)


def _base_type(cls, field: dataclasses.Field) -> type:
    """int, float, str or bool, for `x: int` and `x: int | None` alike."""
    hint = typing.get_type_hints(cls)[field.name]
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0]


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def ranges(cls) -> dict[str, tuple]:
    """{name: (low, high)} for every setting of `cls` that declares a limit (None: no limit that side)."""
    return {f.name: (f.metadata.get("low"), f.metadata.get("high")) for f in dataclasses.fields(cls)
            if f.metadata.get("low") is not None or f.metadata.get("high") is not None}


def describe(cls, name: str) -> str:
    """The help text of one setting, with its range: for docstrings and UI labels."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    low, high = field.metadata.get("low"), field.metadata.get("high")
    span = f" [{low}, {high}]" if low is not None and high is not None else ""
    return f"{field.metadata['help']}{span}"


def add_flags(parser: argparse.ArgumentParser, cls, title: str | None = None) -> None:
    """One flag per setting of `cls`. Flags default to None (= not given), so a preset's values stay
    unless the user overrides them; `given(args, cls)` collects what was given."""
    group = parser.add_argument_group(title) if title else parser
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True) or "help" not in field.metadata:
            continue
        kind = _base_type(cls, field)
        help_text = f"{field.metadata['help']} (default {field.default!r})"
        if kind is bool:
            group.add_argument(flag_name(field), dest=field.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        else:
            group.add_argument(flag_name(field), dest=field.name, type=kind, default=None,
                               choices=field.metadata.get("choices"), help=help_text)


def given(args: argparse.Namespace, cls) -> dict:
    """The settings of `cls` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def _check(cls, field: dataclasses.Field, value, bounds: tuple | None = None):
    name, kind, meta = field.name, _base_type(cls, field), field.metadata
    low, high = bounds or (meta.get("low"), meta.get("high"))
    if value is None:
        if field.default is None:
            return None
        raise SettingError(f"{name} must be given")
    if kind is str:
        if not isinstance(value, str):
            raise SettingError(f"{name} must be text")
        if meta.get("choices") and value not in meta["choices"]:
            raise SettingError(f"{name} must be one of {', '.join(meta['choices'])}, not {shown(value)}")
        return _check_length(value, name, meta, low, high)
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingError(f"{name} must be true or false")
        return value
    if isinstance(value, bool):
        raise SettingError(f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise SettingError(f"{name} must be a finite number") from None
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, not {shown(value)}") from None
    if not math.isfinite(number):
        raise SettingError(f"{name} must be a finite number")
    if kind is int and number != int(number):
        raise SettingError(f"{name} must be a whole number")
    if (low is not None and number < low) or (high is not None and number > high):
        if high is None:
            raise SettingError(f"{name} must be at least {low}, got {value}")
        if low is None:
            raise SettingError(f"{name} must be at most {high}, got {value}")
        raise SettingError(f"{name} must be between {low} and {high}, got {value}")
    return int(number) if kind is int else number


def _check_length(text: str, name: str, meta, low, high) -> str:
    """`text` within its declared length: `low` to `high` characters, or UTF-8 bytes where `unit` says so.
    `label` names the text in the message; `too_short` says why the least is needed."""
    if low is None and high is None:
        return text
    unit = meta.get("unit", "characters")
    n = len(text.encode("utf-8")) if unit == "bytes" else len(text)
    label = meta.get("label", name)
    if high is not None and n > high:
        raise SettingError(f"{label} is {n:,} {unit}; the limit is {high:,}")
    if low is not None and n < low:
        raise SettingError(f"{label} is {n:,} {unit}; " + meta.get("too_short", "the least is {low:,}").format(low=low))
    return text


def checked(cls, bounds: dict[str, tuple] | None = None, **values):
    """An instance of `cls` from untrusted values (API, UI, command line): each value is converted to its
    declared type and checked against its limits; missing ones take their defaults. `bounds`: {name:
    (low, high)} for limits known only at run time, in place of the declared ones."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingError(f"unknown setting {shown(unknown[0])}")
    bounds = bounds or {}
    return cls(**{name: _check(cls, known[name], value, bounds.get(name)) for name, value in values.items()})


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")  # the one rule for an on/off variable


def from_environment(cls, environ=None):
    """An instance of `cls` from the environment variables its settings declare (`env=`), each converted to its
    type and checked against its limits; unset ones take their defaults. A name ending in `*` collects every
    variable with that prefix as (rest of the name, value) pairs. A bad value raises SettingError naming the
    variable."""
    environ = os.environ if environ is None else environ
    values, patterns = {}, {}
    for field in dataclasses.fields(cls):
        name = field.metadata.get("env")
        if not name:
            continue
        if name.endswith("*"):
            patterns[field.name] = tuple(sorted((key[len(name) - 1:], value) for key, value in environ.items()
                                                if key.startswith(name[:-1]) and value.strip()))
            continue
        raw = environ.get(name)
        if raw is None or (raw.strip() == "" and _base_type(cls, field) is not str):
            continue
        try:
            values[field.name] = _from_text(raw, _base_type(cls, field))
            checked(cls, **{field.name: values[field.name]})
        except SettingError as error:
            raise SettingError(f"{name}={raw[:40]!r}: {error}") from None
    return dataclasses.replace(checked(cls, **values), **patterns)


def _from_text(raw: str, kind: type):
    if kind is bool:
        text = raw.strip().lower()
        if text not in TRUE + FALSE:
            raise SettingError(f"must be one of {', '.join(TRUE)} (on) or {', '.join(FALSE[:-1])} (off)")
        return text in TRUE
    return raw if kind is str else raw.strip()


def environment_variables(cls) -> list[tuple[str, object, str]]:
    """(variable, default, help) of every setting of `cls` an operator sets through the environment."""
    return [(f.metadata["env"], f.default, f.metadata["help"]) for f in dataclasses.fields(cls) if f.metadata.get("env")]
