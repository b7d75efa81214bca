//! A serde `Serializer` that writes compact JSON into any `core::fmt::Write`, with no
//! allocation: how the kernel answers `monitor ... --json` straight into the gdb stub's
//! `O`-packet writer.
//!
//! Written here because neither common crate fits a `no_std` kernel without a heap:
//! `serde_json` needs `alloc`, and `serde-json-core` 0.7 serialises only into a byte slice
//! (the whole document would have to fit one buffer on the stub's 64 KiB stack, and the
//! larger documents, `dumppt` of a full table or `faults`, do not). This one streams: each
//! token goes to the sink as it is produced, so the stack holds one list item at a time.
//!
//! What it writes is what `serde_json::to_string` writes for the same value (compact, keys
//! in field order, strings escaped the same way), which the tests check. Floats are
//! refused (no document has one), and map keys must serialise as strings.

use core::fmt::{self, Display, Write};

use serde::ser::{self, Serialize};

/// Why serialising stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The sink refused output (the stub's packet writer failed).
    Write,
    /// A value JSON cannot carry here (a float, a non-string map key).
    Unsupported(&'static str),
    /// A `Serialize` implementation's own error.
    Custom,
}

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Write => f.write_str("the output refused the document"),
            Error::Unsupported(what) => write!(f, "JSON cannot carry {what} here"),
            Error::Custom => f.write_str("a value refused to serialise"),
        }
    }
}

impl From<fmt::Error> for Error {
    fn from(_: fmt::Error) -> Error {
        Error::Write
    }
}

impl ser::StdError for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(_msg: T) -> Error {
        Error::Custom
    }
}

/// Writes `value` as one compact JSON document into `out`.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut dyn Write) -> Result<(), Error> {
    value.serialize(&mut Serializer { out })
}

/// The streaming serializer (see the module documentation).
pub struct Serializer<'w> {
    out: &'w mut dyn Write,
}

impl<'w> Serializer<'w> {
    pub fn new(out: &'w mut dyn Write) -> Serializer<'w> {
        Serializer { out }
    }
}

/// A `fmt::Write` that escapes what goes through it for the inside of a JSON string, as
/// `serde_json` does (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other controls `\u00XX`).
struct Escaping<'a>(&'a mut dyn Write);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of plain characters go out in one piece; only the specials are split.
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escaped = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '\u{8}' => "\\b",
                '\u{c}' => "\\f",
                c if (c as u32) < 0x20 => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

impl Serializer<'_> {
    fn string(&mut self, value: &dyn Display) -> Result<(), Error> {
        self.out.write_char('"')?;
        write!(Escaping(self.out), "{value}")?;
        self.out.write_char('"')?;
        Ok(())
    }
}

/// An open array, object or struct: writes the commas.
pub struct Compound<'a, 'w> {
    ser: &'a mut Serializer<'w>,
    first: bool,
    /// The closing bracket(s): `]`, `}`, or `}}` for a variant wrapped in an object.
    close: &'static str,
}

impl Compound<'_, '_> {
    fn separate(&mut self) -> Result<(), Error> {
        if !self.first {
            self.ser.out.write_char(',')?;
        }
        self.first = false;
        Ok(())
    }
    fn key(&mut self, key: &str) -> Result<(), Error> {
        self.separate()?;
        self.ser.string(&key)?;
        self.ser.out.write_char(':')?;
        Ok(())
    }
    fn finish(self) -> Result<(), Error> {
        self.ser.out.write_str(self.close)?;
        Ok(())
    }
}

impl<'a, 'w> ser::Serializer for &'a mut Serializer<'w> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'w>;
    type SerializeTuple = Compound<'a, 'w>;
    type SerializeTupleStruct = Compound<'a, 'w>;
    type SerializeTupleVariant = Compound<'a, 'w>;
    type SerializeMap = Compound<'a, 'w>;
    type SerializeStruct = Compound<'a, 'w>;
    type SerializeStructVariant = Compound<'a, 'w>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.write_str(if v { "true" } else { "false" })?;
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        write!(self.out, "{v}")?;
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        write!(self.out, "{v}")?;
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        write!(self.out, "{v}")?;
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        write!(self.out, "{v}")?;
        Ok(())
    }
    fn serialize_f32(self, _v: f32) -> Result<(), Error> {
        Err(Error::Unsupported("a float"))
    }
    fn serialize_f64(self, _v: f64) -> Result<(), Error> {
        Err(Error::Unsupported("a float"))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.string(&v)
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.string(&v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // As serde_json does: an array of numbers.
        let mut seq = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.write_str("null")?;
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.string(&variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.write_char('{')?;
        self.string(&variant)?;
        self.out.write_char(':')?;
        value.serialize(&mut *self)?;
        self.out.write_char('}')?;
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'w>, Error> {
        self.out.write_char('[')?;
        Ok(Compound {
            ser: self,
            first: true,
            close: "]",
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'w>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'w>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'w>, Error> {
        self.out.write_char('{')?;
        self.string(&variant)?;
        self.out.write_str(":[")?;
        Ok(Compound {
            ser: self,
            first: true,
            close: "]}",
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'w>, Error> {
        self.out.write_char('{')?;
        Ok(Compound {
            ser: self,
            first: true,
            close: "}",
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'w>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'w>, Error> {
        self.out.write_char('{')?;
        self.string(&variant)?;
        self.out.write_str(":{")?;
        Ok(Compound {
            ser: self,
            first: true,
            close: "}}",
        })
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.out.write_char('"')?;
        write!(Escaping(self.out), "{value}")?;
        self.out.write_char('"')?;
        Ok(())
    }
    fn is_human_readable(&self) -> bool {
        true
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.separate()?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.separate()?;
        key.serialize(MapKey(&mut *self.ser))?;
        self.ser.out.write_char(':')?;
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.key(key)?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// A map key: only strings (and what displays as one: unit variants, chars) are keys.
struct MapKey<'a, 'w>(&'a mut Serializer<'w>);

macro_rules! refuse {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<(), Error> {
            Err(Error::Unsupported("a map key that is not a string"))
        })*
    };
}

impl ser::Serializer for MapKey<'_, '_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.0.string(&v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.0.string(&v)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.0.string(&variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.0.string(&value)
    }
    // Integer keys become strings, as serde_json writes them.
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.0.string(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.0.string(&v)
    }
    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error::Unsupported("a map key that is not a string"))
    }
}
