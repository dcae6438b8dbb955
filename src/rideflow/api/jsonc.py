"""JSON with `//` and `/* */` comments, as request bodies are often written in documentation."""

from __future__ import annotations


def strip_comments(text: str) -> str:
    """`text` with its comments blanked out; strings, escapes included, are left alone. What is
    left is plain JSON when the input was JSON with comments."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)
