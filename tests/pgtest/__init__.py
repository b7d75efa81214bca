"""pgtest: the test library every runner uses: booting the kernel in QEMU, QMP, gdb, the
RSP client, the inspector daemon, and the clean-up of every process they start.

Modules (each usable without pytest, so scripts/session and scripts/campaign share them):
  paths      where the repository, the built kernel, the image and the tools are
  status     QEMU's exit statuses for the kernel's verdicts (read from kernel/abi)
  procs      process groups: spawn, stop, kill everything on the way out; free ports
  qmp        the QMP client (QEMU's own view: gva2gpa, xp, info registers, stop/cont)
  rsp        a raw gdb Remote Serial Protocol client (framing, acks, escapes)
  machine    one QEMU running the kernel (memory, command line, swap disk, RAM in a
             file, COM1 stub on a free port, QMP sockets), and SwapDisk
  gdb        real gdb in batch mode or under a pty
  inspector  the inspector daemon and HTTP helpers
  scenarios  the QEMU scenarios (ktest programs, the demo, crashes, swap)
  sessions   the scripted gdb sessions of gdb/sessions/
  campaign   the randomized failure-injection campaign
  tools      the venv of the Python test tools and the pytest command
The pytest side (fixtures, options, reports) is tests/conftest.py.
"""
