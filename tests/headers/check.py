#!/usr/bin/env python3
"""tests/headers/check.py — the public headers as an embedder meets them.

    check.py INCLUDE_DIR

1. Compiles tests/headers/use.c as C11 and use.cpp as C++17 with -Wall -Wextra -pedantic -Wshadow -Werror
   (C++: also -Wzero-as-null-pointer-constant), with
   every C and C++ compiler found (zig cc / zig c++ from $ZIG, cc, gcc, g++, clang, clang++), and
   nothing on the include path but INCLUDE_DIR: the headers need no other package's headers.
2. Lists every name that including <ouro.h> gives a translation unit beyond what the C library's
   headers it includes (BASELINE below) give: macros (the preprocessor's -dD output) and file-scope
   declarations (functions, variables, typedefs, struct/union/enum tags, enumerators), read from the
   preprocessed lines of every file that the baseline does not include (ouro's headers, and any other
   package's header they would pull in). Every one must start with ouro_ or OURO_. Fails naming each
   offender and where it is.
Exit 0 when both hold; prints what it checked."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ALLOWED = re.compile(r"^(ouro_|OURO_)")
KEYWORDS = set("""auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
_Thread_local __thread __attribute__ __asm__ __extension__ __inline __restrict __builtin_expect
bool true false""".split())


def compilers():
    """(name, argv prefix, language) for each compiler present."""
    found = []
    zig = os.environ.get("ZIG")
    if zig:
        found += [("zig cc", [zig, "cc"], "c"), ("zig c++", [zig, "c++"], "c++")]
    for name, lang in (("cc", "c"), ("gcc", "c"), ("clang", "c"), ("g++", "c++"), ("clang++", "c++")):
        path = shutil.which(name)
        if path:
            found.append((name, [path], lang))
    return found


def compile_checks(inc):
    failures = 0
    for name, argv, lang in compilers():
        src = os.path.join(HERE, "use.c" if lang == "c" else "use.cpp")
        std = "-std=c11" if lang == "c" else "-std=c++17"
        with tempfile.TemporaryDirectory() as tmp:
            extra = ["-Wzero-as-null-pointer-constant"] if lang != "c" else []
            cmd = argv + [std, "-Wall", "-Wextra", "-pedantic", "-Wshadow", "-Werror"] + extra + [
                          "-I", inc, "-c", src, "-o", os.path.join(tmp, "use.o")]
            r = subprocess.run(cmd, capture_output=True, text=True)
        ok = r.returncode == 0
        print(f"headers: {name:8} {std:10} -Wall -Wextra -pedantic -Wshadow -Werror{' -Wzero-as-null-pointer-constant' if extra else ''}: {'ok' if ok else 'FAILED'}")
        if not ok:
            failures += 1
            print(r.stdout + r.stderr)
    return failures


# The C library headers ouro's public headers include: what they define is not ouro's to answer for.
BASELINE = "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n"


def preprocess(inc, extra, source=None):
    cc = compilers()[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(HERE, "use.c")
        if source is not None:
            src = os.path.join(tmp, "baseline.c")
            with open(src, "w") as f:
                f.write(source)
        r = subprocess.run(cc + ["-std=c11", "-E", "-I", inc] + extra + [src], capture_output=True, text=True, check=True)
    return r.stdout


def marked_files(text):
    return {m.group(1) for m in re.finditer(r'^# \d+ "([^"]*)"', text, re.M)}


_baseline = None


def baseline_files(inc):
    global _baseline
    if _baseline is None:
        _baseline = marked_files(preprocess(inc, [], BASELINE))
    return _baseline


def own_lines(text, inc):
    """(file, line, text) of the preprocessed lines that come from a header outside the baseline."""
    foreign = baseline_files(inc)
    cur, lineno = None, 0
    for raw in text.splitlines():
        m = re.match(r'^# (\d+) "([^"]*)"', raw)
        if m:
            lineno, path = int(m.group(1)), m.group(2)
            keep = path not in foreign and not path.startswith("<") and not path.endswith(("use.c", "use.cpp"))
            cur = path if keep else None
            continue
        if cur is not None:
            yield cur, lineno, raw
        lineno += 1


def macro_names(inc):
    for path, line, text in own_lines(preprocess(inc, ["-dD"]), inc):
        m = re.match(r"^#define (\w+)", text)
        if m:
            yield m.group(1), f"{path}:{line}", "macro"


TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_]\w*|\d[\w.]*|->|\.\.\.|\S')


def declared_names(inc):
    """File-scope names: a small parser over the preprocessed token stream of ouro's own lines."""
    toks = []
    for path, line, text in own_lines(preprocess(inc, []), inc):
        for t in TOKEN.findall(text):
            toks.append((t, f"{path}:{line}"))
    depth = 0          # braces
    paren = 0          # parentheses at file scope (parameter lists, attributes)
    stmt = []          # tokens of the current file-scope declaration
    in_enum = []       # brace depths at which an enum body opened
    in_body = False    # inside a function body (static inline): skip until it closes
    body_depth = 0
    i = 0
    while i < len(toks):
        t, where = toks[i]
        if in_body:
            if t == "{":
                body_depth += 1
            elif t == "}":
                body_depth -= 1
                if body_depth == 0:
                    in_body = False
                    stmt = []
            i += 1
            continue
        if t in ("struct", "union", "enum") and i + 1 < len(toks) and re.match(r"^[A-Za-z_]\w*$", toks[i + 1][0]):
            yield toks[i + 1][0], toks[i + 1][1], t + " tag"
        if t == "enum":
            # the enumerators: identifiers right after { or , inside its braces
            j = i + 1
            while j < len(toks) and toks[j][0] not in ("{", ";"):
                j += 1
            if j < len(toks) and toks[j][0] == "{":
                d, expect = 0, True
                while j < len(toks):
                    tj = toks[j][0]
                    if tj == "{":
                        d += 1
                        expect = d == 1
                    elif tj == "}":
                        d -= 1
                        if d == 0:
                            break
                    elif d == 1 and tj == ",":
                        expect = True
                    elif expect and d == 1 and re.match(r"^[A-Za-z_]\w*$", tj):
                        yield tj, toks[j][1], "enumerator"
                        expect = False
                    j += 1
        if depth == 0 and paren == 0:
            if t == "(":
                # a function (or function pointer variable) name is the identifier before the first
                # parenthesis of a declaration, unless it is an attribute or a parenthesised declarator
                prev = stmt[-1][0] if stmt else ""
                if re.match(r"^[A-Za-z_]\w*$", prev) and prev not in KEYWORDS and not prev.startswith("__"):
                    if not any(s[0] == "typedef" for s in stmt) and not any(s[0] == "(" for s in stmt):
                        yield prev, stmt[-1][1], "function"
                paren += 1
                stmt.append((t, where))
            elif t == "{":
                # a function body when the declaration has a parameter list and is not a
                # struct/union/enum/initializer
                if stmt and stmt[-1][0] == ")" and not any(s[0] in ("struct", "union", "enum", "=") for s in stmt):
                    in_body, body_depth = True, 1
                else:
                    depth += 1
                    stmt.append((t, where))
            elif t == ";":
                yield from declarator_names(stmt)
                stmt = []
            else:
                stmt.append((t, where))
        else:
            if t == "(":
                paren += 1
            elif t == ")":
                paren -= 1
            elif t == "{":
                depth += 1
            elif t == "}":
                depth -= 1
            stmt.append((t, where))
        i += 1


def declarator_names(stmt):
    """Names a file-scope declaration (ending in ;) declares: typedef names and variables."""
    if not stmt or stmt[0][0] == "_Static_assert":
        return
    # drop everything inside braces (struct bodies) and parentheses; keep top-level tokens
    top, d = [], 0
    for t, where in stmt:
        if t in ("{", "("):
            d += 1
            top.append(("#", where))
            continue
        if t in ("}", ")"):
            d -= 1
            continue
        if d == 0:
            top.append((t, where))
    # split on commas and '=' initialisers
    parts, cur = [], []
    for t, where in top:
        if t == ",":
            parts.append(cur)
            cur = []
        else:
            cur.append((t, where))
    parts.append(cur)
    is_typedef = any(t == "typedef" for t, _ in top)
    for p in parts:
        if "=" in [t for t, _ in p]:
            p = p[: [t for t, _ in p].index("=")]
        ids = [(t, w) for t, w in p if re.match(r"^[A-Za-z_]\w*$", t) and t not in KEYWORDS and not t.startswith("__")]
        if not ids:
            continue
        name, where = ids[-1]
        # a declaration that declares only a tag (struct x { ... };) has its tag as last identifier
        if len(ids) == 1 and any(t in ("struct", "union", "enum") for t, _ in p) and not is_typedef:
            continue
        if "#" in [t for t, _ in p] and not is_typedef:
            # `T (*name)(...)` and friends: the name sat inside the parentheses
            continue
        yield name, where, "typedef" if is_typedef else "variable"


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    inc = sys.argv[1]
    failures = compile_checks(inc)
    names = {}
    for name, where, kind in list(macro_names(inc)) + list(declared_names(inc)):
        names.setdefault(name, (where, kind))
    bad = [(n, w, k) for n, (w, k) in sorted(names.items()) if not ALLOWED.match(n)]
    kinds = {}
    for n, (w, k) in names.items():
        kinds[k] = kinds.get(k, 0) + 1
    print("headers: %d names (%s): %s" % (len(names), ", ".join(f"{v} {k}s" for k, v in sorted(kinds.items())),
                                       "all ouro_/OURO_" if not bad else f"{len(bad)} outside the namespace"))
    for n, w, k in bad:
        print(f"headers: {k} `{n}` ({w}) is not named ouro_*/OURO_*")
    return 1 if failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
