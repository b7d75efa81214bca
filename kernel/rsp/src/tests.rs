//! Host tests of the framer, the recorder and the line buffer.

extern crate std;

use std::vec::Vec;

use super::*;

/// A small framer: packets of at most 32 bytes, framing included.
type Small = Framer<32>;

/// `$body#xx` with the right checksum.
fn packet(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_packet(body, |b| out.push(b));
    out
}

/// Every event the bytes produce, packets as their bodies.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Packet(Vec<u8>),
    Ack,
    Nak,
    Interrupt,
    BadChecksum,
    Overlong,
}

fn feed<const N: usize>(framer: &mut Framer<N>, bytes: &[u8]) -> Vec<Seen> {
    let mut seen = Vec::new();
    for &b in bytes {
        if let Some(event) = framer.push(b) {
            seen.push(match event {
                Event::Packet(p) => {
                    assert_eq!(p.raw()[0], b'$');
                    assert_eq!(p.raw(), packet(p.body()).as_slice());
                    Seen::Packet(p.body().to_vec())
                }
                Event::Ack => Seen::Ack,
                Event::Nak => Seen::Nak,
                Event::Interrupt => Seen::Interrupt,
                Event::BadChecksum => Seen::BadChecksum,
                Event::Overlong => Seen::Overlong,
            });
        }
    }
    seen
}

#[test]
fn a_packet_is_passed_whole() {
    let mut f = Small::new();
    assert_eq!(feed(&mut f, b"$g#67"), [Seen::Packet(b"g".to_vec())]);
    assert!(!f.in_packet());
}

#[test]
fn checksum_digits_in_either_case() {
    let mut f = Small::new();
    let body = b"qSupported";
    let sum = checksum(body);
    let upper = std::format!("${}#{sum:02X}", std::str::from_utf8(body).unwrap());
    assert_eq!(
        feed(&mut f, upper.as_bytes()),
        [Seen::Packet(body.to_vec())]
    );
}

#[test]
fn ack_nak_and_interrupt_between_packets() {
    let mut f = Small::new();
    let mut bytes = b"+-\x03".to_vec();
    bytes.extend(packet(b"c"));
    bytes.push(b'+');
    assert_eq!(
        feed(&mut f, &bytes),
        [
            Seen::Ack,
            Seen::Nak,
            Seen::Interrupt,
            Seen::Packet(b"c".to_vec()),
            Seen::Ack
        ]
    );
}

#[test]
fn control_bytes_inside_a_body_are_data() {
    let mut f = Small::new();
    let body = b"X1,3:+-\x03";
    assert_eq!(feed(&mut f, &packet(body)), [Seen::Packet(body.to_vec())]);
}

#[test]
fn a_bad_checksum_is_reported_and_the_next_packet_gets_through() {
    let mut f = Small::new();
    let mut bytes = b"$g#00".to_vec();
    bytes.extend(b"$m0,4#zz");
    bytes.extend(packet(b"g"));
    assert_eq!(
        feed(&mut f, &bytes),
        [
            Seen::BadChecksum,
            Seen::BadChecksum,
            Seen::Packet(b"g".to_vec())
        ]
    );
    assert_eq!(f.stats().bad_checksums, 2);
}

#[test]
fn stray_bytes_between_packets_are_dropped() {
    let mut f = Small::new();
    let mut bytes = b"hello\r\n#42".to_vec();
    bytes.extend(packet(b"?"));
    assert_eq!(feed(&mut f, &bytes), [Seen::Packet(b"?".to_vec())]);
    assert_eq!(f.stats().stray_bytes, 10);
}

#[test]
fn a_new_dollar_abandons_a_half_packet() {
    let mut f = Small::new();
    // gdb died after "$m100" (and after "$g#6"); a new one sends qSupported.
    let mut bytes = b"$m100".to_vec();
    bytes.extend(b"$g#6");
    bytes.extend(packet(b"qSupported"));
    assert_eq!(feed(&mut f, &bytes), [Seen::Packet(b"qSupported".to_vec())]);
    assert_eq!(f.stats().abandoned, 2);
}

#[test]
fn a_packet_that_exactly_fits_is_accepted() {
    let mut f = Small::new();
    let body = [b'a'; 32 - FRAMING_BYTES];
    assert_eq!(feed(&mut f, &packet(&body)), [Seen::Packet(body.to_vec())]);
}

#[test]
fn an_overlong_packet_is_dropped_to_its_end_then_nakked() {
    let mut f = Small::new();
    let long = [b'a'; 32 - FRAMING_BYTES + 1];
    // Bytes of the dropped body that look like control bytes must not leak out.
    let mut body = long.to_vec();
    body.extend(b"+-\x03");
    let mut bytes = packet(&body);
    bytes.extend(packet(b"g"));
    assert_eq!(
        feed(&mut f, &bytes),
        [Seen::Overlong, Seen::Packet(b"g".to_vec())]
    );
    assert_eq!(f.stats().overlong, 1);
}

#[test]
fn an_overlong_packet_cut_short_is_abandoned_by_the_next_dollar() {
    let mut f = Small::new();
    let mut bytes = std::vec![b'$'; 1];
    bytes.extend([b'z'; 100]);
    bytes.extend(packet(b"g"));
    assert_eq!(feed(&mut f, &bytes), [Seen::Packet(b"g".to_vec())]);
}

/// A deterministic pseudo-random byte source (xorshift32).
struct Noise(u32);

impl Noise {
    fn byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 >> 24) as u8
    }
}

#[test]
fn a_valid_packet_after_100_kib_of_junk_gets_through() {
    for seed in 1u32..=20 {
        let mut noise = Noise(seed.wrapping_mul(2_654_435_761));
        let mut f = Framer::<4096>::new();
        let junk: Vec<u8> = (0..100 * 1024).map(|_| noise.byte()).collect();
        feed(&mut f, &junk);
        assert_eq!(
            feed(&mut f, &packet(b"g")),
            [Seen::Packet(b"g".to_vec())],
            "seed {seed}"
        );
    }
}

#[test]
fn junk_never_yields_an_oversized_or_malformed_packet() {
    let mut noise = Noise(0x1234_5678);
    let mut f = Small::new();
    for _ in 0..200_000 {
        if let Some(Event::Packet(p)) = f.push(noise.byte()) {
            assert!(p.raw().len() <= 32);
            assert_eq!(p.raw()[0], PACKET_START);
            assert_eq!(p.raw()[p.raw().len() - 3], CHECKSUM_MARK);
        }
    }
}

#[test]
fn reset_forgets_a_partial_packet() {
    let mut f = Small::new();
    feed(&mut f, b"$qSupp");
    assert!(f.in_packet());
    f.reset();
    assert!(!f.in_packet());
    assert_eq!(feed(&mut f, b"orted#00+"), [Seen::Ack]);
}

fn record<const N: usize>(r: &mut Recorder<N>, bytes: &[u8]) {
    bytes.iter().for_each(|&b| r.observe(b));
}

#[test]
fn the_recorder_keeps_the_last_whole_packet() {
    let mut r = Recorder::<64>::new();
    assert_eq!(r.last_packet(), None);
    record(&mut r, b"+");
    record(&mut r, &packet(b"OK"));
    assert_eq!(r.last_packet(), Some(packet(b"OK").as_slice()));
    record(&mut r, b"+");
    record(&mut r, b"$T05thr");
    assert!(r.in_packet());
    assert!(!r.in_checksum());
    assert_eq!(r.body_checksum(), checksum(b"T05thr"));
    assert_eq!(r.last_packet(), None);
    record(&mut r, b"ead:01;#");
    assert!(r.in_checksum());
    record(&mut r, b"ab");
    assert!(!r.in_packet());
    assert_eq!(r.last_packet(), Some(b"$T05thread:01;#ab".as_slice()));
}

#[test]
fn the_recorder_does_not_keep_a_packet_too_long_for_it() {
    let mut r = Recorder::<8>::new();
    record(&mut r, &packet(b"0123456789"));
    assert_eq!(r.last_packet(), None);
    record(&mut r, &packet(b"E01"));
    assert_eq!(r.last_packet(), Some(packet(b"E01").as_slice()));
    r.forget();
    assert_eq!(r.last_packet(), None);
}

#[test]
fn output_packets_are_hex_encoded() {
    let mut out = Vec::new();
    write_output_packet(b"hi\n", |b| out.push(b));
    assert_eq!(out, packet(b"O68690a"));
}

#[test]
fn the_line_buffer_hands_on_whole_lines_and_full_buffers() {
    let mut lb = LineBuffer::<8>::new();
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut flush = |p: &[u8]| pieces.push(p.to_vec());
    lb.write(b"ab", &mut flush);
    lb.write(b"c\nde", &mut flush);
    lb.write(b"fghijklmn", &mut flush);
    lb.finish(&mut flush);
    lb.finish(&mut flush);
    assert_eq!(
        pieces,
        [b"abc\n".to_vec(), b"defghijk".to_vec(), b"lmn".to_vec()]
    );
}
