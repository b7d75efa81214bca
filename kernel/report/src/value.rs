//! The field types the documents are made of: hex addresses, decoded flags, texts, lists
//! generated on demand, fixed-size names, and the `command`/`schema` tags.
//!
//! Each serialises the way `kernel/docs/monitor.md` documents (addresses as `"0x%08x"`
//! strings, flags as `Entry::describe` letters) without allocating. With the `std` feature
//! each also deserialises, so a host tool reads a monitor answer back into the same
//! struct; derived texts (flags, fault codes) parse back into the bits they came from, so
//! a document survives a round trip unchanged. With `schema`, each has a JSON Schema.

use core::fmt::{self, Debug, Display, Write};
use core::ops::ControlFlow;

use mm::entry::Entry;
#[cfg(feature = "std")]
use mm::entry::EntryFlags;
use serde::{Serialize, Serializer};

#[cfg(feature = "std")]
use serde::{de, Deserialize, Deserializer};
#[cfg(feature = "std")]
use std::{string::String, vec::Vec};

/// The version of every JSON document's layout (the `schema` field); bumped on any
/// incompatible change, so scripts and the inspector can refuse what they do not know.
pub const SCHEMA: u32 = 1;

// ---------------------------------------------------------------------------------------
// Numbers as hex strings
// ---------------------------------------------------------------------------------------

/// A 32-bit address or raw entry, as the string `"0x%08x"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hex(pub u32);

/// A bound that may be 2^32 (an exclusive range end), as `"0x%08x"` (`"0x100000000"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hex64(pub u64);

impl Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl Display for Hex64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Hex64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `0x` and hex digits, as the documents write numbers.
#[cfg(feature = "std")]
fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hex, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex(&text)
            .and_then(|v| u32::try_from(v).ok())
            .map(Hex)
            .ok_or_else(|| de::Error::custom(format_args!("'{text}' is not a 0x%08x value")))
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for Hex64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hex64, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex(&text)
            .filter(|&v| v <= 1 << 32)
            .map(Hex64)
            .ok_or_else(|| de::Error::custom(format_args!("'{text}' is not a bound up to 2^32")))
    }
}

// ---------------------------------------------------------------------------------------
// Decoded entry flags
// ---------------------------------------------------------------------------------------

/// The flag letters of an entry (`P RW US A D`, `not present`, `swap slot 42`): what
/// [`Entry::describe`] prints, for the bits it decodes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub Entry);

impl Flags {
    /// The decoded bits of `entry` (its frame is not part of the flags; a swap entry's
    /// slot is).
    pub fn of(entry: Entry) -> Flags {
        Flags(entry)
    }
}

impl Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({})", self.0.describe())
    }
}

impl Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.describe())
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.describe())
    }
}

/// The optional flags in the order `Entry::describe` prints them.
#[cfg(feature = "std")]
const OPTIONAL_FLAGS: [(&str, EntryFlags); 6] = [
    ("PWT", EntryFlags::WRITE_THROUGH),
    ("PCD", EntryFlags::CACHE_DISABLE),
    ("A", EntryFlags::ACCESSED),
    ("D", EntryFlags::DIRTY),
    ("PS", EntryFlags::HUGE),
    ("G", EntryFlags::GLOBAL),
];

/// The entry whose flags read `text` (the inverse of `Entry::describe` on flag bits).
#[cfg(feature = "std")]
pub fn parse_flags(text: &str) -> Option<Entry> {
    if text == "not present" {
        return Some(Entry::EMPTY);
    }
    if let Some(slot) = text.strip_prefix("swap slot ") {
        let slot: u32 = slot.parse().ok().filter(|&s| s > 0 && s < 1 << 31)?;
        return Some(Entry(slot << 1));
    }
    let mut words = text.split(' ');
    let mut flags = EntryFlags::PRESENT;
    if words.next()? != "P" {
        return None;
    }
    match words.next()? {
        "RW" => flags |= EntryFlags::WRITABLE,
        "RO" => {}
        _ => return None,
    }
    match words.next()? {
        "US" => flags |= EntryFlags::USER,
        "SV" => {}
        _ => return None,
    }
    let mut next = 0;
    for word in words {
        let at = OPTIONAL_FLAGS[next..]
            .iter()
            .position(|(w, _)| *w == word)?;
        flags |= OPTIONAL_FLAGS[next + at].1;
        next += at + 1;
    }
    Some(Entry(flags.bits()))
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flags, D::Error> {
        let text = String::deserialize(d)?;
        parse_flags(&text)
            .map(Flags)
            .ok_or_else(|| de::Error::custom(format_args!("'{text}' are not entry flags")))
    }
}

// ---------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------

/// A string field: borrowed or made by a `Display` in the kernel, owned after parsing.
#[derive(Clone)]
pub enum Text<'a> {
    Str(&'a str),
    Display(&'a dyn Display),
    #[cfg(feature = "std")]
    Owned(String),
}

impl Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Text::Str(s) => f.write_str(s),
            Text::Display(d) => write!(f, "{d}"),
            #[cfg(feature = "std")]
            Text::Owned(s) => f.write_str(s),
        }
    }
}

impl Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", DebugText(self))
    }
}

struct DebugText<'t, 'a>(&'t Text<'a>);

impl Debug for DebugText<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write!(f, "{}", self.0)?;
        f.write_char('"')
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Two texts are equal when they read the same (compared piece by piece, no buffer).
impl PartialEq for Text<'_> {
    fn eq(&self, other: &Text<'_>) -> bool {
        struct Compare<'s> {
            rest: &'s str,
            equal: bool,
        }
        impl Write for Compare<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                match self.rest.strip_prefix(s) {
                    Some(rest) => self.rest = rest,
                    None => self.equal = false,
                }
                Ok(())
            }
        }
        // Render `other` piece by piece against `self` when `self` is a plain string;
        // otherwise the other way round when that one is; two Displays compare through a
        // fixed buffer of the first.
        let (plain, made): (&str, &Text<'_>) = match (self, other) {
            (Text::Str(s), o) | (o, Text::Str(s)) => (s, o),
            #[cfg(feature = "std")]
            (Text::Owned(s), o) | (o, Text::Owned(s)) => (s.as_str(), o),
            (a, b) => {
                let mut buffer = crate::text::Buffer::<256>::new();
                if write!(buffer, "{a}").is_err() {
                    return false;
                }
                return Text::Str(buffer.as_str()) == *b;
            }
        };
        let mut c = Compare {
            rest: plain,
            equal: true,
        };
        let _ = write!(c, "{made}");
        c.equal && c.rest.is_empty()
    }
}

#[cfg(feature = "std")]
impl<'de, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        String::deserialize(d).map(Text::Owned)
    }
}

// ---------------------------------------------------------------------------------------
// Lists generated on demand
// ---------------------------------------------------------------------------------------

/// What a lazy list is made from: calls `f` with each item in order, until `f` breaks.
pub trait Source<T> {
    fn each(&self, f: &mut dyn FnMut(&T) -> ControlFlow<()>);
}

/// A list in a document: generated item by item when the document is written (in the
/// kernel: a directory's 1024 entries never sit on the stub's stack together), or, in a
/// parsed document, the items themselves.
pub enum Items<'a, T> {
    Lazy(&'a dyn Source<T>),
    #[cfg(feature = "std")]
    Owned(Vec<T>),
}

impl<T> Items<'_, T> {
    /// Calls `f` with each item, stopping at its first error.
    pub fn try_each(&self, f: &mut dyn FnMut(&T) -> fmt::Result) -> fmt::Result {
        let mut result = Ok(());
        self.for_each_until(&mut |item| match f(item) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                result = Err(e);
                ControlFlow::Break(())
            }
        });
        result
    }

    /// Calls `f` with each item until it breaks.
    pub fn for_each_until(&self, f: &mut dyn FnMut(&T) -> ControlFlow<()>) {
        match self {
            Items::Lazy(source) => source.each(f),
            #[cfg(feature = "std")]
            Items::Owned(items) => {
                for item in items {
                    if f(item).is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// How many items there are (generating them, for a lazy list).
    pub fn count(&self) -> usize {
        let mut n = 0;
        self.for_each_until(&mut |_| {
            n += 1;
            ControlFlow::Continue(())
        });
        n
    }
}

#[cfg(feature = "std")]
impl<T: Clone> Items<'_, T> {
    /// The items, collected.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::new();
        self.for_each_until(&mut |item| {
            v.push(item.clone());
            ControlFlow::Continue(())
        });
        v
    }
}

#[cfg(feature = "std")]
impl<T: Clone> Items<'_, T> {
    /// The same list with every item owned: a document that outlives its sources.
    pub fn owned<'b>(&self) -> Items<'b, T> {
        Items::Owned(self.to_vec())
    }
}

impl<T: Serialize> Serialize for Items<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        let mut error = None;
        self.for_each_until(&mut |item| match seq.serialize_element(item) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                error = Some(e);
                ControlFlow::Break(())
            }
        });
        match error {
            Some(e) => Err(e),
            None => seq.end(),
        }
    }
}

impl<T: Debug> Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        self.for_each_until(&mut |item| {
            list.entry(item);
            ControlFlow::Continue(())
        });
        list.finish()
    }
}

#[cfg(feature = "std")]
impl<T: Clone + PartialEq> PartialEq for Items<'_, T> {
    fn eq(&self, other: &Items<'_, T>) -> bool {
        self.to_vec() == other.to_vec()
    }
}

#[cfg(feature = "std")]
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<'_, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(Items::Owned)
    }
}

#[cfg(feature = "std")]
impl<T: Clone> Clone for Items<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Items::Lazy(source) => Items::Lazy(*source),
            Items::Owned(v) => Items::Owned(v.clone()),
        }
    }
}

/// A [`Source`] from a closure that feeds a callback.
pub struct FromFn<F>(pub F);

impl<T, F: Fn(&mut dyn FnMut(&T) -> ControlFlow<()>)> Source<T> for FromFn<F> {
    fn each(&self, f: &mut dyn FnMut(&T) -> ControlFlow<()>) {
        (self.0)(f)
    }
}

// ---------------------------------------------------------------------------------------
// A short name
// ---------------------------------------------------------------------------------------

/// The longest program name a task has (`abi::MAX_NAME_LEN`).
pub const NAME_LEN: usize = abi::MAX_NAME_LEN;

/// A program name in a fixed buffer (no heap): at most [`NAME_LEN`] bytes of UTF-8.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Name {
    bytes: [u8; NAME_LEN],
    len: u8,
}

impl Name {
    /// The name `text`, cut at [`NAME_LEN`] bytes (at a character boundary).
    pub fn new(text: &str) -> Name {
        let mut end = text.len().min(NAME_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; NAME_LEN];
        bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        Name {
            bytes,
            len: end as u8,
        }
    }
    pub fn as_str(&self) -> &str {
        // Only whole characters of a &str were copied in.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Debug::fmt(self.as_str(), f)
    }
}

impl Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() > NAME_LEN {
            return Err(de::Error::custom(format_args!(
                "program name '{text}' is longer than {NAME_LEN} bytes"
            )));
        }
        Ok(Name::new(&text))
    }
}

// ---------------------------------------------------------------------------------------
// The schema version
// ---------------------------------------------------------------------------------------

/// The `schema` field: always [`SCHEMA`]; parsing refuses any other version, so a reader
/// never takes a document it does not know for one it does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchemaVersion;

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA)
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SchemaVersion, D::Error> {
        let version = u32::deserialize(d)?;
        if version != SCHEMA {
            return Err(de::Error::custom(format_args!(
                "schema {version}: this reader knows schema {SCHEMA}"
            )));
        }
        Ok(SchemaVersion)
    }
}

/// Declares the `command` tag of one document: a unit type that serialises as the
/// command's name and refuses any other name when parsed.
macro_rules! command_tag {
    ($(#[$doc:meta])* $tag:ident = $name:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $tag;

        impl $tag {
            /// The command's name.
            pub const NAME: &'static str = $name;
        }

        impl serde::Serialize for $tag {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($name)
            }
        }

        #[cfg(feature = "std")]
        impl<'de> serde::Deserialize<'de> for $tag {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$tag, D::Error> {
                let text = std::string::String::deserialize(d)?;
                if text != $name {
                    return Err(serde::de::Error::custom(format_args!(
                        "command '{text}', expected '{}'",
                        $name
                    )));
                }
                Ok($tag)
            }
        }

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $tag {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                concat!(stringify!($tag)).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "const": $name })
            }
        }
    };
}
pub(crate) use command_tag;

// ---------------------------------------------------------------------------------------
// JSON Schemas of the field types
// ---------------------------------------------------------------------------------------

#[cfg(feature = "schema")]
mod schemas {
    use super::*;
    use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
    use std::borrow::Cow;

    macro_rules! inline_schema {
        ($ty:ty, $name:literal, $schema:tt) => {
            impl JsonSchema for $ty {
                fn schema_name() -> Cow<'static, str> {
                    $name.into()
                }
                fn inline_schema() -> bool {
                    true
                }
                fn json_schema(_: &mut SchemaGenerator) -> Schema {
                    json_schema!($schema)
                }
            }
        };
    }

    inline_schema!(Hex, "Hex", {
        "type": "string", "pattern": "^0x[0-9a-f]{8}$",
        "description": "a 32-bit address or raw entry, \"0x%08x\""
    });
    inline_schema!(Hex64, "Hex64", {
        "type": "string", "pattern": "^0x(?:[0-9a-f]{8}|100000000)$",
        "description": "a bound up to 2^32, \"0x%08x\" (\"0x100000000\" for 4 GiB)"
    });
    inline_schema!(Flags, "Flags", {
        "type": "string",
        "pattern": "^(?:not present|swap slot [1-9][0-9]*|P (?:RW|RO) (?:US|SV)(?: PWT)?(?: PCD)?(?: A)?(?: D)?(?: PS)?(?: G)?)$",
        "description": "the entry's flags as Entry::describe prints them"
    });
    inline_schema!(Text<'_>, "Text", { "type": "string" });
    inline_schema!(Name, "Name", { "type": "string", "maxLength": NAME_LEN });
    inline_schema!(SchemaVersion, "SchemaVersion", {
        "type": "integer", "const": SCHEMA,
        "description": "the layout version of the documents"
    });

    impl<T: JsonSchema> JsonSchema for Items<'_, T> {
        fn schema_name() -> Cow<'static, str> {
            Vec::<T>::schema_name()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            Vec::<T>::json_schema(generator)
        }
    }
}
