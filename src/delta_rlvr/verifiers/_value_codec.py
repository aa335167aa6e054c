"""Plain-data encoding of Python values for function-style code tests.

The sandboxed child encodes what the solution returned; the trusted parent decodes it into
fresh builtin objects (None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset,
dict) and compares those with the expected value. Nothing the child defines survives the trip,
so a custom `__eq__` cannot take part in the comparison. The parent also encodes the call
arguments with it; the child decodes them.

This file's source is prepended to the harnesses (it runs inside the sandboxes too), so it
imports nothing at module level: `json` (about 7 ms of a sandboxed run's start, with `re`) is
imported by the two functions that need it, which the solution's process in "serve" mode never
calls.
"""

_MAX_DEPTH = 100


def encode_value(value, _depth=0):
    """A JSON-serialisable tagged tree; TypeError for anything that is not plain data."""
    if _depth > _MAX_DEPTH:
        raise TypeError(f"value nested deeper than {_MAX_DEPTH} levels")
    down = _depth + 1
    if value is None:
        return ["none"]
    if isinstance(value, bool):
        return ["bool", bool(value)]
    if isinstance(value, int):
        return ["int", hex(int(value))]  # hex: no int-to-decimal digit limit
    if isinstance(value, float):
        return ["float", float(value).hex()]
    if isinstance(value, complex):
        return ["complex", value.real.hex(), value.imag.hex()]
    if isinstance(value, str):
        return ["str", str.__str__(value)]
    if isinstance(value, (bytes, bytearray)):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, dict):
        return ["dict", [[encode_value(k, down), encode_value(v, down)] for k, v in value.items()]]
    for kind, tag in ((tuple, "tuple"), (list, "list"), (frozenset, "frozenset"), (set, "set")):
        if isinstance(value, kind):
            return [tag, [encode_value(item, down) for item in value]]
    raise TypeError(f"a {type(value).__name__} is not plain data (None, bool, int, float, complex, str, bytes, list, tuple, set, dict)")


def dumps_value(value):
    import json

    return json.dumps(encode_value(value), ensure_ascii=True, separators=(",", ":"))


def decode_value(tree, _depth=0):
    """Builtin objects from `encode_value`'s tree; ValueError for anything malformed."""
    if _depth > _MAX_DEPTH + 1:
        raise ValueError("value nested too deeply")
    if not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
        raise ValueError("malformed value")
    tag, rest, down = tree[0], tree[1:], _depth + 1
    try:
        if tag == "none" and not rest:
            return None
        if tag == "bool" and len(rest) == 1 and isinstance(rest[0], bool):
            return rest[0]
        if tag == "int" and len(rest) == 1 and isinstance(rest[0], str) and len(rest[0]) < 100_000:
            return int(rest[0], 16)
        if tag == "float" and len(rest) == 1 and isinstance(rest[0], str):
            return float.fromhex(rest[0])
        if tag == "complex" and len(rest) == 2 and all(isinstance(part, str) for part in rest):
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag == "str" and len(rest) == 1 and isinstance(rest[0], str):
            return rest[0]
        if tag == "bytes" and len(rest) == 1 and isinstance(rest[0], str):
            return bytes.fromhex(rest[0])
        if tag in ("list", "tuple", "set", "frozenset") and len(rest) == 1 and isinstance(rest[0], list):
            items = [decode_value(item, down) for item in rest[0]]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict" and len(rest) == 1 and isinstance(rest[0], list):
            pairs = []
            for pair in rest[0]:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError("malformed dict item")
                pairs.append((decode_value(pair[0], down), decode_value(pair[1], down)))
            return dict(pairs)
    except (TypeError, OverflowError) as error:  # unhashable set item / dict key, huge float
        raise ValueError(f"malformed {tag}: {error}") from None
    raise ValueError(f"malformed value tagged {tag!r}")


def loads_value(text):
    import json

    try:
        tree = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"not a value: {str(error)[:100]}") from None
    return decode_value(tree)
