//! gdb's `m` packets answered by the proxy from the RAM file while the stub holds the kernel stopped: the stub's own walk (`mm::walk::read_linear`) over the file, so the same bytes and the same errors, at memory speed instead of the serial line's.
//!
//! The stub (kernel/kernel/src/gdb/target.rs, `read_addrs`) answers `m ADDR,LEN` with the
//! bytes up to the first page its walk refuses (`mm::walk::translate`: no table, no page,
//! a frame beyond RAM), and `E0e` (EFAULT) when not even the first byte is readable. One
//! more rule of its, kept here: after a short read, a read that starts exactly where the
//! short one ended answers nothing (gdbstub appends the chunks of a long `m`, and a chunk
//! after a short one must not splice distant bytes in); a write forgets it.

use mm::walk::read_linear;

use crate::live::view::RamView;
use crate::rsp;

/// The stub's answer to a read it cannot do at all: EFAULT (14), as gdbstub writes it.
pub const EFAULT_REPLY: &[u8] = b"E0e";

/// What the proxy remembers between reads (the stub's continuation rule).
#[derive(Default, Debug)]
pub struct Reads {
    continuation: Option<u32>,
}

/// `m ADDR,LEN`: the address and length (`None`: not an `m` packet, or malformed, which
/// the stub answers itself).
pub fn parse_m(body: &[u8]) -> Option<(u32, u32)> {
    let rest = body.strip_prefix(b"m")?;
    let text = std::str::from_utf8(rest).ok()?;
    let (addr, len) = text.split_once(',')?;
    let addr = u32::from_str_radix(addr, 16).ok()?;
    let len = u32::from_str_radix(len, 16).ok()?;
    Some((addr, len))
}

impl Reads {
    /// The reply body to `m addr,len` over `view` (the kernel stopped).
    pub fn answer(&mut self, view: &RamView<'_>, addr: u32, len: u32) -> Vec<u8> {
        let mut buf = vec![0u8; len as usize];
        let end = addr.wrapping_add(len);
        if self.continuation == Some(addr) {
            self.continuation = Some(end);
            return Vec::new();
        }
        let n = read_linear(view, addr, &mut buf, |at, piece| view.copy(at, piece));
        self.continuation = (n < buf.len()).then_some(end);
        if n == 0 {
            return EFAULT_REPLY.to_vec();
        }
        rsp::hex_encode(&buf[..n]).into_bytes()
    }

    /// gdb wrote memory, or the stub answered a read itself: the stub's own state rules.
    pub fn forget(&mut self) {
        self.continuation = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_m_packets_only() {
        assert_eq!(parse_m(b"m1000,20"), Some((0x1000, 0x20)));
        assert_eq!(parse_m(b"mffffffff,1"), Some((0xffff_ffff, 1)));
        for bad in [
            &b"M1000,4:00"[..],
            b"m1000",
            b"mzz,4",
            b"m1000,",
            b"m,4",
            b"m100000000,1",
        ] {
            assert_eq!(parse_m(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
