"""The saved copy of what the bot stores: one JSON file per family under `tests/stored/`.

During a rolling upgrade a replica of the previous version reads what the new one wrote, and
the new one reads what the previous one wrote (docs/operating.md, "Values a newer version
stores"). A round trip in one version cannot see a renamed field, a changed default or enum
value: both sides change together. So each family's samples are encoded and compared with the
saved copy, and the saved copy is decoded and compared with the samples
(`tests/test_stored_forms.py`).

Regenerate the saved copy after a deliberate change of a stored form (and write its upgrade
note in docs/operating.md, "This upgrade"):

    SAVE_STORED_FORMS=1 .venv/bin/pytest -q -p no:xdist tests/test_stored_forms.py
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SAVED = Path(__file__).parent / "stored"
REGENERATE = "SAVE_STORED_FORMS=1 .venv/bin/pytest -q -p no:xdist tests/test_stored_forms.py"
SAVING = os.environ.get("SAVE_STORED_FORMS") == "1"

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


@dataclass(frozen=True)
class Sample:
    """One stored value: `value` as the bot holds it, `encode` the product's own writer (to
    JSON-ready data, exactly as stored), `decode` its reader (None: a key the bot computes
    again and looks up, never parses; its saved text is what an old row holds)."""

    name: str
    value: Any
    encode: Encode
    decode: Decode | None = None
    decoded: Any = None
    """What decoding gives when it is not `value` itself (a reader that returns a part)."""

    def expected(self) -> Any:
        return self.value if self.decoded is None else self.decoded


@dataclass(frozen=True)
class Family:
    name: str
    about: str
    samples: Sequence[Sample]

    @property
    def path(self) -> Path:
        return SAVED / f"{self.name}.json"

    def encoded(self) -> dict[str, Any]:
        return {sample.name: sample.encode(sample.value) for sample in self.samples}

    def saved(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        stored: dict[str, Any] = data["samples"]
        return stored

    def save(self) -> None:
        names = [sample.name for sample in self.samples]
        assert len(names) == len(set(names)), f"{self.name}: two samples share a name"
        SAVED.mkdir(exist_ok=True)
        data = {"about": self.about, "regenerate": REGENERATE, "samples": self.encoded()}
        text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)
        self.path.write_text(text + "\n", "utf-8")


def as_json(value: Any) -> Any:
    """What the database's JSON column hands back: the value through JSON text."""
    return json.loads(json.dumps(value))


def _defaults(cls: type[Any]) -> dict[str, Any]:
    """A dataclass's or a pydantic model's fields that have a default, with it."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {
            name: info.get_default(call_default_factory=True)
            for name, info in cls.model_fields.items()
            if not info.is_required()
        }
    found = {}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            found[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            found[field.name] = field.default_factory()
    return found


def defaults_left_out(value: Any, data: dict[str, Any]) -> dict[str, Any]:
    """`data`, a value's JSON keyed by its field names, without the fields the value holds at
    their defaults: what a version before those fields stored. Read back, they must still come
    out as the defaults (a changed default changes what every such row means)."""
    defaults = _defaults(type(value))
    return {
        key: item
        for key, item in data.items()
        if key not in defaults or getattr(value, key) != defaults[key]
    }


def earlier(
    sample: Sample,
    *,
    of: Callable[[Any], Any] = lambda value: value,
    at: Callable[[Any], dict[str, Any]] = lambda data: data,
) -> Sample:
    """`sample` as stored before its defaulted fields existed (`defaults_left_out`), read by
    the same reader: `of` picks the dataclass or model out of the value, `at` its fields out
    of the encoded form."""

    def encode(value: Any) -> Any:
        data = sample.encode(value)
        fields = at(data)
        kept = defaults_left_out(of(value), fields)
        fields.clear()
        fields.update(kept)
        return data

    return Sample(f"{sample.name}:earlier", sample.value, encode, sample.decode, sample.decoded)


def drift(family: Family, what: str, lines: Sequence[str]) -> str:
    """The failure message: what drifted, and what to do about it."""
    return (
        f"The stored form of {family.name} ({family.path.relative_to(SAVED.parent.parent)}) "
        f"{what}:\n  " + "\n  ".join(lines) + "\n\n"
        "A replica of the previous version runs beside this one during a rolling upgrade and "
        "reads what this one stores, and this one reads what it stored: a renamed field, a "
        "changed default or enum value breaks one of them, or loses what was stored.\n"
        "- Not meant: change the code back (or read the old form too).\n"
        "- Meant: make sure the previous version still reads the new form and this one the "
        "old (docs/operating.md, 'Values a newer version stores'), add an upgrade note to "
        "docs/operating.md's 'This upgrade' list, and regenerate the saved copy:\n"
        f"    {REGENERATE}"
    )
