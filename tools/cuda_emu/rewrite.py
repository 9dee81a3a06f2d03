#!/usr/bin/env python3
"""cuda_emu source rewrite: copy a .cu / .cuh into plain C++ the emulator can compile.

  kernel<<<cfg>>>(args)      -> ::emu::launch(kernel, "kernel", __FILE__, __LINE__,
                                              ::emu::LaunchCfg(cfg), args)
  __shared__ T name[N];      -> static T name[N]; ::emu::shared_decl(&name, sizeof(name), "name");
  extern __shared__ T n[];   -> T* n = ::emu::dyn_smem_as<T>();

Line numbers are kept (a `#line 1 "<original path>"` comes first), so compiler messages and
__FILE__/__LINE__ name the original source. Prints the counts of each kind of rewrite and
fails when a `<<<` or `__shared__` is left over.

usage: rewrite.py SRC DST
"""
import re
import sys


def strip_comments_and_strings(s):
    """Same length as s, with comments and string/char literals blanked (newlines kept)."""
    out = list(s)
    i, n = 0, len(s)
    while i < n:
        if s.startswith("//", i):
            j = s.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif s.startswith("/*", i):
            j = s.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif s[i] in "\"'":
            q = s[i]
            j = i + 1
            while j < n and s[j] != q:
                j += 2 if s[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def match_forward(code, i, open_ch, close_ch):
    """Index of the bracket closing the one at code[i]."""
    depth = 0
    for j in range(i, len(code)):
        c = code[j]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {open_ch} at offset {i}")


def rewrite_launches(src):
    code = strip_comments_and_strings(src)
    pieces, pos, count = [], 0, 0
    while True:
        j = code.find("<<<", pos)
        if j < 0:
            break
        # the kernel expression before <<<: [ns::]name[<template args>]
        k = j
        while k > 0 and code[k - 1].isspace():
            k -= 1
        name_end = k
        if code[k - 1] == ">":
            depth = 0
            while True:
                k -= 1
                if code[k] == ">":
                    depth += 1
                elif code[k] == "<":
                    depth -= 1
                    if depth == 0:
                        break
        while k > 0 and (code[k - 1].isalnum() or code[k - 1] in "_:"):
            k -= 1
        kernel = src[k:name_end]
        if not re.match(r"^[A-Za-z_:][\w:]*(<.*>)?$", kernel, re.S):
            raise ValueError(f"cannot parse the kernel before <<< at offset {j}: {kernel!r}")
        # the launch configuration up to the >>> at bracket depth 0
        p, depth = j + 3, 0
        while True:
            if p >= len(code):
                raise ValueError(f"no >>> after <<< at offset {j}")
            if depth == 0 and code.startswith(">>>", p):
                break
            c = code[p]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            p += 1
        cfg = src[j + 3:p]
        q = p + 3
        while code[q].isspace():
            q += 1
        if code[q] != "(":
            raise ValueError(f"no argument list after >>> at offset {p}")
        r = match_forward(code, q, "(", ")")
        args = src[q + 1:r]
        label = " ".join(kernel.split())
        call = '::emu::launch({}, "{}", __FILE__, __LINE__, ::emu::LaunchCfg({}){}{})'.format(
            kernel, label, cfg, ", " if args.strip() else "", args)
        # keep the line count: whitespace/newlines between >>> and ( go after the call
        gap = src[p + 3:q]
        pieces.append(src[pos:k])
        pieces.append(call + "\n" * gap.count("\n"))
        pos = r + 1
        count += 1
    pieces.append(src[pos:])
    return "".join(pieces), count


SHARED_RE = re.compile(r"(?P<extern>\bextern\s+)?__shared__\s+(?P<decl>[^;{}()]*?)\s*;")
DECL_RE = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(\[[^\]]*\]\s*)*)$", re.S)


def rewrite_shared(src):
    code = strip_comments_and_strings(src)
    pieces, pos, nstatic, ndyn = [], 0, 0, 0
    for m in SHARED_RE.finditer(code):
        decl = src[m.start("decl"):m.end("decl")]
        d = DECL_RE.match(decl)
        if not d or "," in decl or "=" in decl:
            raise ValueError(f"cannot parse the __shared__ declaration {decl!r}")
        typ, name, dims = d.group("type").strip(), d.group("name"), d.group("dims").strip()
        if not typ:
            raise ValueError(f"no type in __shared__ declaration {decl!r}")
        if m.group("extern"):
            if dims != "[]":
                raise ValueError(f"extern __shared__ must be an unsized array: {decl!r}")
            rep = f"{typ}* {name} = ::emu::dyn_smem_as<{typ}>();"
            ndyn += 1
        else:
            rep = f'static {typ} {name}{dims}; ::emu::shared_decl(&{name}, sizeof({name}), "{name}");'
            nstatic += 1
        pieces.append(src[pos:m.start()])
        pieces.append(rep)
        pos = m.end()
    pieces.append(src[pos:])
    return "".join(pieces), nstatic, ndyn


def main():
    src_path, dst_path = sys.argv[1], sys.argv[2]
    src = open(src_path).read()
    out, nlaunch = rewrite_launches(src)
    out, nstatic, ndyn = rewrite_shared(out)
    left = strip_comments_and_strings(out)
    if "<<<" in left or ">>>" in left or "__shared__" in left:
        sys.exit(f"rewrite.py: {src_path}: a <<<, >>> or __shared__ was left over")
    with open(dst_path, "w") as f:
        f.write(f'#line 1 "{src_path}"\n')
        f.write(out)
    print(f"{src_path}: {nlaunch} launches, {nstatic} __shared__, {ndyn} extern __shared__")


if __name__ == "__main__":
    main()
