"""Ruby's `File.fnmatch(pattern, name, File::FNM_PATHNAME)`, as GitHub matches the name patterns
of an environment's deployment branch and tag policies ("Wildcard characters will not match
`/`", with a link to Ruby's `File.fnmatch`).

GitHub names that flag alone ("Because GitHub uses the `File::FNM_PATHNAME` flag", its docs on
rulesets' name patterns): without FNM_EXTGLOB Ruby expands no braces, so `v{1,2}.*` matches only
a name with those very characters, and so does this port.

A port of `fnmatch` and `fnmatch_helper` of Ruby's `dir.c` (flags: FNM_PATHNAME, not
FNM_DOTMATCH, FNM_NOESCAPE, FNM_CASEFOLD nor FNM_EXTGLOB): `*` and `?` stay within a `/`
segment, `**/` at a segment's start spans segments, `[...]` is a class (`[!...]` or `[^...]`
negated, `a-z` a range), `\\` escapes. Whatever the pattern (a class left open, a range
backwards), it matches or not, and never raises: GitHub keeps any pattern it was given.

Pure.
"""

from __future__ import annotations

_ANY_DEPTH = "**/"


def fnmatch_pathname(pattern: str, name: str) -> bool:
    """Whether `name` matches `pattern` (Ruby's `File.fnmatch` with `FNM_PATHNAME`)."""
    p, s = 0, 0
    recurse_p: int | None = None
    recurse_s = 0
    while True:
        if pattern.startswith(_ANY_DEPTH, p):
            while pattern.startswith(_ANY_DEPTH, p):
                p += len(_ANY_DEPTH)
            recurse_p, recurse_s = p, s
        matched, p, s = _segment(pattern, p, name, s)
        if matched:
            s = _segment_end(name, s)
            if p < len(pattern) and s < len(name):
                p, s = p + 1, s + 1  # both at a `/`: the next segment
                continue
            if p >= len(pattern) and s >= len(name):
                return True
        # `**/` may take one more of the name's segments (never one that starts with a dot).
        if recurse_p is None or name[recurse_s : recurse_s + 1] == ".":
            return False
        recurse_s = _segment_end(name, recurse_s)
        if recurse_s >= len(name):
            return False
        recurse_s += 1
        p, s = recurse_p, recurse_s


def _segment_end(name: str, s: int) -> int:
    while s < len(name) and name[s] != "/":
        s += 1
    return s


def _ends(text: str, at: int) -> bool:
    return at >= len(text) or text[at] == "/"


def _unescaped(pattern: str, p: int) -> int:
    return p + 1 if pattern[p : p + 1] == "\\" else p


def _segment(pattern: str, p: int, name: str, s: int) -> tuple[bool, int, int]:
    """One `/` segment of `name` from `s` against the pattern from `p` (`fnmatch_helper`):
    whether it matches, and where each stopped."""
    first = _unescaped(pattern, p)
    if name[s : s + 1] == "." and pattern[first : first + 1] != ".":
        return False, p, s  # a leading period is matched only by a period
    star_p: int | None = None
    star_s = 0
    while True:
        char = pattern[p : p + 1]
        if char == "*":
            while pattern[p : p + 1] == "*":
                p += 1
            if _ends(pattern, _unescaped(pattern, p)):
                return True, _unescaped(pattern, p), s
            if _ends(name, s):
                return False, p, s
            star_p, star_s = p, s
            continue
        if char == "?":
            if _ends(name, s):
                return False, p, s
            p, s = p + 1, s + 1
            continue
        if char == "[":
            if _ends(name, s):
                return False, p, s
            after = _bracket(pattern, p + 1, name[s])
            if after is not None:
                p, s = after, s + 1
                continue
        else:
            p = _unescaped(pattern, p)
            if _ends(name, s):
                return _ends(pattern, p), p, s
            if not _ends(pattern, p) and pattern[p] == name[s]:
                p, s = p + 1, s + 1
                continue
        # Failed here: the last `*` takes one more character.
        if star_p is None:
            return False, p, s
        star_s += 1
        p, s = star_p, star_s


def _bracket(pattern: str, p: int, char: str) -> int | None:
    """The class whose body starts at `p` (next to its `[`): where the pattern goes on when
    `char` is in it, None when it is not (or the class is never closed)."""
    negated = pattern[p : p + 1] in ("!", "^")
    if negated:
        p += 1
    found = False
    while pattern[p : p + 1] != "]":
        first = _unescaped(pattern, p)
        if first >= len(pattern):
            return None
        p = first + 1
        if pattern[p : p + 1] == "-" and pattern[p + 1 : p + 2] != "]":
            last = _unescaped(pattern, p + 1)
            if last >= len(pattern):
                return None
            p = last + 1
            found = found or pattern[first] <= char <= pattern[last]
        else:
            found = found or pattern[first] == char
    return None if found == negated else p + 1
