//! A JSON reader over borrowed text that knows where it is: the webhook body is read in one pass,
//! each event typed as it goes by, and each event's exact bytes are the stretch the reader crossed.
//!
//! The event model reads with its direct methods ([`Reader::object`], [`Reader::string_value`],
//! ...); it is also a [`serde::Deserializer`], for the derived payload types. Either way it has
//! serde_json's grammar (RFC 8259, UTF-8 only) and answers: integers as `u64`/`i64`, larger ones and fractions as `f64`, a number out of
//! `f64` range or a lone surrogate refused where a value is read; nesting past 128 refused where a
//! value is read, never where it is only crossed ([`Reader::skip`] has no depth limit).
//!
//! Speed comes from doing each thing once: strings without escapes are borrowed, eight bytes are
//! examined at a time for the end of a string or a run of spaces, and skipping builds nothing.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting a value may have where it is read into a type (as serde_json).
const MAX_DEPTH: u32 = 128;

/// Why text is not JSON (or not what a reader expected), and where: a byte offset, and the line
/// and column (1-based; the column in bytes) once [`Reader::locate`] has placed it (counting lines
/// costs a pass over the text before it, so only an error that is reported is placed).
///
/// The reader's own messages never quote the text. A type's own complaint (serde's `custom`, from
/// a derived type) can: `invalid type: string "...", expected ...`. Never log those at info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<Place>);

/// Boxed: errors are rare, and a small error keeps every reader's `Result` small.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    message: Box<str>,
    /// Byte offset; None for a type's own complaint (placed where the reader stands).
    offset: Option<usize>,
    line: usize,
    column: usize,
}

impl Error {
    fn new(message: Box<str>, offset: Option<usize>) -> Self {
        Error(Box::new(Place { message, offset, line: 0, column: 0 }))
    }

    /// What is wrong, without the place (see [`Error`] for when it can quote the text).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The line of the problem (1-based), or 0 when not placed.
    pub fn line(&self) -> usize {
        self.0.line
    }

    pub fn column(&self) -> usize {
        self.0.column
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0;
        if p.line == 0 {
            f.write_str(&p.message)
        } else {
            write!(f, "{} at line {} column {}", p.message, p.line, p.column)
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string().into_boxed_str(), None)
    }
}

/// Reads a whole text as `T`: one value, then only whitespace.
pub fn from_str<'a, T: de::Deserialize<'a>>(text: &'a str) -> Result<T, Error> {
    let mut r = Reader::new(text);
    let value = r.read::<T>()?;
    r.end().map_err(|e| r.locate(e))?;
    Ok(value)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const SPACES: u64 = ONES * b' ' as u64;

/// High bit set in each byte of `word` that ends a plain run of string text: `"`, `\` or a
/// control character. Only the lowest flagged byte is exact (a match can flag bytes above it).
fn string_specials(word: u64) -> u64 {
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (zero(quote) | zero(backslash) | control) & HIGH
}

/// The containers open around a value being crossed, innermost last (true: an object). The
/// first 64 levels are bits of a word, deeper ones on the heap: crossing usual JSON allocates
/// nothing.
#[derive(Default)]
struct Open {
    depth: u32,
    bits: u64,
    deeper: Vec<bool>,
}

impl Open {
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            self.bits = (self.bits & !(1 << self.depth)) | (u64::from(object) << self.depth);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
    }

    fn last(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d @ 1..=64 => Some(self.bits >> (d - 1) & 1 == 1),
            _ => self.deeper.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.depth > 64 {
            self.deeper.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

/// A cursor over JSON text.
pub struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Reader { text, bytes: text.as_bytes(), pos: 0, depth: 0 }
    }

    /// The byte offset reached.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves back to an offset seen before (to cross a value again after a type refused it).
    pub fn rewind(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The text between two offsets this reader has been at.
    pub fn slice(&self, from: usize, to: usize) -> &'a str {
        self.text.get(from..to).unwrap_or_default()
    }

    /// The next value read as `T`, with any error placed.
    pub fn read<T: de::Deserialize<'a>>(&mut self) -> Result<T, Error> {
        T::deserialize(&mut *self).map_err(|e| self.locate(e))
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.peek_past_ws() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// Places an error: line and column of its offset (or of where the reader stands).
    pub fn locate(&self, mut e: Error) -> Error {
        let p = &mut *e.0;
        let at = p.offset.unwrap_or(self.pos).min(self.bytes.len());
        let before = self.bytes.get(..at).unwrap_or(self.bytes);
        p.line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        p.column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
        p.offset = Some(at);
        e
    }

    /// An error at the reader's position (not yet placed: see [`Reader::locate`]).
    #[cold]
    #[inline(never)]
    pub fn error(&self, message: &str) -> Error {
        Error::new(message.into(), Some(self.pos))
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn word(&self, at: usize) -> Option<u64> {
        let chunk = self.bytes.get(at..at.checked_add(8)?)?;
        Some(u64::from_le_bytes(chunk.try_into().ok()?))
    }

    /// Skips whitespace and returns the next byte.
    #[inline(always)]
    pub fn peek_past_ws(&mut self) -> Option<u8> {
        match self.peek() {
            Some(b) if b > b' ' => Some(b),
            _ => self.past_ws(),
        }
    }

    /// Skips whitespace, runs of spaces eight at a time.
    fn past_ws(&mut self) -> Option<u8> {
        loop {
            if let Some(word) = self.word(self.pos) {
                let spaces = ((word ^ SPACES).trailing_zeros() / 8) as usize;
                self.pos += spaces;
                if spaces == 8 {
                    continue;
                }
            }
            match self.peek() {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.pos += 1,
                other => return other,
            }
        }
    }

    /// Consumes `byte` after whitespace, or says what was expected.
    #[inline(always)]
    pub fn expect(&mut self, byte: u8, expected: &str) -> Result<(), Error> {
        match self.peek_past_ws() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.error(expected)),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// Moves past plain string text to the next `"`, `\` or control character and returns it.
    fn plain_run(&mut self) -> Option<u8> {
        loop {
            if let Some(word) = self.word(self.pos) {
                let specials = string_specials(word);
                if specials == 0 {
                    self.pos += 8;
                    continue;
                }
                self.pos += (specials.trailing_zeros() / 8) as usize;
                return self.peek();
            }
            match self.peek() {
                Some(b'"' | b'\\' | 0..0x20) | None => return self.peek(),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A string's contents; the reader is just past its opening quote. Borrowed when it has no
    /// escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        match self.plain_end() {
            Some(end) => {
                let text = self.slice(self.pos, end);
                self.pos = end + 1;
                Ok(Cow::Borrowed(text))
            }
            None => self.scan_string(true),
        }
    }

    /// Crosses a string; the reader is just past its opening quote. Escapes are checked for form
    /// only (as a reader that keeps no text can).
    #[inline]
    fn skip_string(&mut self) -> Result<(), Error> {
        match self.plain_end() {
            Some(end) => {
                self.pos = end + 1;
                Ok(())
            }
            None => self.scan_string(false).map(drop),
        }
    }

    /// The usual string, the fast way: where it ends (its closing quote) when it has no escape and
    /// is followed by at least a few bytes; None sends it the general way, [`Reader::scan_string`].
    /// (An answer in registers: the caller builds the borrowed text itself.)
    #[inline]
    fn plain_end(&self) -> Option<usize> {
        let mut pos = self.pos;
        while let Some(word) = self.word(pos) {
            let specials = string_specials(word);
            if specials == 0 {
                pos += 8;
                continue;
            }
            let end = pos + (specials.trailing_zeros() / 8) as usize;
            return (self.bytes.get(end) == Some(&b'"')).then_some(end);
        }
        None
    }

    /// A string to its closing quote, its escapes decoded when `decode` (else its text as written).
    fn scan_string(&mut self, decode: bool) -> Result<Cow<'a, str>, Error> {
        let mut owned: Option<String> = None;
        let mut run = self.pos;
        loop {
            match self.plain_run() {
                Some(b'"') => {
                    let text = self.slice(run, self.pos);
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(text),
                        Some(mut s) => {
                            s.push_str(text);
                            Cow::Owned(s)
                        }
                    });
                }
                Some(b'\\') => {
                    let before = self.pos;
                    self.pos += 1;
                    let c = self.escape(decode)?;
                    if let Some(c) = c {
                        let s = owned.get_or_insert_with(String::new);
                        s.push_str(self.slice(run, before));
                        s.push(c);
                        run = self.pos;
                    }
                }
                Some(_) => return Err(self.error("control character (\\u0000-\\u001F) found while parsing a string")),
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// One escape after its backslash; the character when `decode` (surrogates must pair), else
    /// only its form is checked.
    fn escape(&mut self, decode: bool) -> Result<Option<char>, Error> {
        let Some(b) = self.peek() else { return Err(self.error("EOF while parsing a string")) };
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                if !decode {
                    return Ok(None);
                }
                return self.code_point(unit).map(Some);
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape"));
            }
        };
        Ok(decode.then_some(c))
    }

    fn code_point(&mut self, unit: u16) -> Result<char, Error> {
        let code = match unit {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            _ => u32::from(unit),
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                Some(_) => return Err(self.error("invalid escape")),
                None => return Err(self.error("EOF while parsing a string")),
            };
            unit = (unit << 4) | u16::from(digit);
            self.pos += 1;
        }
        Ok(unit)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Crosses a number in JSON's grammar; says whether it is an integer.
    fn scan_number(&mut self) -> Result<bool, Error> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            Some(_) => return Err(self.error("invalid number")),
            None => return Err(self.error("EOF while parsing a value")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        Ok(integer)
    }

    fn number<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        let start = self.pos;
        let integer = self.scan_number()?;
        let text = self.slice(start, self.pos);
        if integer {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(digits) => (true, digits),
                None => (false, text),
            };
            // As serde_json: `-0` is the float -0.0; integers past u64 or i64 are floats.
            match digits.parse::<u64>() {
                Ok(magnitude) if !negative => return visitor.visit_u64(magnitude),
                Ok(magnitude) if magnitude > 0 => {
                    if let Ok(value) = i64::try_from(-i128::from(magnitude)) {
                        return visitor.visit_i64(value);
                    }
                }
                _ => {}
            }
        }
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => visitor.visit_f64(value),
            _ => {
                self.pos = start;
                Err(self.error("number out of range"))
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        match self.bytes.get(self.pos..self.pos + word.len()) {
            Some(found) if found == word => {
                self.pos += word.len();
                Ok(())
            }
            _ => Err(self.error("expected value")),
        }
    }

    /// Crosses one value of any depth, checking its grammar and building nothing.
    pub fn skip(&mut self) -> Result<(), Error> {
        let mut open = Open::default();
        loop {
            // A value.
            match self.peek_past_ws() {
                Some(b @ (b'{' | b'[')) => {
                    self.pos += 1;
                    let object = b == b'{';
                    if self.next_in(object, true)? {
                        open.push(object);
                        self.key_if(object)?;
                        continue;
                    }
                    self.pos += 1;
                }
                Some(b'"') => {
                    self.pos += 1;
                    self.skip_string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.scan_number()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.error("expected value")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            // After a value: the next one in its container, or the container's end.
            loop {
                let Some(object) = open.last() else { return Ok(()) };
                if self.next_in(object, false)? {
                    self.key_if(object)?;
                    break;
                }
                self.pos += 1;
                open.pop();
            }
        }
    }

    /// In an object, crosses a member's key and its colon.
    fn key_if(&mut self, object: bool) -> Result<(), Error> {
        if !object {
            return Ok(());
        }
        self.expect(b'"', "key must be a string")?;
        self.skip_string()?;
        self.expect(b':', "expected `:`")
    }

    /// Walks an object at the reader: `entry` is called at each value with its key, and must
    /// cross the value (read it, or [`Reader::skip`] it).
    pub fn object(&mut self, mut entry: impl FnMut(&mut Self, &str) -> Result<(), Error>) -> Result<(), Error> {
        self.expect(b'{', "expected `{`")?;
        let mut first = true;
        while self.next_member::<b'}'>(first)? {
            first = false;
            self.expect(b'"', "key must be a string")?;
            let key = self.string()?;
            self.expect(b':', "expected `:`")?;
            entry(self, &key)?;
        }
        self.pos += 1;
        Ok(())
    }

    /// Walks an array at the reader: `element` is called at each element, and must cross it.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        self.expect(b'[', "expected `[`")?;
        let mut first = true;
        while self.next_member::<b']'>(first)? {
            first = false;
            element(self)?;
        }
        self.pos += 1;
        Ok(())
    }

    /// Before the next member of an object (`CLOSE` is `}`) or array (`]`), `first` when none
    /// has been read: crosses the comma and says whether one follows; at the end, leaves the
    /// reader on `CLOSE`.
    #[inline(always)]
    fn next_member<const CLOSE: u8>(&mut self, first: bool) -> Result<bool, Error> {
        match self.peek_past_ws() {
            Some(b) if b == CLOSE => Ok(false),
            Some(b',') if !first => {
                self.pos += 1;
                match self.peek_past_ws() {
                    Some(b) if b == CLOSE => Err(self.error("trailing comma")),
                    _ => Ok(true),
                }
            }
            Some(_) if first => Ok(true),
            Some(_) if CLOSE == b'}' => Err(self.error("expected `,` or `}`")),
            Some(_) => Err(self.error("expected `,` or `]`")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// [`Reader::next_member`] in an object (true) or array.
    fn next_in(&mut self, object: bool, first: bool) -> Result<bool, Error> {
        if object {
            self.next_member::<b'}'>(first)
        } else {
            self.next_member::<b']'>(first)
        }
    }

    /// The string at the reader.
    #[inline]
    pub fn string_value(&mut self) -> Result<Cow<'a, str>, Error> {
        self.expect(b'"', "expected a string")?;
        self.string()
    }

    /// The number at the reader, as an `i64` when it is an integer that fits (None for any
    /// other number).
    pub fn integer(&mut self) -> Result<Option<i64>, Error> {
        self.peek_past_ws();
        let start = self.pos;
        let integer = self.scan_number()?;
        Ok(if integer { self.slice(start, self.pos).parse::<i64>().ok() } else { None })
    }

    /// The `true` or `false` at the reader.
    pub fn boolean(&mut self) -> Result<bool, Error> {
        match self.peek_past_ws() {
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| false),
            _ => Err(self.error("expected a boolean")),
        }
    }

    /// The value at the reader, crossed: its own text.
    pub fn raw(&mut self) -> Result<&'a str, Error> {
        self.peek_past_ws();
        let start = self.pos;
        self.skip()?;
        Ok(self.slice(start, self.pos))
    }

    /// Reads the container at the reader with `read`, one level deeper (the level is given
    /// back whatever `read` answers, so a reader that refused something stays usable).
    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.depth += 1;
        self.pos += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn close(&mut self, byte: u8) -> Result<(), Error> {
        match self.peek_past_ws() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(b',') => Err(self.error("trailing comma")),
            Some(_) => Err(self.error("trailing characters")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek_past_ws() {
            Some(b'"') => {
                self.pos += 1;
                match self.string()? {
                    Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
                    Cow::Owned(s) => visitor.visit_string(s),
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(visitor),
            Some(b'{') => self.nested(|r| {
                let value = visitor.visit_map(Members { r: &mut *r, first: true })?;
                r.close(b'}')?;
                Ok(value)
            }),
            Some(b'[') => self.nested(|r| {
                let value = visitor.visit_seq(Members { r: &mut *r, first: true })?;
                r.close(b']')?;
                Ok(value)
            }),
            Some(b't') => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek_past_ws() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Unit variants, written as strings (the only enums the event model reads).
        match self.peek_past_ws() {
            Some(b'"') => {
                self.pos += 1;
                let name = self.string()?;
                visitor.visit_enum(name.as_ref().into_deserializer())
            }
            _ => Err(self.error("expected a string")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// An object's entries or an array's elements, for a visitor.
struct Members<'r, 'de> {
    r: &'r mut Reader<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if !self.r.next_member::<b'}'>(self.first)? {
            return Ok(None);
        }
        if self.r.peek() != Some(b'"') {
            return Err(self.r.error("key must be a string"));
        }
        self.first = false;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.r.expect(b':', "expected `:`")?;
        seed.deserialize(&mut *self.r)
    }
}

impl<'de> SeqAccess<'de> for Members<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if !self.r.next_member::<b']'>(self.first)? {
            return Ok(None);
        }
        self.first = false;
        seed.deserialize(&mut *self.r).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;
    use serde_json::Value;

    fn same_as_serde_json(text: &str) {
        let ours = from_str::<Value>(text);
        let theirs = serde_json::from_str::<Value>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{text}: ours {ours:?}, serde_json {theirs:?}"),
        }
        let skipped = from_str::<IgnoredAny>(text).is_ok();
        assert_eq!(skipped, serde_json::from_str::<IgnoredAny>(text).is_ok(), "skipping {text}");
    }

    #[test]
    fn reads_what_serde_json_reads_and_refuses_what_it_refuses() {
        for text in [
            "{}",
            " [ ] ",
            r#"{"a": [1, -2, 3.5, 1e3, -0, 0.1e-2, true, false, null, "x\"y\\z\u00e9\ud83c\udf70\n"]}"#,
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e400",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{1:2}",
            "[1 2]",
            "\"\u{1}\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            "tru",
            "nul",
            "[}",
            "{]",
            "[1] 2",
            "\"abcdefghijklmnopqrstuvwxyz\\\"abcdefgh\"",
            "        \n\t\r  {  \"k\"  :  \"v\"  }         ",
            "",
            // Strings of eight bytes and more (read a word at a time), ending in the text's last
            // bytes or holding a control character, a backslash or an unclosed end.
            "\"abcdefghij\"",
            "[\"abcdefghij\"]",
            "[\"abcdefghijklmnop\", \"abcdefgh\"]",
            "\"abcdefghij\u{1}kl\"",
            "\"abcdefghij\u{1f}\"",
            "\"abcdefghij\\\"\"",
            "\"abcdefghijklmnop",
            "\"abcdefghijklmnop\\",
            // Containers of both kinds side by side at the same depth.
            r#"[{"a":1},[1],{"b":[]},[{}]]"#,
            r#"[{"a":1],[1]]"#,
        ] {
            same_as_serde_json(text);
        }
        // The same beside each other 64 levels down, where the open containers leave a word.
        for (inner, valid) in [(r#"{"a":1},[1],{"b":[]}"#, true), (r#"{"a":1],[1]"#, false), (r#"[1},{"a":1}"#, false)]
        {
            let deep = format!("{}{inner}{}", "[".repeat(63), "]".repeat(63));
            let crossed = from_str::<IgnoredAny>(&deep).is_ok();
            assert_eq!(crossed, serde_json::from_str::<IgnoredAny>(&deep).is_ok(), "{inner}");
            assert_eq!(crossed, valid, "{inner}");
        }
    }

    #[test]
    fn skipping_has_no_depth_limit_but_reading_does() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        assert!(from_str::<IgnoredAny>(&deep).is_ok());
        let err = from_str::<Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn crossing_tells_objects_from_arrays_at_any_depth() {
        // Objects and arrays in turn, past the 64 levels that are kept in a word.
        for depth in [1, 2, 63, 64, 65, 66, 130] {
            let open: String = (0..depth).map(|i| if i % 2 == 0 { "{\"k\":" } else { "[" }).collect();
            let close: Vec<char> = (0..depth).rev().map(|i| if i % 2 == 0 { '}' } else { ']' }).collect();
            let good = format!("{open}1{}", close.iter().collect::<String>());
            assert_eq!(Reader::new(&good).raw().unwrap(), good, "depth {depth}");
            // Any one closer of the wrong kind is refused.
            for at in 0..depth {
                let mut bad = close.clone();
                bad[at] = if bad[at] == '}' { ']' } else { '}' };
                let bad = format!("{open}1{}", bad.iter().collect::<String>());
                assert!(Reader::new(&bad).raw().is_err(), "depth {depth}, closer {at}");
            }
        }
    }

    #[test]
    fn a_reader_that_refused_something_too_deep_still_reads_what_follows() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let text = format!("{deep} [[1]]");
        let mut r = Reader::new(&text);
        for _ in 0..3 {
            r.rewind(0);
            assert!(r.read::<Value>().unwrap_err().to_string().contains("recursion limit"));
        }
        r.rewind(deep.len());
        assert_eq!(r.read::<Value>().unwrap(), serde_json::json!([[1]]));
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = from_str::<Value>("{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((err.line(), err.column()), (2, 8), "{err}");
    }

    #[test]
    fn objects_and_arrays_are_walked_with_their_values_own_text() {
        let mut r = Reader::new(r#" { "a" :  { "b" : [1, 2.50] }, "c\u0041": [ true , 7 ] , "d": [] } "#);
        let mut seen = Vec::new();
        r.object(|r, key| {
            match key {
                "a" => seen.push(format!("a={}", r.raw()?)),
                "cA" => r.array(|r| {
                    seen.push(format!("{:?}", r.raw()?));
                    Ok(())
                })?,
                _ => r.skip()?,
            }
            Ok(())
        })
        .unwrap();
        r.end().unwrap();
        assert_eq!(seen, [r#"a={ "b" : [1, 2.50] }"#, r#""true""#, r#""7""#]);
        for bad in [r#"{"a":1,}"#, r#"{"a" 1}"#, "{1:2}", r#"{"a":1 "b":2}"#, "[1,]", "[1 2]", "{", "["] {
            let mut r = Reader::new(bad);
            let walked = if bad.starts_with('{') { r.object(|r, _| r.skip()) } else { r.array(|r| r.skip()) };
            assert!(walked.is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_are_i64_or_nothing() {
        for (text, want) in [
            ("12", Some(12)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("1.5", None),
            ("1e3", None),
        ] {
            assert_eq!(Reader::new(text).integer().unwrap(), want, "{text}");
        }
        assert!(Reader::new("01").integer().is_err());
    }
}
