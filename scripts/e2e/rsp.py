"""rsp: a tiny gdb Remote Serial Protocol client on a raw socket, for robustness tests.

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

    # --- bytes ---
    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RspError(f"no reply within {self.timeout:g} s (buffer {self.buffer[-80:]!r})")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise RspError(f"no reply within {self.timeout:g} s (buffer {self.buffer[-80:]!r})") from None
        if not data:
            raise RspError("the stub closed the connection")
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
                dropped += data
        except socket.timeout:
            pass
        return dropped

    # --- packets ---
    def send_packet(self, data):
        """Sends a packet; waits for its `+` (resending on `-`, at most 3 times)."""
        packet = frame(data)
        for _ in range(4):
            self.send_raw(packet)
            if self.no_ack:
                return
            ack = self._read_ack()
            if ack == b"+":
                return
            self.nacks += 1
        raise RspError(f"packet {packet[:40]!r} was refused 4 times")

    def _read_ack(self):
        deadline = time.monotonic() + self.timeout
        while True:
            while self.buffer:
                first = self.buffer[:1]
                if first in (b"+", b"-"):
                    self.buffer = self.buffer[1:]
                    return first
                if first == b"$":
                    return b"+"  # a reply before the ack: the stub took the packet
                self.buffer = self.buffer[1:]  # noise
            self._fill(deadline)

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
