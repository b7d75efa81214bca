"""test_guide: host tests of tests/pgtest/guide.py, the reader of the runnable guide."""

import unittest

from pgtest import guide

GUIDE = """# A guide

```sh
scripts/run   # shown, not run
```

```gdb {session=fork boot="init=ktest arg=cow-both-write" build=stepping}
(gdb) info args
from = 0x04000000 (dir 16, table 0, offset 0x000; slot 1 + 0x00000000)
…
size = 67108864
(gdb) next
```

Text between.

```gdb {session=fork}
(gdb) p nr
$1 = 0
```

```sh {run=yes}
$ scripts/session --list
example_fork …
```
"""


class Parsing(unittest.TestCase):
    def test_blocks_and_sessions(self):
        blocks = guide.parse_guide(GUIDE)
        self.assertEqual([b.kind for b in blocks], ["gdb", "gdb", "sh"])
        found = guide.sessions(blocks)
        attrs, steps = found["fork"]
        self.assertEqual(attrs["boot"], "init=ktest arg=cow-both-write")
        self.assertEqual([s.command for s in steps], ["info args", "next", "p nr"])
        self.assertEqual(steps[0].expected[-1], "size = 67108864")
        self.assertEqual(blocks[2].steps[0].command, "scripts/session --list")

    def test_malformed_guides_are_refused(self):
        for text in ("```gdb {session=a}\n(gdb) x\n```\n",               # no boot
                     "```gdb {session=a boot=x color=red}\n(gdb) x\n```\n",
                     "```gdb {session=a boot=x}\noutput first\n```\n",
                     "```gdb {session=a boot=x}\n(gdb) x\n",              # never ends
                     "```gdb {session=a boot=x}\n(gdb) x\n```\n```gdb {session=a build=release}\n(gdb) y\n```\n"):
            with self.assertRaises(guide.GuideError):
                guide.sessions(guide.parse_guide(text))


class Matching(unittest.TestCase):
    def test_addresses_and_source_lines_vary(self):
        self.assertIsNone(guide.check_output(
            ["Breakpoint 1 at 0x16ca1d: file kernel/mm/src/memory.rs, line 684.",
             "684\t        if (from.as_u32() | to.as_u32()) & (PDE_SPAN - 1) != 0 {"],
            "Breakpoint 1 at 0x1130bc: file kernel/mm/src/memory.rs, line 690.\n"
            "690\t        if (from.as_u32() | to.as_u32()) & (PDE_SPAN - 1) != 0 {\n"))

    def test_small_numbers_and_text_do_not(self):
        self.assertIsNotNone(guide.check_output(["$1 = 0"], "$1 = 1\n"))
        self.assertIsNotNone(guide.check_output(["from = 0x04000000 (dir 16, table 0"],
                                                "from = 0x04000000 (dir 17, table 0\n"))
        self.assertIsNone(guide.check_output(["frame 0x01fdc000"], "frame 0x01fb3000\n"))
        self.assertIsNotNone(guide.check_output(["frame 0x01fdc000"], "frame 0x01fb3000 (RW)\n"))

    def test_order_ellipsis_and_left_out_lines(self):
        actual = "a 1\nnoise\nb 2 … c\nd 3\n"
        self.assertIsNone(guide.check_output(["a 1", "…", "d 3"], actual))
        self.assertIsNone(guide.check_output(["b 2 … c"], "b 2 xyz c\n"))
        self.assertIsNotNone(guide.check_output(["d 3", "a 1"], actual))
        self.assertIsNone(guide.check_output(["free frames … (… pages)"],
                                             "free frames 7620 (18 pages)\n"))

    def test_spaces_are_flexible(self):
        self.assertIsNone(guide.check_output(["PDE 47    raw 0x01fb4027  P RW US A"],
                                             "  PDE 47 raw 0x01fdc027 P RW US A\n"))


if __name__ == "__main__":
    unittest.main()
