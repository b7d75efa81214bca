//! The stub's line: COM1, the bytes IRQ 4 received and nobody has read yet, and the
//! record of the last packet sent (for gdb's `-`).

use core::convert::Infallible;

use gdbstub::conn::Connection;
use rsp::{Recorder, ACK, NAK};
use spin::Mutex;

use crate::arch::x86::com1::Com1;

/// Received bytes not yet framed: IRQ 4 drains the UART's 16-byte FIFO into here.
const RING_SIZE: usize = 512;
/// The longest reply kept for retransmission: a full `m` reply (hex doubles the
/// packet-size worth of memory) with room for framing.
const RECORD_SIZE: usize = 2 * crate::arch::x86::debugger::PACKET_BUFFER_SIZE + 16;

/// A fixed ring of received bytes; when full, new bytes are dropped (and counted): gdb
/// then sees a damaged packet and sends it again.
struct Ring {
    bytes: [u8; RING_SIZE],
    head: usize,
    len: usize,
    dropped: u32,
}

impl Ring {
    const fn new() -> Ring {
        Ring {
            bytes: [0; RING_SIZE],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }
    fn push(&mut self, byte: u8) {
        if self.len == RING_SIZE {
            self.dropped += 1;
            return;
        }
        self.bytes[(self.head + self.len) % RING_SIZE] = byte;
        self.len += 1;
    }
    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % RING_SIZE;
        self.len -= 1;
        Some(byte)
    }
}

/// COM1 and what the stub knows about the traffic on it.
pub struct Link {
    com1: Com1,
    ring: Ring,
    recorder: Recorder<RECORD_SIZE>,
    /// Drops output (the stub feeds `gdbstub` a packet of its own whose reply gdb must
    /// not see).
    muted: bool,
    /// Whether a `+` went out since [`Link::begin_packet`].
    acked: bool,
}

static LINK: Mutex<Link> = Mutex::new(Link {
    com1: Com1::new(),
    ring: Ring::new(),
    recorder: Recorder::new(),
    muted: false,
    acked: false,
});

/// Runs `f` on the link. The stub never holds the link across a call into `gdbstub`
/// (whose writes come back here), so the lock is always free; should it not be, `f` is
/// skipped rather than spinning forever.
pub fn with_link<R>(f: impl FnOnce(&mut Link) -> R) -> Option<R> {
    LINK.try_lock().map(|mut link| f(&mut link))
}

impl Link {
    /// Programs COM1; false when there is no UART.
    pub fn init(&mut self) -> bool {
        self.com1.init()
    }

    /// Moves whatever the UART holds into the ring (IRQ 4).
    pub fn drain_uart(&mut self) {
        while let Some(byte) = self.com1.try_read() {
            self.ring.push(byte);
        }
    }

    /// The next received byte: from the ring, else from the UART; `None` when nothing
    /// is waiting.
    pub fn next_byte(&mut self) -> Option<u8> {
        self.ring.pop().or_else(|| self.com1.try_read())
    }

    /// Sends bytes (unless muted), noting packets for retransmission.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.muted {
            return;
        }
        for &byte in bytes {
            if byte == ACK && !self.recorder.in_packet() {
                self.acked = true;
            }
            self.recorder.observe(byte);
        }
        self.com1.write(bytes);
    }

    /// Sends a `-`: a received packet was damaged or too long.
    pub fn nak(&mut self) {
        self.send(&[NAK]);
    }

    /// gdb sent `-`: sends the last packet again, if it was kept.
    pub fn retransmit(&mut self) {
        if self.muted {
            return;
        }
        if let Some(packet) = self.recorder.last_packet() {
            self.com1.write(packet);
        }
    }

    /// Sends `$body#xx`.
    pub fn send_packet(&mut self, body: &[u8]) {
        let (bytes, len) = small_packet(body);
        self.send(&bytes[..len]);
    }

    /// Sends `text` as `O` packets (gdb prints them while it waits for a stop).
    pub fn send_console(&mut self, text: &[u8]) {
        if self.muted {
            return;
        }
        let mut out = [0u8; SMALL_PACKET];
        for chunk in text.chunks((SMALL_PACKET - rsp::FRAMING_BYTES - 1) / 2) {
            let mut len = 0;
            rsp::write_output_packet(chunk, |b| {
                out[len] = b;
                len += 1;
            });
            self.send(&out[..len]);
        }
    }

    /// A packet is about to be handed to `gdbstub`.
    pub fn begin_packet(&mut self) {
        self.acked = false;
    }

    /// `gdbstub` failed in the middle of a packet: acknowledges it if `gdbstub` did not,
    /// ends a reply it left unfinished so that gdb rejects it, and answers `error_body`
    /// (sent now, or on gdb's `-` for the broken reply).
    pub fn finish_failed_packet(&mut self, error_body: &[u8]) {
        if !self.acked {
            self.send(&[ACK]);
        }
        if self.recorder.in_packet() {
            // Digits that are not hex: gdb sees a bad checksum and asks again with `-`.
            const NOT_HEX: u8 = b'z';
            if !self.recorder.in_checksum() {
                self.send(&[rsp::CHECKSUM_MARK]);
            }
            while self.recorder.in_packet() {
                self.send(&[NOT_HEX]);
            }
            let (bytes, len) = small_packet(error_body);
            // Keep the error reply as "the last packet" without sending it: gdb's `-`
            // for the broken one fetches it.
            bytes[..len].iter().for_each(|&b| self.recorder.observe(b));
        } else {
            self.send_packet(error_body);
        }
    }

    /// A new session: the old one's replies are gone.
    pub fn forget_replies(&mut self) {
        self.recorder.forget();
    }

    /// Turns output off or on.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }
}

/// The longest packet the stub writes by itself (errors, console notes).
const SMALL_PACKET: usize = 256;

/// `$body#xx` in a small buffer (a longer body is cut, which only the stub's own short
/// error bodies could be, and they are not).
fn small_packet(body: &[u8]) -> ([u8; SMALL_PACKET], usize) {
    let mut bytes = [0u8; SMALL_PACKET];
    let mut len = 0;
    rsp::write_packet(body, |b| {
        if len < SMALL_PACKET {
            bytes[len] = b;
            len += 1;
        }
    });
    (bytes, len)
}

/// `gdbstub`'s connection: a handle on [`LINK`].
pub struct Com1Conn;

impl Connection for Com1Conn {
    type Error = Infallible;

    fn write(&mut self, byte: u8) -> Result<(), Infallible> {
        with_link(|link| link.send(&[byte]));
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Infallible> {
        with_link(|link| link.send(buf));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        // Writes go straight to the UART.
        Ok(())
    }
}
