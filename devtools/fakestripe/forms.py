"""Stripe's form encoding: ``a[b][0][c]=v`` pairs decoded into nested dicts and lists."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

from devtools.fakestripe.errors import invalid

Params = dict[str, Any]

_KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


def decode_form(pairs: Iterable[tuple[str, str]]) -> Params:
    """Decode Stripe's ``a[b][0][c]=v`` form encoding into nested dicts and lists."""
    root: Params = {}
    for key, value in pairs:
        parts = _split_key(key)
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise invalid(f"Invalid hash: {key}", param=key)
            node = child
        last = parts[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise invalid(f"Invalid hash: {key}", param=key)
        node[last] = value
    return cast(Params, _listify(root))


def _split_key(key: str) -> list[str]:
    """``a[b][]`` -> ``["a", "b", ""]``; an empty part means "append"."""
    match = _KEY_RE.fullmatch(key)
    if match is None:
        return [key]
    return [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]


def _listify(value: Any) -> Any:
    """Dicts whose keys are all digits become lists, in index order."""
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(item) for key, item in value.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
