#!/usr/bin/env python3
"""tests/docs/run_examples.py — the docs' code, run as written.

    run_examples.py [--prefix DIR] FILE.md ...

Every fenced block of C or shell in the given Markdown files carries a marker comment on the line
before it, or the run fails:
  <!-- example: NAME -->   a complete program: written to NAME in a scratch directory, compiled there
                           with every C compiler present (gcc, clang) as C11 with -Wall -Wextra -pedantic
                           -Werror against the installed library (--prefix, default /opt/ouro), shared and
                           with an rpath;
  <!-- run ... -->         shell: run as written with bash -e in the scratch directory, in file order,
                           after the examples are written (`./zigw` there is the checkout's zigw);
  <!-- fragment ... -->    part of a program (its whole is an example elsewhere): not run;
  <!-- commands ... -->    commands that CI runs itself (.ci/run): not run here.
Prints what it ran; exits non-zero on the first failure, with its output."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!--\s*(example|run|fragment|commands)\b:?\s*(.*?)\s*-->\s*$")


def blocks(path):
    """(kind, argument, language, code, line) for each fenced block."""
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        mark = MARK.match(lines[start - 1]) if start > 0 else None
        yield (mark.group(1) if mark else None, mark.group(2) if mark else "", lang, "\n".join(lines[start + 1:j]) + "\n", start + 1)
        i = j + 1


def sh(cmd, cwd, what):
    r = subprocess.run(["bash", "-e", "-c", cmd], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"docs: {what}: FAILED (exit {r.returncode})\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return r.stdout


def main():
    args = sys.argv[1:]
    prefix = "/opt/ouro"
    if args[:1] == ["--prefix"]:
        prefix, args = args[1], args[2:]
    work = tempfile.mkdtemp(prefix="ouro-docs-")
    with open(os.path.join(work, "zigw"), "w") as f:
        f.write(f'#!/bin/sh\ncd "{REPO}" && exec ./zigw "$@"\n')
    os.chmod(os.path.join(work, "zigw"), 0o755)
    examples, runs, skipped = [], [], 0
    for path in args:
        for kind, arg, lang, code, line in blocks(path):
            where = f"{os.path.relpath(path, REPO)}:{line}"
            if lang not in ("c", "sh", "bash", "console"):
                continue
            if kind is None:
                print(f"docs: {where}: a ```{lang} block without a marker (example/run/fragment/commands)")
                return 1
            if kind == "example":
                name = arg.split()[0]
                with open(os.path.join(work, name), "w") as f:
                    f.write(code)
                examples.append((name, where))
            elif kind == "run":
                runs.append((code, where))
            else:
                skipped += 1
    for code, where in runs:
        out = sh(code.replace("/opt/ouro", prefix), work, f"{where} (run)")
        print(f"docs: {where}: ran ({len(code.splitlines())} lines)" + (f": {out.strip().splitlines()[-1]}" if out.strip() else ""))
    for name, where in examples:
        if not name.endswith(".c"):
            continue
        for cc in ("gcc", "clang"):
            if not shutil.which(cc):
                continue
            exe = os.path.join(work, name[:-2] + "-" + cc)
            sh(f"{cc} -std=c11 -Wall -Wextra -pedantic -Werror {name} -I{prefix}/include -L{prefix}/lib -louro "
               f"-Wl,-rpath,{prefix}/lib -lpthread -o {exe}", work, f"{where} ({cc})")
            out = sh(exe, work, f"{where} ({cc}, run)")
            print(f"docs: {where}: {name} built by {cc} -std=c11 -pedantic -Werror and run: {out.strip().splitlines()[-1] if out.strip() else 'ok'}")
    print(f"docs: {len(examples)} examples, {len(runs)} command blocks run, {skipped} fragments/commands not run")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
