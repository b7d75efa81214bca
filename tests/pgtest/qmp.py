"""qmp: the QMP client (unix socket) for QEMU's ground truth: `gva2gpa`, `xp`, `info
registers` through `human-monitor-command`, `stop`/`cont`, `query-status`."""

import json
import socket
import time


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, sock):
        self.sock = sock
        self.file = sock.makefile("rwb")

    def _read(self):
        while True:
            line = self.file.readline()
            if not line:
                raise QmpError("QMP connection closed")
            message = json.loads(line)
            if "event" in message:  # asynchronous events are not replies
                continue
            return message

    def execute(self, command, arguments=None):
        request = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise QmpError(f"{command}: {reply['error']}")
        return reply.get("return")

    def hmp(self, command_line):
        """A human-monitor command (`gva2gpa 0x...`, `info tlb`, `xp /4wx 0x1000`)."""
        return self.execute("human-monitor-command", {"command-line": command_line})

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def connect(path, process=None, timeout=10.0):
    """Connects to QEMU's QMP socket at `path` (retrying while QEMU starts) and negotiates.
    With `process`, gives up as soon as it has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise QmpError(f"QEMU exited with status {process.returncode}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            sock.connect(str(path))
            client = Qmp(sock)
            greeting = client._read()
            if "QMP" not in greeting:
                raise QmpError(f"unexpected QMP greeting {greeting}")
            client.execute("qmp_capabilities")
            sock.settimeout(30)
            return client
        except (OSError, ValueError):
            sock.close()
            if time.monotonic() > deadline:
                raise QmpError(f"no QMP socket at {path} after {timeout:g} s") from None
            time.sleep(0.05)
