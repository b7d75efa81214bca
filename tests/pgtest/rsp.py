"""rsp: a raw gdb Remote Serial Protocol client on a socket, for robustness tests and benchmarks.

Framing `$data#cs`, acks (`+`/`-`), run-length decoding (`X*n`), `}` escapes, `O`
console-output packets, and raw bytes (to send malformed packets on purpose).
"""

import socket
import time


class RspError(Exception):
    pass


def checksum(data):
    return sum(data) & 0xFF


def escape(data):
    """Escapes `$`, `#`, `}` and `*` as `}` followed by the byte xor 0x20."""
    out = bytearray()
    for byte in data:
        if byte in b"$#}*":
            out += bytes([0x7D, byte ^ 0x20])
        else:
            out.append(byte)
    return bytes(out)


def frame(data):
    """A complete packet for `data` (bytes or str), escaped."""
    if isinstance(data, str):
        data = data.encode()
    body = escape(data)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


def decode_body(body):
    """Undoes `}` escapes and `X*n` run-length encoding (n = byte - 29 more copies)."""
    out = bytearray()
    i = 0
    while i < len(body):
        byte = body[i]
        if byte == 0x7D and i + 1 < len(body):
            out.append(body[i + 1] ^ 0x20)
            i += 2
        elif byte == 0x2A and out and i + 1 < len(body):
            out += bytes([out[-1]]) * (body[i + 1] - 29)
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)


class Client:
    def __init__(self, host, port, timeout=10.0, connect_timeout=10.0):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.timeout = timeout
        self.buffer = b""
        self.no_ack = False
        self.nacks = 0  # `-` received
        self.output = b""  # text of `O` packets
        self.start = time.monotonic()
        self.log = []  # (seconds, "<" or ">", bytes), for failure reports

    def _record(self, direction, data):
        shown = data if len(data) <= 120 else data[:60] + b"...(%d bytes)..." % len(data) + data[-20:]
        self.log.append((time.monotonic() - self.start, direction, shown))
        del self.log[:-60]

    def transcript(self, entries=30):
        return "\n".join(f"{t:7.3f} {d} {data!r}" for t, d, data in self.log[-entries:])

    # --- bytes ---
    def send_raw(self, data):
        self._record(">", data)
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RspError(f"no reply within {self.timeout:g} s (buffer {self.buffer[-80:]!r})")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise RspError(f"no reply within {self.timeout:g} s (buffer {self.buffer[-80:]!r})") from None
        if not data:
            raise RspError("the stub closed the connection")
        self._record("<", data)
        self.buffer += data

    def drain(self, quiet=0.3):
        """Reads and discards whatever arrives until the line is quiet for `quiet` s."""
        self.sock.settimeout(quiet)
        dropped = self.buffer
        self.buffer = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self._record("< (drained)", data)
                dropped += data
        except TimeoutError:
            pass
        return dropped

    def resync(self, addr, timeout=15.0):
        """After junk: ask `m addr,n` with a new n each time until the reply to *that*
        request arrives (a late `-` for the junk makes a request go twice, and a stale
        reply must not be taken for the next one's). Returns the `-` count seen."""
        deadline = time.monotonic() + timeout
        length = 1
        nacks_before = self.nacks
        while True:
            length = length % 64 + 1
            self.send_raw(frame(f"m{addr:x},{length:x}"))
            attempt_end = min(time.monotonic() + 1.0, deadline)
            while time.monotonic() < attempt_end:
                self.nacks += self.buffer.count(b"-") if b"$" not in self.buffer else 0
                start = self.buffer.find(b"$")
                end = self.buffer.find(b"#", start) if start >= 0 else -1
                if start >= 0 and end >= 0 and len(self.buffer) >= end + 3:
                    body = decode_body(self.buffer[start + 1:end])
                    self.buffer = self.buffer[end + 3:]
                    self.send_raw(b"+")
                    if len(body) == 2 * length:
                        self.drain(0.2)
                        return self.nacks - nacks_before
                    continue
                try:
                    self._fill(attempt_end)
                except RspError:
                    if time.monotonic() >= deadline:
                        raise RspError(f"the stub did not resynchronise within {timeout:g} s") from None
                    break

    # --- packets ---
    def send_packet(self, data, retry_after=1.0):
        """Sends a packet and waits for its `+`: resent on `-`, and (as gdb does) when no
        ack comes within `retry_after` s (bytes sent before the kernel set its UART up are
        lost), until self.timeout."""
        packet = frame(data)
        deadline = time.monotonic() + self.timeout
        nacks = 0
        while True:
            self.send_raw(packet)
            if self.no_ack:
                return
            ack = self._read_ack(min(time.monotonic() + retry_after, deadline))
            if ack == b"+":
                return
            if ack == b"-":
                self.nacks += 1
                nacks += 1
                if nacks > 3:
                    raise RspError(f"packet {packet[:40]!r} was refused {nacks} times")
            if time.monotonic() >= deadline:
                raise RspError(f"no ack for {packet[:40]!r} within {self.timeout:g} s")

    def _read_ack(self, deadline):
        """`+`, `-`, or None when nothing came before `deadline`."""
        while True:
            while self.buffer:
                first = self.buffer[:1]
                if first in (b"+", b"-"):
                    self.buffer = self.buffer[1:]
                    return first
                if first == b"$":
                    return b"+"  # a reply before the ack: the stub took the packet
                self.buffer = self.buffer[1:]  # noise
            try:
                self._fill(deadline)
            except RspError:
                if time.monotonic() >= deadline:
                    return None
                raise

    def read_packet(self, keep_output=False):
        """The next packet's decoded body (acked); `O` output packets are collected in
        self.output and skipped unless keep_output."""
        deadline = time.monotonic() + self.timeout
        while True:
            start = self.buffer.find(b"$")
            if start >= 0:
                end = self.buffer.find(b"#", start)
                if end >= 0 and len(self.buffer) >= end + 3:
                    body = self.buffer[start + 1:end]
                    sent_sum = self.buffer[end + 1:end + 3]
                    self.buffer = self.buffer[end + 3:]
                    if int(sent_sum, 16) != checksum(body):
                        if not self.no_ack:
                            self.send_raw(b"-")
                        continue
                    if not self.no_ack:
                        self.send_raw(b"+")
                    data = decode_body(body)
                    if data.startswith(b"O") and data != b"OK" and not keep_output:
                        self.output += bytes.fromhex(data[1:].decode())
                        continue
                    return data
            self._fill(deadline)

    def request(self, data):
        self.send_packet(data)
        return self.read_packet()

    # --- commands ---
    def read_registers(self):
        reply = self.request("g")
        if reply.startswith(b"E") and len(reply) == 3:
            raise RspError(f"g answered {reply!r}")
        return bytes.fromhex(reply.decode())

    def read_memory(self, addr, length):
        reply = self.request(f"m{addr:x},{length:x}")
        if reply.startswith(b"E") and len(reply) == 3:
            return reply
        return bytes.fromhex(reply.decode())

    def monitor(self, command):
        """qRcmd: the text of the `O` packets up to the final OK (or the error)."""
        self.output = b""
        final = self.request("qRcmd," + command.encode().hex())
        return self.output.decode(errors="replace"), final

    def interrupt(self):
        self.send_raw(b"\x03")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
