//! An ATA PIO driver for the master drive of the primary IDE bus: polled, LBA28, no DMA.
//!
//! It is the swap device's driver (Linux 0.12 swaps to a block device; this kernel has
//! no buffer cache, so swap talks to the disk directly, a page = 8 sectors at a time).
//!
//! - Polling only: `probe` sets nIEN in the device control register, so the drive never
//!   raises IRQ 14 (the PIC keeps that line masked too). A poll is bounded: every wait
//!   loop runs at most `timeout / POLL_INTERVAL_US` iterations (see [`polls`]) and then
//!   fails with [`AtaError::Timeout`]; nothing here can spin forever.
//! - PIO only: the drive moves data through the data port, never into memory by itself
//!   (bus-master DMA is never programmed), so no access here can corrupt memory.
//! - No locking: an [`AtaDisk`] is a handle on one drive and its commands are register
//!   sequences that must not interleave. The caller serialises (the kernel is not
//!   preemptible and runs on one CPU; the swap code owns the disk behind its own lock).
//!
//! Register and command numbers are those of ATA/ATAPI-6 (T13 1410D), task file section.

use core::fmt;

use x86::io::{inb, inw, outb, outw};

// --- Ports of the primary bus (command block 0x1F0-0x1F7, control block 0x3F6) ---------

/// Data register: 16 bits, one sector = 256 reads or writes.
const DATA: u16 = 0x1F0;
/// Read: error register. Write: features.
const ERROR: u16 = 0x1F1;
/// Sector count (0 would mean 256: never used, see [`MAX_SECTORS_PER_COMMAND`]).
const SECTOR_COUNT: u16 = 0x1F2;
/// LBA bits 0-7. After a reset, part of the device signature.
const LBA_LOW: u16 = 0x1F3;
/// LBA bits 8-15. After a reset or a refused IDENTIFY: signature byte (0x14 = ATAPI).
const LBA_MID: u16 = 0x1F4;
/// LBA bits 16-23. Signature byte (0xEB = ATAPI).
const LBA_HIGH: u16 = 0x1F5;
/// Device register: drive select, LBA mode, LBA bits 24-27.
const DEVICE: u16 = 0x1F6;
/// Read: status (reading it acknowledges a pending interrupt). Write: command.
const STATUS_COMMAND: u16 = 0x1F7;
/// Read: alternate status (no side effect). Write: device control.
const ALT_STATUS_CONTROL: u16 = 0x3F6;
/// The POST-code port: a write takes about 1 us on a PC's ISA bus and has no effect,
/// the classic I/O delay (Linux's `outb_p`, and this kernel's 8259 code).
const DELAY_PORT: u16 = 0x80;

// --- Register bits ---------------------------------------------------------------------

/// Device register: bits 7 and 5 are obsolete and set by convention, bit 6 selects LBA
/// addressing, bit 4 clear selects the master.
const DEVICE_LBA_MASTER: u8 = 0xE0;
/// Device register for IDENTIFY and the register test: master, CHS bits unused.
const DEVICE_MASTER: u8 = 0xA0;
/// Device control: nIEN, the drive keeps INTRQ (IRQ 14) deasserted.
const CONTROL_NIEN: u8 = 0x02;
/// Device control: SRST, software reset of both drives on the bus.
const CONTROL_SRST: u8 = 0x04;

// --- Commands ------------------------------------------------------------------------

const CMD_READ_SECTORS: u8 = 0x20;
const CMD_WRITE_SECTORS: u8 = 0x30;
const CMD_IDENTIFY_DEVICE: u8 = 0xEC;
const CMD_FLUSH_CACHE: u8 = 0xE7;

// --- Sizes ------------------------------------------------------------------------------

/// Bytes per sector (the only size ATA PIO commands transfer on these drives).
pub const SECTOR_SIZE: usize = 512;
/// 16-bit words per sector, the unit of the data port.
const WORDS_PER_SECTOR: usize = SECTOR_SIZE / 2;
/// Bytes per page, the unit of swap.
pub const PAGE_SIZE: usize = 4096;
/// Sectors per page.
pub const SECTORS_PER_PAGE: u32 = (PAGE_SIZE / SECTOR_SIZE) as u32;
/// At most this many sectors per command: the count register is 8 bits and 0 would mean
/// 256, a special case better avoided.
pub const MAX_SECTORS_PER_COMMAND: usize = 255;
/// LBA28: the highest address + 1 a 28-bit LBA command can reach.
const LBA28_LIMIT: u32 = 1 << 28;

// --- IDENTIFY DEVICE words ---------------------------------------------------------------

/// Word 0 bit 15: set for an ATAPI device (which should have aborted IDENTIFY DEVICE).
const ID_GENERAL_NOT_ATA: u16 = 1 << 15;
/// Words 27-46: model number, 40 ASCII characters, two per word, high byte first.
const ID_MODEL: usize = 27;
const MODEL_LEN: usize = 40;
/// Word 49 bit 9: LBA supported.
const ID_CAPABILITIES: usize = 49;
const ID_CAPABILITY_LBA: u16 = 1 << 9;
/// Words 60-61: number of sectors addressable with LBA28 (low word first).
const ID_LBA28_SECTORS: usize = 60;

// --- Time ------------------------------------------------------------------------------
//
// There is no calibrated clock here, so time is counted in polls. One poll is a status
// read plus a write to DELAY_PORT: at least POLL_INTERVAL_US on PC hardware (an ISA I/O
// cycle is about 1 us; a status read adds more). An emulator runs polls faster: QEMU 7.2
// under TCG took about 0.2-0.25 us per poll (measured), so a 30 s timeout lasts about
// 6-8 s there, still far more than any command takes (a page moves in under 1 ms, a
// FLUSH CACHE, i.e. an fdatasync of the image, in a few ms). Under KVM every port access
// exits to the host and polls are slower than on hardware, so timeouts are longer.

/// The minimum duration of one poll, by the assumption above.
const POLL_INTERVAL_US: u32 = 1;
/// After a reset, a drive may take up to 31 s to clear BSY (ATA/ATAPI-6, 9.1: spin-up).
const RESET_TIMEOUT_US: u32 = 31_000_000;
/// A command (IDENTIFY, READ, WRITE, FLUSH CACHE): 30 s, the default command timeout of
/// Linux's SCSI disk driver, which ATA disks run under in libata.
const COMMAND_TIMEOUT_US: u32 = 30_000_000;
/// SRST must stay set at least 5 us (ATA/ATAPI-6, 9.2).
const SRST_HOLD_US: u32 = 5;
/// After SRST is cleared the host waits at least 2 ms before it reads the status.
const AFTER_RESET_US: u32 = 2_000;
/// After a write to the device register the status is valid 400 ns later: four reads of
/// the alternate status (each at least 100 ns) are the usual way to wait that long.
const SELECT_DELAY_READS: u32 = 4;

/// The number of polls that make up `timeout_us`.
const fn polls(timeout_us: u32) -> u32 {
    timeout_us / POLL_INTERVAL_US
}

// --- Status and error registers -----------------------------------------------------------

/// The status register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Status(pub u8);

impl Status {
    /// ERR: the last command failed; the error register says why.
    pub const ERR: u8 = 0x01;
    /// DRQ: the drive wants to transfer a sector through the data port.
    pub const DRQ: u8 = 0x08;
    /// DF: device fault (not reported through ERR).
    pub const DF: u8 = 0x20;
    /// DRDY: the drive accepts commands.
    pub const DRDY: u8 = 0x40;
    /// BSY: the drive owns the registers; every other bit is meaningless while set.
    pub const BSY: u8 = 0x80;
    /// What an undriven bus reads as (pulled-up lines).
    const FLOATING: Status = Status(0xFF);
    /// Bit names, lowest bit first.
    const NAMES: [&'static str; 8] = ["ERR", "IDX", "CORR", "DRQ", "DSC", "DF", "DRDY", "BSY"];

    fn has(self, bits: u8) -> bool {
        self.0 & bits != 0
    }

    /// BSY clear and ERR or DF set: the command failed.
    fn failed(self) -> bool {
        !self.has(Self::BSY) && self.has(Self::ERR | Self::DF)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)?;
        write_bit_names(f, self.0, &Self::NAMES)
    }
}

/// The error register, valid when the status has ERR set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ErrorReg(pub u8);

impl ErrorReg {
    /// AMNF: address mark not found.
    pub const AMNF: u8 = 0x01;
    /// TK0NF: track 0 not found.
    pub const TK0NF: u8 = 0x02;
    /// ABRT: command aborted (unsupported command or parameter, or a failure the drive
    /// does not detail).
    pub const ABRT: u8 = 0x04;
    /// MCR: media change requested.
    pub const MCR: u8 = 0x08;
    /// IDNF: the address was not found (beyond the end of the disk).
    pub const IDNF: u8 = 0x10;
    /// MC: media changed.
    pub const MC: u8 = 0x20;
    /// UNC: uncorrectable data error (a bad sector).
    pub const UNC: u8 = 0x40;
    /// BBK/ICRC: bad block mark, or an interface CRC error.
    pub const BBK: u8 = 0x80;
    const NAMES: [&'static str; 8] = ["AMNF", "TK0NF", "ABRT", "MCR", "IDNF", "MC", "UNC", "BBK"];

    /// The command was aborted.
    pub fn aborted(self) -> bool {
        self.0 & Self::ABRT != 0
    }

    /// A sector could not be read (bad sector).
    pub fn uncorrectable(self) -> bool {
        self.0 & Self::UNC != 0
    }

    /// The address does not exist on the drive.
    pub fn id_not_found(self) -> bool {
        self.0 & Self::IDNF != 0
    }
}

impl fmt::Display for ErrorReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)?;
        write_bit_names(f, self.0, &Self::NAMES)
    }
}

/// Writes " (NAME NAME ...)" for the set bits of `value`, nothing when none is set.
fn write_bit_names(f: &mut fmt::Formatter<'_>, value: u8, names: &[&str; 8]) -> fmt::Result {
    let mut first = true;
    for (bit, name) in names.iter().enumerate() {
        if value & (1 << bit) != 0 {
            f.write_str(if first { " (" } else { " " })?;
            f.write_str(name)?;
            first = false;
        }
    }
    if !first {
        f.write_str(")")?;
    }
    Ok(())
}

// --- Errors ------------------------------------------------------------------------------

/// What a wait was waiting for when it timed out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// BSY to clear after a software reset.
    Reset,
    /// BSY clear and DRDY set, before a command is written.
    Ready,
    /// DRQ: the drive to offer or accept a sector.
    Data,
    /// BSY to clear at the end of a command.
    Completion,
}

/// Why an ATA operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AtaError {
    /// The status register reads 0xFF: nothing drives the bus (no IDE controller, or no
    /// drive at all on a bus with pull-ups).
    FloatingBus,
    /// The bus answers but no master drive does: its status reads 0, or its task-file
    /// registers do not keep what is written to them.
    NoDrive,
    /// A device that is not an ATA disk: `signature` is LBA mid/high after reset or a
    /// refused IDENTIFY (0x14/0xEB: ATAPI, e.g. a CD-ROM; 0x3C/0xC3: SATA bridge).
    NotAta { signature: (u8, u8) },
    /// The drive refused IDENTIFY DEVICE.
    Identify { status: Status, error: ErrorReg },
    /// The drive cannot address sectors by LBA (only CHS); not supported here.
    NoLba,
    /// The drive did not reach `phase` within its timeout; `status` is the last read.
    Timeout { phase: Phase, status: Status },
    /// A command ended with ERR or DF set: the drive's status and error registers.
    Device { status: Status, error: ErrorReg },
    /// BSY clear but DRQ not set where the protocol needs a sector transfer.
    Protocol { status: Status },
    /// A buffer that is empty or not a whole number of sectors.
    BadLength { len: usize },
    /// More sectors than one command moves ([`MAX_SECTORS_PER_COMMAND`]).
    TooManySectors { sectors: usize },
    /// `[lba, lba + sectors)` is not inside the disk (`disk_sectors` sectors).
    OutOfRange {
        lba: u32,
        sectors: u32,
        disk_sectors: u32,
    },
    /// [`selftest`]: what was read back differs from what was written.
    Mismatch { page: u32, offset: usize },
    /// [`selftest`]: its buffers are in use (a selftest re-entered).
    Busy,
}

impl fmt::Display for AtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AtaError::FloatingBus => f.write_str("no IDE controller or drive (floating bus)"),
            AtaError::NoDrive => f.write_str("no drive on the primary IDE master"),
            AtaError::NotAta {
                signature: (mid, high),
            } => {
                let kind = match (mid, high) {
                    (0x14, 0xEB) => "ATAPI (e.g. CD-ROM)",
                    (0x3C, 0xC3) => "SATA",
                    _ => "unknown",
                };
                write!(
                    f,
                    "not an ATA disk: {kind} signature {mid:#04x}/{high:#04x}"
                )
            }
            AtaError::Identify { status, error } => {
                write!(f, "IDENTIFY DEVICE refused: status {status}, error {error}")
            }
            AtaError::NoLba => f.write_str("the drive does not support LBA addressing"),
            AtaError::Timeout { phase, status } => {
                write!(f, "timeout waiting for {phase:?}: status {status}")
            }
            AtaError::Device { status, error } => {
                write!(f, "drive error: status {status}, error {error}")
            }
            AtaError::Protocol { status } => {
                write!(
                    f,
                    "drive not requesting data when expected: status {status}"
                )
            }
            AtaError::BadLength { len } => {
                write!(
                    f,
                    "buffer of {len} bytes is not a non-zero multiple of {SECTOR_SIZE}"
                )
            }
            AtaError::TooManySectors { sectors } => write!(
                f,
                "{sectors} sectors in one command (at most {MAX_SECTORS_PER_COMMAND})"
            ),
            AtaError::OutOfRange {
                lba,
                sectors,
                disk_sectors,
            } => write!(
                f,
                "sectors {lba}+{sectors} beyond the disk ({disk_sectors} sectors)"
            ),
            AtaError::Mismatch { page, offset } => {
                write!(f, "selftest: page {page} reads back wrong at byte {offset}")
            }
            AtaError::Busy => f.write_str("selftest already running"),
        }
    }
}

// --- Port access -------------------------------------------------------------------------

/// Reads a task-file register of the primary bus.
fn read_reg(port: u16) -> u8 {
    // SAFETY: the primary IDE ports belong to this driver and the caller serialises its
    // use; reading a register (even the status, which acknowledges INTRQ) cannot touch
    // memory, since the drive only moves data through the data port (PIO).
    unsafe { inb(port) }
}

/// Writes a task-file or control register of the primary bus.
fn write_reg(port: u16, value: u8) {
    // SAFETY: as in `read_reg`: register writes start PIO commands at most, and PIO
    // never lets the drive write memory.
    unsafe { outb(port, value) }
}

/// Reads the status register (acknowledges INTRQ, harmless with nIEN set).
fn status() -> Status {
    Status(read_reg(STATUS_COMMAND))
}

/// Reads the alternate status (no side effect on the drive).
fn alt_status() -> Status {
    Status(read_reg(ALT_STATUS_CONTROL))
}

/// Waits about `us` microseconds (one DELAY_PORT write each; shorter under emulation).
fn delay_us(us: u32) {
    for _ in 0..us {
        // SAFETY: the POST-code port ignores what is written; only the bus cycle's time
        // is wanted.
        unsafe { outb(DELAY_PORT, 0) };
    }
}

/// The 400 ns the status needs to become valid after a drive select or a command.
fn settle() {
    for _ in 0..SELECT_DELAY_READS {
        alt_status();
    }
}

/// Polls the status until `done(status)` has an answer, for at most `polls(timeout_us)`
/// iterations, then gives up with [`AtaError::Timeout`] naming `phase`.
fn poll<T>(
    phase: Phase,
    timeout_us: u32,
    done: impl Fn(Status) -> Option<Result<T, AtaError>>,
) -> Result<T, AtaError> {
    let mut last = Status(0);
    for _ in 0..polls(timeout_us) {
        last = status();
        if let Some(answer) = done(last) {
            return answer;
        }
        delay_us(POLL_INTERVAL_US);
    }
    Err(AtaError::Timeout {
        phase,
        status: last,
    })
}

/// Waits until the drive accepts a command (BSY clear, DRDY set). ERR and DF are not
/// looked at: they describe the previous command and the next one clears them.
fn wait_ready() -> Result<(), AtaError> {
    poll(Phase::Ready, COMMAND_TIMEOUT_US, |s| {
        (!s.has(Status::BSY) && s.has(Status::DRDY)).then_some(Ok(()))
    })
}

/// Waits, after a command or a sector transfer, for BSY to clear; returns that status,
/// or [`AtaError::Device`] with the error register when the drive set ERR or DF.
fn wait_not_busy(phase: Phase) -> Result<Status, AtaError> {
    poll(phase, COMMAND_TIMEOUT_US, |s| {
        if s.has(Status::BSY) {
            None
        } else if s.failed() {
            Some(Err(AtaError::Device {
                status: s,
                error: ErrorReg(read_reg(ERROR)),
            }))
        } else {
            Some(Ok(s))
        }
    })
}

/// Waits for BSY clear then DRQ, the drive's offer (read) or request (write) of a sector.
/// BSY clear without DRQ (and without ERR) is a protocol error, not something to wait on.
fn wait_data() -> Result<(), AtaError> {
    let status = wait_not_busy(Phase::Data)?;
    if status.has(Status::DRQ) {
        Ok(())
    } else {
        Err(AtaError::Protocol { status })
    }
}

/// Waits for the end of a command: BSY clear, no error, and no DRQ (all data moved).
fn wait_completion() -> Result<(), AtaError> {
    let status = wait_not_busy(Phase::Completion)?;
    if status.has(Status::DRQ) {
        Err(AtaError::Protocol { status })
    } else {
        Ok(())
    }
}

/// Reads one sector from the data port into `sector` (little-endian words).
fn read_data(sector: &mut [u8]) {
    for word in sector.chunks_exact_mut(2) {
        // SAFETY: the drive offers a sector (DRQ set); see `read_reg` for why PIO is safe.
        let value = unsafe { inw(DATA) };
        word.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes one sector from `sector` to the data port.
fn write_data(sector: &[u8]) {
    for word in sector.chunks_exact(2) {
        // SAFETY: the drive requests a sector (DRQ set); see `read_reg`.
        unsafe { outw(DATA, u16::from_le_bytes([word[0], word[1]])) };
    }
}

// --- Probe -----------------------------------------------------------------------------

/// Software reset of the primary bus, leaving nIEN set: IRQ 14 never fires afterwards.
fn reset() -> Result<(), AtaError> {
    write_reg(ALT_STATUS_CONTROL, CONTROL_SRST | CONTROL_NIEN);
    delay_us(SRST_HOLD_US);
    write_reg(ALT_STATUS_CONTROL, CONTROL_NIEN);
    delay_us(AFTER_RESET_US);
    write_reg(DEVICE, DEVICE_MASTER);
    settle();
    // Only BSY matters: a drive reports a failed self-test in the error register, and
    // IDENTIFY will fail on a drive that is really broken.
    poll(Phase::Reset, RESET_TIMEOUT_US, |s| {
        (!s.has(Status::BSY)).then_some(Ok(()))
    })
}

/// Whether the master's task-file registers keep values written to them: a bus with no
/// master answers reads with 0 (QEMU) or with whatever the slave says.
fn registers_respond() -> bool {
    const PATTERN: (u8, u8) = (0x55, 0xAA);
    write_reg(DEVICE, DEVICE_MASTER);
    settle();
    write_reg(SECTOR_COUNT, PATTERN.0);
    write_reg(LBA_LOW, PATTERN.1);
    (read_reg(SECTOR_COUNT), read_reg(LBA_LOW)) == PATTERN
}

/// The LBA mid/high signature bytes (0/0 for an ATA disk).
fn signature() -> (u8, u8) {
    (read_reg(LBA_MID), read_reg(LBA_HIGH))
}

/// The signature of an ATA disk (ATAPI is 0x14/0xEB, SATA 0x3C/0xC3).
const ATA_SIGNATURE: (u8, u8) = (0, 0);
/// What the signature registers read when no device drives them (QEMU: a missing master
/// behind a present slave).
const NO_SIGNATURE: (u8, u8) = (0xFF, 0xFF);

/// Finds the master drive of the primary IDE bus: resets the bus (leaving interrupts
/// off), checks it is an ATA disk with LBA, and identifies it.
pub fn probe() -> Result<AtaDisk, AtaError> {
    if status() == Status::FLOATING {
        return Err(AtaError::FloatingBus);
    }
    if !registers_respond() {
        return Err(AtaError::NoDrive);
    }
    reset()?;
    match signature() {
        ATA_SIGNATURE => {}
        NO_SIGNATURE => return Err(AtaError::NoDrive),
        sig => return Err(AtaError::NotAta { signature: sig }),
    }
    // After a reset an ATA disk sets DRDY (a packet device does not, hence the signature
    // check first); a status of 0 means no disk answers.
    if status() == Status(0) {
        return Err(AtaError::NoDrive);
    }

    write_reg(DEVICE, DEVICE_MASTER);
    settle();
    wait_ready()?;
    write_reg(ERROR, 0);
    write_reg(SECTOR_COUNT, 0);
    write_reg(LBA_LOW, 0);
    write_reg(LBA_MID, 0);
    write_reg(LBA_HIGH, 0);
    write_reg(STATUS_COMMAND, CMD_IDENTIFY_DEVICE);
    settle();
    if status() == Status(0) {
        return Err(AtaError::NoDrive);
    }
    let result = wait_data();
    // A packet device aborts IDENTIFY DEVICE and puts its signature back.
    let sig = signature();
    if sig != ATA_SIGNATURE {
        return Err(AtaError::NotAta { signature: sig });
    }
    match result {
        Ok(()) => {}
        Err(AtaError::Device { status, error }) => {
            return Err(AtaError::Identify { status, error })
        }
        Err(e) => return Err(e),
    }
    let mut words = [0u16; WORDS_PER_SECTOR];
    for word in words.iter_mut() {
        // SAFETY: DRQ is set for the IDENTIFY data; see `read_reg` for why PIO is safe.
        *word = unsafe { inw(DATA) };
    }
    // The drive drops DRQ once the block is read; an error here is reported, not ignored.
    wait_completion()?;

    if words[0] & ID_GENERAL_NOT_ATA != 0 {
        return Err(AtaError::NotAta { signature: sig });
    }
    if words[ID_CAPABILITIES] & ID_CAPABILITY_LBA == 0 {
        return Err(AtaError::NoLba);
    }
    let sectors = u32::from(words[ID_LBA28_SECTORS]) | u32::from(words[ID_LBA28_SECTORS + 1]) << 16;
    let mut model = [0u8; MODEL_LEN];
    for (pair, word) in model
        .chunks_exact_mut(2)
        .zip(&words[ID_MODEL..ID_MODEL + MODEL_LEN / 2])
    {
        // ATA strings put the first character in the high byte.
        pair.copy_from_slice(&word.to_be_bytes());
    }
    Ok(AtaDisk {
        sectors: sectors.min(LBA28_LIMIT - 1),
        model,
    })
}

// --- The disk ----------------------------------------------------------------------------

/// The primary master, as [`probe`] found it. Not `Clone`: one handle per drive.
#[derive(Debug)]
pub struct AtaDisk {
    /// Sectors addressable by LBA28 (IDENTIFY words 60-61).
    sectors: u32,
    /// Model number as the drive reports it, space-padded ASCII.
    model: [u8; MODEL_LEN],
}

/// Which way a transfer goes.
enum Transfer<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl AtaDisk {
    /// The disk's size in sectors.
    pub fn sectors(&self) -> u32 {
        self.sectors
    }

    /// The disk's size in whole pages.
    pub fn pages(&self) -> u32 {
        self.sectors / SECTORS_PER_PAGE
    }

    /// The model number with its padding removed ("QEMU HARDDISK" under QEMU); `"?"` if
    /// the drive reported bytes that are not UTF-8.
    pub fn model(&self) -> &str {
        core::str::from_utf8(&self.model)
            .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0'))
            .unwrap_or("?")
    }

    /// Reads `buf.len() / 512` sectors from `lba` on (at most 255).
    pub fn read_sectors(&self, lba: u32, buf: &mut [u8]) -> Result<(), AtaError> {
        self.transfer(lba, Transfer::Read(buf))
    }

    /// Writes `buf.len() / 512` sectors from `lba` on (at most 255). The drive may keep
    /// them in its write cache: [`AtaDisk::flush`] makes them durable.
    pub fn write_sectors(&self, lba: u32, buf: &[u8]) -> Result<(), AtaError> {
        self.transfer(lba, Transfer::Write(buf))
    }

    /// Reads page `page` (sectors `8 * page ..`) into `buf`.
    pub fn read_page(&self, page: u32, buf: &mut [u8; PAGE_SIZE]) -> Result<(), AtaError> {
        self.read_sectors(self.page_lba(page)?, buf)
    }

    /// Writes `buf` to page `page` (sectors `8 * page ..`).
    pub fn write_page(&self, page: u32, buf: &[u8; PAGE_SIZE]) -> Result<(), AtaError> {
        self.write_sectors(self.page_lba(page)?, buf)
    }

    /// FLUSH CACHE: returns once the drive's write cache is on the medium.
    pub fn flush(&self) -> Result<(), AtaError> {
        wait_ready()?;
        write_reg(DEVICE, DEVICE_LBA_MASTER);
        settle();
        wait_ready()?;
        write_reg(STATUS_COMMAND, CMD_FLUSH_CACHE);
        settle();
        wait_completion()
    }

    /// The first sector of `page`, or `OutOfRange` when the page is not on the disk.
    fn page_lba(&self, page: u32) -> Result<u32, AtaError> {
        let out_of_range = AtaError::OutOfRange {
            lba: page.saturating_mul(SECTORS_PER_PAGE),
            sectors: SECTORS_PER_PAGE,
            disk_sectors: self.sectors,
        };
        page.checked_mul(SECTORS_PER_PAGE).ok_or(out_of_range)
    }

    /// Checks a request: whole sectors, at most one command's worth, inside the disk.
    /// Returns the sector count.
    fn check(&self, lba: u32, len: usize) -> Result<u8, AtaError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(AtaError::BadLength { len });
        }
        let sectors = len / SECTOR_SIZE;
        let Ok(count) = u8::try_from(sectors) else {
            return Err(AtaError::TooManySectors { sectors });
        };
        if u64::from(lba) + sectors as u64 > u64::from(self.sectors) {
            return Err(AtaError::OutOfRange {
                lba,
                sectors: sectors as u32,
                disk_sectors: self.sectors,
            });
        }
        Ok(count)
    }

    /// One READ SECTORS or WRITE SECTORS command, sector by sector through the data port.
    fn transfer(&self, lba: u32, transfer: Transfer<'_>) -> Result<(), AtaError> {
        let len = match &transfer {
            Transfer::Read(buf) => buf.len(),
            Transfer::Write(buf) => buf.len(),
        };
        let count = self.check(lba, len)?;
        let [lba0, lba1, lba2, lba3] = lba.to_le_bytes();

        // A drive still busy from an earlier (timed-out) command must finish first.
        wait_ready()?;
        // `check` kept lba + count inside the disk, below 2^28: lba3 fits in 4 bits.
        write_reg(DEVICE, DEVICE_LBA_MASTER | (lba3 & 0x0F));
        settle();
        wait_ready()?;
        write_reg(SECTOR_COUNT, count);
        write_reg(LBA_LOW, lba0);
        write_reg(LBA_MID, lba1);
        write_reg(LBA_HIGH, lba2);
        match transfer {
            Transfer::Read(buf) => {
                write_reg(STATUS_COMMAND, CMD_READ_SECTORS);
                for sector in buf.chunks_exact_mut(SECTOR_SIZE) {
                    settle();
                    wait_data()?;
                    read_data(sector);
                }
            }
            Transfer::Write(buf) => {
                write_reg(STATUS_COMMAND, CMD_WRITE_SECTORS);
                for sector in buf.chunks_exact(SECTOR_SIZE) {
                    settle();
                    wait_data()?;
                    write_data(sector);
                }
            }
        }
        // After the last sector: BSY clears, DRQ must be off and ERR/DF clear.
        settle();
        wait_completion()
    }
}

// --- Self-test ------------------------------------------------------------------------

/// The pages the self-test uses: the last two of the disk (swap uses page 0 as header
/// and the rest as slots, so a live swap device must not be tested).
const SELFTEST_PAGES: u32 = 2;

/// The self-test's buffers, static so the test needs no 8 KiB of stack (a task's kernel
/// stack shares one page with its task structure).
struct SelftestBuffers {
    saved: [u8; PAGE_SIZE],
    work: [u8; PAGE_SIZE],
}

static SELFTEST_BUFFERS: spin::Mutex<SelftestBuffers> = spin::Mutex::new(SelftestBuffers {
    saved: [0; PAGE_SIZE],
    work: [0; PAGE_SIZE],
});

/// The test pattern's byte at `offset` of `page`, pass `pass`: differs between pages,
/// sectors and passes, so a misplaced sector or a stale read shows up.
fn pattern(page: u32, offset: usize, pass: u8) -> u8 {
    let x = (page.wrapping_mul(0x9E37_79B9) ^ (offset as u32).wrapping_mul(0x85EB_CA6B)) >> 13;
    (x as u8) ^ if pass == 0 { 0 } else { 0xFF }
}

/// Writes a pattern and its complement to each of the last two pages, reads each back
/// through an 8-sector command, compares, restores the page's old content and flushes.
/// One of the two passes always differs from what the page held, so an ignored write
/// cannot pass.
///
/// Destroys nothing if it succeeds; after a failed write or read the old content is
/// still written back (best effort), and the first error is returned.
pub fn selftest(disk: &AtaDisk) -> Result<(), AtaError> {
    let Some(mut buffers) = SELFTEST_BUFFERS.try_lock() else {
        return Err(AtaError::Busy);
    };
    let SelftestBuffers { saved, work } = &mut *buffers;
    let pages = disk.pages();
    if pages < SELFTEST_PAGES {
        return Err(AtaError::OutOfRange {
            lba: 0,
            sectors: SELFTEST_PAGES * SECTORS_PER_PAGE,
            disk_sectors: disk.sectors(),
        });
    }
    for page in pages - SELFTEST_PAGES..pages {
        disk.read_page(page, saved)?;
        let result = selftest_page(disk, page, work);
        let restored = disk.write_page(page, saved).and_then(|()| {
            disk.read_page(page, work)?;
            match saved.iter().zip(work.iter()).position(|(a, b)| a != b) {
                Some(offset) => Err(AtaError::Mismatch { page, offset }),
                None => Ok(()),
            }
        });
        result?;
        restored?;
    }
    disk.flush()
}

/// Both passes of the pattern on one page.
fn selftest_page(disk: &AtaDisk, page: u32, work: &mut [u8; PAGE_SIZE]) -> Result<(), AtaError> {
    for pass in 0..2 {
        for (offset, byte) in work.iter_mut().enumerate() {
            *byte = pattern(page, offset, pass);
        }
        disk.write_page(page, work)?;
        work.fill(0);
        disk.read_page(page, work)?;
        if let Some(offset) = (0..PAGE_SIZE).find(|&o| work[o] != pattern(page, o, pass)) {
            return Err(AtaError::Mismatch { page, offset });
        }
    }
    Ok(())
}
