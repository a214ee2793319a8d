"""Line-and-field mutations of a text file, for the fuzz strategies of line-oriented formats (g2o, COLMAP)."""
from __future__ import annotations

from hypothesis import strategies as st

KINDS = ["value", "value", "value", "replace", "drop_field", "drop_line", "repeat_line"]


def mutate_lines(draw, text: bytes, values, odd, first_value: int, times=(1, 1, 2, 3)) -> bytes:
    """``text`` with a few random edits (``draw`` is hypothesis' draw function): a field from index
    ``first_value`` on set to one of ``values`` (accepted numbers), any field replaced by one of ``odd``,
    a field or a line dropped, a line repeated; sometimes cut short."""
    lines = [line.split(b" ") for line in text.splitlines()]
    for _ in range(draw(st.sampled_from(list(times)))):
        row = draw(st.integers(0, len(lines) - 1))
        fields = lines[row]
        kind = draw(st.sampled_from(KINDS))
        if kind == "value" and len(fields) > first_value and not fields[0].startswith(b"#"):
            fields[draw(st.integers(first_value, len(fields) - 1))] = draw(st.sampled_from(values))
        elif kind == "replace" and fields:
            fields[draw(st.integers(0, len(fields) - 1))] = draw(st.sampled_from(odd))
        elif kind == "drop_field" and fields:
            del fields[draw(st.integers(0, len(fields) - 1))]
        elif kind == "drop_line" and len(lines) > 1:
            del lines[row]
        else:
            lines.insert(row, list(fields))
    data = b"\n".join(b" ".join(f) for f in lines) + b"\n"
    if draw(st.integers(0, 5)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return data
