"""Typed access to one mapping of a YAML file, with errors that name the full field path (pure)."""

from __future__ import annotations

from urcdm.errors import UserError


class Fields:
    """Typed access to one mapping of the YAML, with errors that name the full field path."""

    def __init__(self, values, where: str):
        if not isinstance(values, dict):
            raise UserError(f"{where or 'study file'}: expected a mapping, got {type(values).__name__}")
        self.values, self.where = values, where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def reject_unknown(self, known: set[str]) -> None:
        unknown = sorted(set(self.values) - known)
        if unknown:
            raise UserError(f"{self.name(unknown[0])}: unknown field (known: {', '.join(sorted(known))})")

    def get(self, key: str, kind, default=None, required: bool = False):
        if key not in self.values or self.values[key] is None:
            if required:
                raise UserError(f"{self.name(key)}: required")
            return default
        value = self.values[key]
        # bool is an int in Python, but `cases_per_reader: true` is a mistake, not 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise UserError(f"{self.name(key)}: expected {expected}, got {value!r}")
        return value

    def sub(self, key: str, required: bool = False) -> "Fields":
        value = self.get(key, dict, required=required)
        return Fields(value if value is not None else {}, self.name(key))
