//! GDB remote serial protocol framing, pure and host-tested, in front of the kernel's stub.
//!
//! `gdbstub` treats a bad checksum, a NAK or a stray byte between packets as a fatal
//! error (its issue #137). On a serial line such bytes are ordinary, and a debugger that
//! dies mid-packet leaves half a packet behind. So the kernel never hands raw line bytes
//! to `gdbstub`: [`Framer`] turns them into [`Event`]s, passing on only complete packets
//! whose checksum is right and that fit in the stub's buffer; [`Recorder`] remembers the
//! last packet sent so a `-` from gdb can be answered by sending it again; and
//! [`LineBuffer`] packs console output (`monitor` replies) into one `O` packet per line
//! instead of one per formatted fragment.
#![no_std]
#![forbid(unsafe_code)]

/// Starts a packet: `$body#xx`.
pub const PACKET_START: u8 = b'$';
/// Ends a packet's body; two hex checksum digits follow.
pub const CHECKSUM_MARK: u8 = b'#';
/// Acknowledges a packet.
pub const ACK: u8 = b'+';
/// Asks for a packet again (bad checksum).
pub const NAK: u8 = b'-';
/// Ctrl-C: gdb's interrupt request, a bare byte between packets.
pub const INTERRUPT: u8 = 0x03;
/// The bytes around a body: `$`, `#` and the two checksum digits.
pub const FRAMING_BYTES: usize = 4;

/// The modulo-256 sum of a packet body (what the two hex digits after `#` encode).
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// The value of one hex digit (either case).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The lowercase hex digit of a nibble.
fn hex_digit(nibble: u8) -> u8 {
    b"0123456789abcdef"[usize::from(nibble & 0xF)]
}

/// Emits `$body#xx` byte by byte (`body` must not contain `$`, `#`, `}` or `*`).
pub fn write_packet(body: &[u8], mut emit: impl FnMut(u8)) {
    emit(PACKET_START);
    body.iter().for_each(|&b| emit(b));
    let sum = checksum(body);
    emit(CHECKSUM_MARK);
    emit(hex_digit(sum >> 4));
    emit(hex_digit(sum));
}

/// Emits an `O` (console output) packet carrying `text`, hex-encoded.
pub fn write_output_packet(text: &[u8], mut emit: impl FnMut(u8)) {
    const OUTPUT: u8 = b'O';
    let mut sum = OUTPUT;
    emit(PACKET_START);
    emit(OUTPUT);
    for &byte in text {
        for digit in [hex_digit(byte >> 4), hex_digit(byte)] {
            sum = sum.wrapping_add(digit);
            emit(digit);
        }
    }
    emit(CHECKSUM_MARK);
    emit(hex_digit(sum >> 4));
    emit(hex_digit(sum));
}

/// A complete packet with a verified checksum, as received (`$body#xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    raw: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The whole packet, `$` to the last checksum digit: what `gdbstub` is fed.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// The body between `$` and `#`.
    pub fn body(&self) -> &'a [u8] {
        &self.raw[1..self.raw.len() - (FRAMING_BYTES - 1)]
    }
}

/// What one received byte amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A well-formed packet that fits the buffer.
    Packet(Packet<'a>),
    /// `+` between packets.
    Ack,
    /// `-` between packets: send the last packet again.
    Nak,
    /// `0x03` between packets: gdb wants the target stopped.
    Interrupt,
    /// A packet whose checksum is wrong or unreadable: it was dropped; answer `-` so the
    /// sender retransmits it.
    BadChecksum,
    /// A packet longer than the buffer: it was dropped up to its end; answer `-`.
    Overlong,
}

/// Bytes and packets the framer threw away, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Bytes between packets that were none of `$ + - 0x03`.
    pub stray_bytes: u32,
    /// Packets with a wrong checksum.
    pub bad_checksums: u32,
    /// Packets too long for the buffer.
    pub overlong: u32,
    /// Packets cut short by a new `$` (the sender gave up or died mid-packet).
    pub abandoned: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between packets.
    Idle,
    /// After `$`, collecting the body.
    Body,
    /// After `#`, waiting for the first checksum digit.
    Checksum1,
    /// Waiting for the second checksum digit; the first was `high`.
    Checksum2 { high: u8 },
    /// Inside a packet that no longer fits: skipping to its `#`.
    Discard,
    /// Skipping an overlong packet's checksum digits (how many are left).
    DiscardChecksum { left: u8 },
}

/// Turns the received byte stream into [`Event`]s; packets are at most `N` bytes long,
/// framing included (so `N` is what the stub may advertise as `PacketSize`).
///
/// A `$` always starts a new packet, even inside another one: the protocol escapes `$`
/// in bodies, so a bare `$` means the sender started over (a new gdb after the old one
/// died mid-packet), and the framer can never stay stuck in half a packet.
pub struct Framer<const N: usize> {
    buf: [u8; N],
    len: usize,
    sum: u8,
    state: State,
    stats: FramerStats,
}

impl<const N: usize> Default for Framer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Framer<N> {
    /// The smallest useful buffer: framing plus a one-byte body.
    const _MIN: () = assert!(N > FRAMING_BYTES);

    /// An idle framer.
    pub const fn new() -> Self {
        let () = Self::_MIN;
        Framer {
            buf: [0; N],
            len: 0,
            sum: 0,
            state: State::Idle,
            stats: FramerStats {
                stray_bytes: 0,
                bad_checksums: 0,
                overlong: 0,
                abandoned: 0,
            },
        }
    }

    /// Forgets any partial packet.
    pub fn reset(&mut self) {
        if self.state != State::Idle {
            self.stats.abandoned += 1;
        }
        self.state = State::Idle;
        self.len = 0;
    }

    /// Whether a packet has started and not ended.
    pub fn in_packet(&self) -> bool {
        self.state != State::Idle
    }

    /// What was thrown away so far.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    fn start_packet(&mut self) {
        if self.state != State::Idle {
            self.stats.abandoned += 1;
        }
        self.buf[0] = PACKET_START;
        self.len = 1;
        self.sum = 0;
        self.state = State::Body;
    }

    fn bad_checksum(&mut self) -> Option<Event<'_>> {
        self.stats.bad_checksums += 1;
        self.state = State::Idle;
        self.len = 0;
        Some(Event::BadChecksum)
    }

    /// Takes one received byte; returns an event when it completes one.
    pub fn push(&mut self, byte: u8) -> Option<Event<'_>> {
        if byte == PACKET_START {
            self.start_packet();
            return None;
        }
        match self.state {
            State::Idle => match byte {
                ACK => Some(Event::Ack),
                NAK => Some(Event::Nak),
                INTERRUPT => Some(Event::Interrupt),
                _ => {
                    self.stats.stray_bytes += 1;
                    None
                }
            },
            State::Body => {
                // Room for this byte and, unless it is the `#` itself, the `#` to come;
                // then the two checksum digits.
                const CHECKSUM_DIGITS: usize = 2;
                let needed = if byte == CHECKSUM_MARK {
                    1 + CHECKSUM_DIGITS
                } else {
                    2 + CHECKSUM_DIGITS
                };
                if self.len + needed > N {
                    self.state = if byte == CHECKSUM_MARK {
                        State::DiscardChecksum { left: 2 }
                    } else {
                        State::Discard
                    };
                    return None;
                }
                self.buf[self.len] = byte;
                self.len += 1;
                if byte == CHECKSUM_MARK {
                    self.state = State::Checksum1;
                } else {
                    self.sum = self.sum.wrapping_add(byte);
                }
                None
            }
            State::Checksum1 => match hex_value(byte) {
                Some(high) => {
                    self.buf[self.len] = byte;
                    self.len += 1;
                    self.state = State::Checksum2 { high };
                    None
                }
                None => self.bad_checksum(),
            },
            State::Checksum2 { high } => match hex_value(byte) {
                Some(low) if (high << 4 | low) == self.sum => {
                    self.buf[self.len] = byte;
                    self.len += 1;
                    self.state = State::Idle;
                    let len = core::mem::take(&mut self.len);
                    Some(Event::Packet(Packet {
                        raw: &self.buf[..len],
                    }))
                }
                _ => self.bad_checksum(),
            },
            State::Discard => {
                if byte == CHECKSUM_MARK {
                    self.state = State::DiscardChecksum { left: 2 };
                }
                None
            }
            State::DiscardChecksum { left } => {
                if left > 1 {
                    self.state = State::DiscardChecksum { left: left - 1 };
                    return None;
                }
                self.state = State::Idle;
                self.len = 0;
                self.stats.overlong += 1;
                Some(Event::Overlong)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordState {
    Outside,
    Body,
    Checksum { left: u8 },
}

/// Watches the bytes the stub sends and keeps the last packet whole, so that a `-` from
/// gdb (it received the packet damaged) can be answered by sending it again. A packet
/// longer than `N` is not kept (a NAK of it goes unanswered; gdb then times out and
/// asks again).
pub struct Recorder<const N: usize> {
    buf: [u8; N],
    len: usize,
    sum: u8,
    state: RecordState,
    complete: bool,
    overflow: bool,
}

impl<const N: usize> Default for Recorder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Recorder<N> {
    /// A recorder that has seen nothing.
    pub const fn new() -> Self {
        Recorder {
            buf: [0; N],
            len: 0,
            sum: 0,
            state: RecordState::Outside,
            complete: false,
            overflow: false,
        }
    }

    /// Notes one sent byte.
    pub fn observe(&mut self, byte: u8) {
        match self.state {
            RecordState::Outside => {
                if byte == PACKET_START {
                    self.len = 0;
                    self.sum = 0;
                    self.complete = false;
                    self.overflow = false;
                    self.state = RecordState::Body;
                    self.keep(byte);
                }
            }
            RecordState::Body => {
                self.keep(byte);
                if byte == CHECKSUM_MARK {
                    self.state = RecordState::Checksum { left: 2 };
                } else {
                    self.sum = self.sum.wrapping_add(byte);
                }
            }
            RecordState::Checksum { left } => {
                self.keep(byte);
                if left > 1 {
                    self.state = RecordState::Checksum { left: left - 1 };
                } else {
                    self.state = RecordState::Outside;
                    self.complete = true;
                }
            }
        }
    }

    fn keep(&mut self, byte: u8) {
        if self.len < N {
            self.buf[self.len] = byte;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    /// The last complete packet, if it was short enough to keep.
    pub fn last_packet(&self) -> Option<&[u8]> {
        (self.complete && !self.overflow).then(|| &self.buf[..self.len])
    }

    /// Whether a packet was started and not finished (its sender failed midway).
    pub fn in_packet(&self) -> bool {
        self.state != RecordState::Outside
    }

    /// Whether the unfinished packet is past its `#` (only checksum digits are missing).
    pub fn in_checksum(&self) -> bool {
        matches!(self.state, RecordState::Checksum { .. })
    }

    /// The checksum of the unfinished packet's body so far.
    pub fn body_checksum(&self) -> u8 {
        self.sum
    }

    /// Forgets everything (a new session: gdb may not NAK the old one's replies).
    pub fn forget(&mut self) {
        *self = Self::new();
    }
}

/// Collects console text and hands it on in pieces of whole lines, or of `N` bytes when
/// a line is longer, so that each becomes one `O` packet rather than one per fragment.
pub struct LineBuffer<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuffer {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes`, calling `flush` with each completed line and each full buffer.
    pub fn write(&mut self, bytes: &[u8], flush: &mut dyn FnMut(&[u8])) {
        for &byte in bytes {
            self.buf[self.len] = byte;
            self.len += 1;
            if byte == b'\n' || self.len == N {
                self.finish(flush);
            }
        }
    }

    /// Hands on whatever is left (an unterminated last line).
    pub fn finish(&mut self, flush: &mut dyn FnMut(&[u8])) {
        if self.len > 0 {
            flush(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests;
