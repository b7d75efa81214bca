"""guide: reads the runnable blocks of a Markdown guide (kernel/docs/reading-the-seeds.md)
and checks a command's output against the output the guide shows. Pure: no gdb, no QEMU.

A runnable block is a fenced code block whose info string is `gdb` or `sh` followed by
`{key=value ...}` (values with spaces in double quotes):

    ```gdb {session=fork boot="init=ktest arg=cow-both-write" build=stepping}
    (gdb) info args
    from = 0x04000000 (dir 16, table 0, offset 0x000; slot 1 + 0x00000000)
    …
    ```

- `gdb` blocks: `(gdb) COMMAND` lines are run in order in one gdb per `session` (the
  blocks of a session share it, in the order they appear); the lines after a command
  are what it prints. Only the first block of a session says how to boot: `boot` (the
  kernel command line), `build` (`release` or `stepping`), `mem`, `swap` (a swap disk
  size), `exit` (`no`: the kernel stays up after its verdict).
- `sh` blocks: `$ COMMAND` lines run from the repository's root with `sh -c`.

What the shown output must match: each shown line is found, in order, among the lines
the command printed (lines may be left out; a line `…` alone says so). In a shown line
`…` stands for any text, and these are not compared, because they change from run to
run or build to build: hex numbers of 5 digits or more (addresses, frames, raw entries),
source line numbers (`memory.rs:682`, `line 682`, the number before a source line) and
runs of spaces.
"""

import re
import shlex

ELLIPSIS = "…"
PROMPTS = {"gdb": "(gdb) ", "sh": "$ "}
_FENCE = re.compile(r"^```(gdb|sh)\s*\{([^}]*)\}\s*$")
_LONG_HEX = re.compile(r"0x[0-9a-f]{5,}")
_SOURCE_LINE = re.compile(r"(\.rs:)\d+|\b(line )\d+|^\d+(?=\t| {2,})")
BOOT_KEYS = {"session", "boot", "build", "mem", "swap", "exit", "run"}


class GuideError(ValueError):
    """The guide itself is malformed (the message names the line)."""


class Step:
    def __init__(self, command, line):
        self.command = command
        self.line = line
        self.expected = []

    def __repr__(self):
        return f"Step({self.command!r}, {self.expected!r})"


class Block:
    def __init__(self, kind, attrs, line):
        self.kind = kind
        self.attrs = attrs
        self.line = line
        self.steps = []


def parse_attrs(text, line):
    attrs = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        if not sep or key not in BOOT_KEYS:
            raise GuideError(f"line {line}: bad block attribute {word!r} (known: {sorted(BOOT_KEYS)})")
        attrs[key] = value
    return attrs


def parse_guide(text):
    """The runnable blocks of a guide, in order."""
    blocks = []
    block = None
    for number, line in enumerate(text.splitlines(), 1):
        if block is None:
            match = _FENCE.match(line)
            if match:
                block = Block(match.group(1), parse_attrs(match.group(2), number), number)
            continue
        if line.startswith("```"):
            if not block.steps:
                raise GuideError(f"line {block.line}: a runnable block without a command")
            blocks.append(block)
            block = None
            continue
        prompt = PROMPTS[block.kind]
        if line.startswith(prompt):
            block.steps.append(Step(line[len(prompt):].strip(), number))
        elif not block.steps:
            raise GuideError(f"line {number}: output before the first {prompt.strip()} command")
        elif line.strip():
            block.steps[-1].expected.append(line)
    if block is not None:
        raise GuideError(f"line {block.line}: the block never ends")
    return blocks


def sessions(blocks):
    """{session name: (boot attributes, [steps])} for the gdb blocks, in guide order."""
    found = {}
    for block in blocks:
        if block.kind != "gdb":
            continue
        name = block.attrs.get("session")
        if not name:
            raise GuideError(f"line {block.line}: a gdb block needs session=NAME")
        if name not in found:
            if "boot" not in block.attrs:
                raise GuideError(f"line {block.line}: the first block of session {name} needs boot=")
            found[name] = (block.attrs, [])
        elif set(block.attrs) - {"session"}:
            raise GuideError(f"line {block.line}: only the first block of session {name} says how to boot")
        found[name][1].extend(block.steps)
    return found


def line_pattern(shown):
    """The regular expression a shown output line stands for."""
    pieces = []
    position = 0
    text = shown.strip()
    spans = []
    for regex, replacement in ((_LONG_HEX, r"0x[0-9a-f]+"), (_SOURCE_LINE, None)):
        for match in regex.finditer(text):
            spans.append((match.start(), match.end(), replacement, match))
    spans.sort(key=lambda s: s[0])
    for start, end, replacement, match in spans:
        if start < position:
            continue
        pieces.append(_literal(text[position:start]))
        if replacement is None:
            prefix = match.group(1) or match.group(2) or ""
            pieces.append(re.escape(prefix) + r"\d+")
        else:
            pieces.append(replacement)
        position = end
    pieces.append(_literal(text[position:]))
    return re.compile("".join(pieces))


def _literal(text):
    """`text` as a regex: `…` is any text, a run of spaces is any whitespace."""
    parts = []
    for i, chunk in enumerate(text.split(ELLIPSIS)):
        if i:
            parts.append(".*?")
        parts.append(r"\s+".join(re.escape(word) for word in re.split(r"\s+", chunk)))
    return "".join(parts)


def check_output(expected, actual):
    """None when every shown line is found, in order, among the actual lines; else a
    message naming the first line that is not."""
    lines = [line.strip() for line in actual.splitlines()]
    at = 0
    for shown in expected:
        if shown.strip() == ELLIPSIS:
            continue
        pattern = line_pattern(shown)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return f"not found (in order): {shown.strip()!r}"
        at += 1
    return None
