//! The client side of the gdb remote serial protocol: framing, checksums, `}` escapes, `*` run-length decoding, `qRcmd`.
//!
//! The kernel's stub (`kernel/rsp` + `gdbstub`) is the server; no maintained crate speaks
//! the client side, so this is the small one the inspector needs. [`Decoder`] is
//! incremental: bytes arrive from TCP in any split, and it hands out whole events.

/// Starts a packet.
pub const PACKET_START: u8 = b'$';
/// Ends a packet body; two hex checksum digits follow.
pub const CHECKSUM_MARK: u8 = b'#';
/// Escape byte: the next byte is xor 0x20.
pub const ESCAPE: u8 = b'}';
/// Run-length marker: the previous byte repeats (next byte - 29) more times.
pub const RUN_LENGTH: u8 = b'*';
/// Acknowledges a packet.
pub const ACK: u8 = b'+';
/// Asks for a packet again.
pub const NAK: u8 = b'-';
/// Ctrl-C: an interrupt request, a bare byte between packets.
pub const INTERRUPT: u8 = 0x03;

/// The modulo-256 sum of a packet body as sent (escaped, run-length encoded).
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// Escapes the four bytes the protocol reserves (`$ # } *`) as `}` and the byte xor 0x20.
pub fn escape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for &byte in data {
        if matches!(byte, PACKET_START | CHECKSUM_MARK | ESCAPE | RUN_LENGTH) {
            out.push(ESCAPE);
            out.push(byte ^ 0x20);
        } else {
            out.push(byte);
        }
    }
    out
}

/// A whole packet `$body#xx` for `data`, escaped.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let body = escape(data);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(PACKET_START);
    out.extend_from_slice(&body);
    out.push(CHECKSUM_MARK);
    out.extend_from_slice(format!("{:02x}", checksum(&body)).as_bytes());
    out
}

/// Undoes `}` escapes and `X*n` run-length encoding (n - 29 more copies of X), in one
/// left-to-right pass, as gdb decodes a received body.
pub fn decode_body(body: &[u8]) -> Result<Vec<u8>, RspError> {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            ESCAPE => {
                let next = *body
                    .get(i + 1)
                    .ok_or(RspError::Malformed("escape at the end"))?;
                out.push(next ^ 0x20);
                i += 2;
            }
            RUN_LENGTH => {
                let last = *out
                    .last()
                    .ok_or(RspError::Malformed("run length with nothing to repeat"))?;
                let count = *body
                    .get(i + 1)
                    .ok_or(RspError::Malformed("run length at the end"))?;
                // gdb never sends counts that would encode `$`/`#`, and none below 29+3.
                let repeat = count
                    .checked_sub(29)
                    .ok_or(RspError::Malformed("run length below 29"))?;
                out.extend(std::iter::repeat_n(last, usize::from(repeat)));
                i += 2;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Lowercase hex of `data`.
pub fn hex_encode(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(data.len() * 2);
    for &b in data {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The bytes of a hex string (either case).
pub fn hex_decode(text: &[u8]) -> Result<Vec<u8>, RspError> {
    if !text.len().is_multiple_of(2) {
        return Err(RspError::Malformed("odd hex length"));
    }
    text.chunks(2)
        .map(|pair| {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            Some(hi << 4 | lo)
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or(RspError::Malformed("not hex"))
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The `qRcmd` packet body for a monitor command line.
pub fn qrcmd(command: &str) -> Vec<u8> {
    format!("qRcmd,{}", hex_encode(command.as_bytes())).into_bytes()
}

/// What a `qRcmd` reply packet is.
#[derive(Debug, PartialEq, Eq)]
pub enum MonitorReply {
    /// An `O` packet: console text, more follows.
    Output(Vec<u8>),
    /// `OK`: the command is done.
    Done,
    /// `Enn`: the stub refused it.
    Error(String),
    /// Hex text with no `O` (a stub may answer in one packet).
    Text(Vec<u8>),
}

/// Classifies one decoded reply body to a `qRcmd`.
pub fn monitor_reply(body: &[u8]) -> Result<MonitorReply, RspError> {
    if body == b"OK" {
        return Ok(MonitorReply::Done);
    }
    if body.is_empty() {
        return Err(RspError::Unsupported);
    }
    if body[0] == b'E' && body.len() == 3 && body[1..].iter().all(u8::is_ascii_hexdigit) {
        return Ok(MonitorReply::Error(
            String::from_utf8_lossy(body).into_owned(),
        ));
    }
    if body[0] == b'O' {
        return Ok(MonitorReply::Output(hex_decode(&body[1..])?));
    }
    Ok(MonitorReply::Text(hex_decode(body)?))
}

/// Whether a decoded body is a stop reply (`T..`, `S..`, `W..`, `X..`).
pub fn is_stop_reply(body: &[u8]) -> bool {
    match body.first() {
        Some(b'T') | Some(b'S') => body.len() >= 3 && body[1..3].iter().all(u8::is_ascii_hexdigit),
        Some(b'W') | Some(b'X') => body.len() >= 2,
        _ => false,
    }
}

/// The signal number of a `T`/`S` stop reply.
pub fn stop_signal(body: &[u8]) -> Option<u8> {
    if !matches!(body.first(), Some(b'T') | Some(b'S')) || body.len() < 3 {
        return None;
    }
    hex_decode(&body[1..3]).ok().map(|v| v[0])
}

/// The thread id of a `T` stop reply (`T05thread:p01.03;...` or `thread:3;`), hex.
pub fn stop_thread(body: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(body.get(3..)?).ok()?;
    let value = text
        .split(';')
        .find_map(|pair| pair.strip_prefix("thread:"))?;
    // Multiprocess form p<pid>.<tid>: the thread is after the dot.
    let tid = value.rsplit('.').next()?;
    u32::from_str_radix(tid.trim_start_matches('p'), 16).ok()
}

/// gdb's i386 register order in a `g` reply: eax ecx edx ebx esp ebp esi edi eip ...,
/// each 4 bytes little-endian as 8 hex digits; eip is the ninth.
const EIP_REGISTER: usize = 8;

/// The eip of a `g` reply (null when the reply is an error, too short, or says the
/// register is unavailable with `x` digits).
pub fn eip_of_registers(body: &[u8]) -> Option<u32> {
    let at = EIP_REGISTER * 8;
    let bytes = hex_decode(body.get(at..at + 8)?).ok()?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// SIGINT as gdb numbers it: what the stub reports for a Ctrl-C.
pub const SIGINT: u8 = 2;

/// Whether a packet body (from gdb) resumes the target: after it, the next reply is a stop.
pub fn is_resume(body: &[u8]) -> bool {
    match body.first() {
        Some(b'c') | Some(b'C') | Some(b's') | Some(b'S') => true,
        _ => body.starts_with(b"vCont;"),
    }
}

/// Errors of the protocol layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RspError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("the stub does not support this request (empty reply)")]
    Unsupported,
}

/// One thing received on a link.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A packet with a good checksum: its raw bytes (`$...#xx`) and its decoded body.
    Packet {
        raw: Vec<u8>,
        body: Vec<u8>,
    },
    Ack,
    Nak,
    Interrupt,
    /// A packet whose checksum was wrong (answer with `-`).
    BadChecksum,
    /// A packet longer than the decoder's bound (dropped; answer with `-`).
    Overlong,
}

/// Incremental framing of received bytes into [`Event`]s; bytes outside packets other
/// than acks and 0x03 are line noise and skipped.
pub struct Decoder {
    state: State,
    buf: Vec<u8>,
    max_packet: usize,
}

enum State {
    Idle,
    Body,
    Sum1,
    Sum2(u8),
    /// An overlong packet: skip to its checksum.
    Skipping,
    SkipSum(u8),
}

impl Decoder {
    /// A decoder refusing packets over `max_packet` bytes (raw).
    pub fn new(max_packet: usize) -> Self {
        Decoder {
            state: State::Idle,
            buf: Vec::new(),
            max_packet,
        }
    }

    /// Feeds bytes; returns the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in bytes {
            if let Some(e) = self.push_byte(b) {
                events.push(e);
            }
        }
        events
    }

    fn push_byte(&mut self, b: u8) -> Option<Event> {
        match self.state {
            State::Idle => match b {
                PACKET_START => {
                    self.buf.clear();
                    self.buf.push(b);
                    self.state = State::Body;
                    None
                }
                ACK => Some(Event::Ack),
                NAK => Some(Event::Nak),
                INTERRUPT => Some(Event::Interrupt),
                _ => None,
            },
            State::Body => {
                if b == PACKET_START {
                    // A new packet starts inside one: the old one was cut off.
                    self.buf.clear();
                    self.buf.push(b);
                    return None;
                }
                self.buf.push(b);
                if b == CHECKSUM_MARK {
                    self.state = State::Sum1;
                } else if self.buf.len() > self.max_packet {
                    self.buf.clear();
                    self.state = State::Skipping;
                }
                None
            }
            State::Sum1 => {
                self.buf.push(b);
                self.state = State::Sum2(b);
                None
            }
            State::Sum2(first) => {
                self.buf.push(b);
                self.state = State::Idle;
                let raw = std::mem::take(&mut self.buf);
                let body = &raw[1..raw.len() - 3];
                let sent = hex_value(first).zip(hex_value(b)).map(|(h, l)| h << 4 | l);
                if sent != Some(checksum(body)) {
                    return Some(Event::BadChecksum);
                }
                match decode_body(body) {
                    Ok(decoded) => Some(Event::Packet { body: decoded, raw }),
                    Err(_) => Some(Event::BadChecksum),
                }
            }
            State::Skipping => {
                if b == CHECKSUM_MARK {
                    self.state = State::SkipSum(0);
                }
                None
            }
            State::SkipSum(n) => {
                if n == 1 {
                    self.state = State::Idle;
                    Some(Event::Overlong)
                } else {
                    self.state = State::SkipSum(n + 1);
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_checksums_like_gdb() {
        assert_eq!(frame(b"OK"), b"$OK#9a");
        assert_eq!(frame(b"D"), b"$D#44");
        assert_eq!(frame(b"qRcmd,68656c70"), b"$qRcmd,68656c70#fc".to_vec());
    }

    #[test]
    fn escapes_reserved_bytes() {
        assert_eq!(escape(b"a$b#c}d*"), b"a}\x04b}\x03c}]d}\x0a");
        assert_eq!(decode_body(&escape(b"a$b#c}d*")).unwrap(), b"a$b#c}d*");
    }

    #[test]
    fn decodes_run_length() {
        // "0* " is '0' and 32 - 29 = 3 more: "0000" (gdb's own example).
        assert_eq!(decode_body(b"0* ").unwrap(), b"0000");
        assert_eq!(decode_body(b"ab*\"c").unwrap(), b"abbbbbbc");
        assert!(decode_body(b"*!").is_err());
        assert!(decode_body(b"a}").is_err());
    }

    #[test]
    fn decoder_splits_events_across_reads() {
        let mut d = Decoder::new(64);
        let mut events = d.push(b"+$O");
        events.extend(d.push(b"4b0a#"));
        events.extend(d.push(b"7"));
        events.extend(d.push(b"6\x03-junk$OK#9a"));
        assert_eq!(
            events,
            vec![
                Event::Ack,
                Event::Packet {
                    raw: b"$O4b0a#76".to_vec(),
                    body: b"O4b0a".to_vec()
                },
                Event::Interrupt,
                Event::Nak,
                Event::Packet {
                    raw: b"$OK#9a".to_vec(),
                    body: b"OK".to_vec()
                },
            ]
        );
    }

    #[test]
    fn decoder_reports_bad_checksums_and_overlong_packets() {
        let mut d = Decoder::new(8);
        assert_eq!(d.push(b"$OK#00"), vec![Event::BadChecksum]);
        assert_eq!(d.push(b"$0123456789abcdef#12$OK#9a").len(), 2);
        let mut d = Decoder::new(8);
        assert_eq!(d.push(b"$0123456789abcdef#12")[0], Event::Overlong);
    }

    #[test]
    fn recorded_qrcmd_reply_decodes() {
        // Recorded from the kernel's stub: `monitor help --json` begins with these bytes.
        let recorded = b"+$O7b22636f6d6d616e64223a2268656c70227d0a#b6";
        let mut d = Decoder::new(4096);
        let events = d.push(recorded);
        assert_eq!(events[0], Event::Ack);
        let Event::Packet { body, .. } = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(
            monitor_reply(body).unwrap(),
            MonitorReply::Output(b"{\"command\":\"help\"}\n".to_vec())
        );
        assert_eq!(monitor_reply(b"OK").unwrap(), MonitorReply::Done);
        assert_eq!(
            monitor_reply(b"E01").unwrap(),
            MonitorReply::Error("E01".into())
        );
        assert_eq!(monitor_reply(b"").unwrap_err(), RspError::Unsupported);
    }

    #[test]
    fn classifies_stops_and_resumes() {
        assert!(is_stop_reply(b"T02thread:01;"));
        assert!(is_stop_reply(b"S05"));
        assert!(is_stop_reply(b"W00"));
        assert!(!is_stop_reply(b"OK"));
        assert_eq!(stop_signal(b"T02thread:01;"), Some(SIGINT));
        assert_eq!(stop_signal(b"T05swbreak:;"), Some(5));
        assert!(is_resume(b"vCont;c"));
        assert!(is_resume(b"c"));
        assert!(is_resume(b"s"));
        assert!(!is_resume(b"vCont?"));
        assert!(!is_resume(b"qRcmd,00"));
        assert_eq!(hex_decode(b"4B0a").unwrap(), b"K\n");
        assert_eq!(qrcmd("help"), b"qRcmd,68656c70");
    }

    #[test]
    fn stop_replies_name_their_thread() {
        assert_eq!(stop_thread(b"T05thread:p01.03;swbreak:;"), Some(3));
        assert_eq!(stop_thread(b"T02thread:1a;"), Some(0x1a));
        assert_eq!(stop_thread(b"S05"), None);
        assert_eq!(stop_thread(b"T05swbreak:;"), None);
    }

    #[test]
    fn a_register_reply_gives_eip() {
        // eax..edi, then eip 0x00102a3c little-endian, then eflags.
        let mut body = "00000000".repeat(8);
        body.push_str("3c2a1000");
        body.push_str("46020000");
        assert_eq!(eip_of_registers(body.as_bytes()), Some(0x0010_2a3c));
        assert_eq!(eip_of_registers(b"E01"), None);
        assert_eq!(eip_of_registers(&body.as_bytes()[..70]), None);
        let unavailable = "00000000".repeat(8) + "xxxxxxxx";
        assert_eq!(eip_of_registers(unavailable.as_bytes()), None);
    }
}
