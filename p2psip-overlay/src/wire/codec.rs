//! Byte-level reader and writer for the TLS-style presentation language RFC 6940 uses
//! (section 6.3, "the RELOAD wire format ... uses the TLS presentation language", RFC 5246
//! section 4). Every read is bounds-checked; every variable-length vector's prefix is checked
//! against the bytes that remain *before* anything is allocated, so no allocation is larger
//! than the input. Writers patch length prefixes after the fact and refuse vectors that do not
//! fit their prefix.

use super::WireError;

/// A cursor over a borrowed buffer. Sub-structures are read through [`Reader::sub`] so that a
/// length prefix bounds everything inside it.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek_u8(&self, what: &'static str) -> Result<u8, WireError> {
        self.buf.get(self.pos).copied().ok_or(WireError::Truncated {
            what,
            need: 1,
            have: 0,
        })
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let have = self.remaining();
        if n > have {
            return Err(WireError::Truncated {
                what,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], WireError> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u24(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b: [u8; 3] = self.array(what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A TLS `Boolean`: exactly 0 or 1.
    pub(crate) fn boolean(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(WireError::BadBoolean { what, value }),
        }
    }

    fn len_prefix(&mut self, prefix: usize, what: &'static str) -> Result<usize, WireError> {
        let len = match prefix {
            1 => u64::from(self.u8(what)?),
            2 => u64::from(self.u16(what)?),
            3 => u64::from(self.u24(what)?),
            _ => u64::from(self.u32(what)?),
        };
        let have = self.remaining();
        if len > have as u64 {
            return Err(WireError::LengthBeyondBuffer { what, len, have });
        }
        Ok(len as usize)
    }

    /// `opaque x<0..2^(8*prefix)-1>`: a length-prefixed byte string.
    pub(crate) fn opaque(
        &mut self,
        prefix: usize,
        what: &'static str,
    ) -> Result<&'a [u8], WireError> {
        let n = self.len_prefix(prefix, what)?;
        self.bytes(n, what)
    }

    /// A length-prefixed region read through its own reader.
    pub(crate) fn sub(
        &mut self,
        prefix: usize,
        what: &'static str,
    ) -> Result<Reader<'a>, WireError> {
        Ok(Reader::new(self.opaque(prefix, what)?))
    }

    /// A region of exactly `n` bytes read through its own reader.
    pub(crate) fn sub_exact(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<Reader<'a>, WireError> {
        let have = self.remaining();
        if n > have {
            return Err(WireError::LengthBeyondBuffer {
                what,
                len: n as u64,
                have,
            });
        }
        Ok(Reader::new(self.bytes(n, what)?))
    }

    /// A vector of structures filling a length-prefixed region exactly.
    pub(crate) fn list<T>(
        &mut self,
        prefix: usize,
        what: &'static str,
        mut item: impl FnMut(&mut Reader<'a>) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let mut sub = self.sub(prefix, what)?;
        let mut v = Vec::new();
        while !sub.is_empty() {
            let before = sub.remaining();
            v.push(item(&mut sub)?);
            if sub.remaining() == before {
                // An item that reads nothing would loop forever; no RELOAD item is empty.
                return Err(WireError::InvalidValue {
                    what,
                    value: before as u64,
                });
            }
        }
        Ok(v)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { what, extra }),
        }
    }
}

pub(crate) fn max_for_prefix(prefix: usize) -> usize {
    match prefix {
        1 => 0xff,
        2 => 0xffff,
        3 => 0xff_ffff,
        _ => 0xffff_ffff,
    }
}

/// Writes a length prefix of `prefix` bytes, runs `body`, then patches the prefix.
pub(crate) fn put_vec(
    out: &mut Vec<u8>,
    prefix: usize,
    what: &'static str,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let at = out.len();
    out.resize(at + prefix, 0);
    body(out)?;
    let len = out.len() - at - prefix;
    let max = max_for_prefix(prefix);
    if len > max {
        out.truncate(at);
        return Err(WireError::TooLong { what, len, max });
    }
    let be = (len as u32).to_be_bytes();
    out[at..at + prefix].copy_from_slice(&be[4 - prefix..]);
    Ok(())
}

/// `opaque x<0..2^(8*prefix)-1>`.
pub(crate) fn put_opaque(
    out: &mut Vec<u8>,
    prefix: usize,
    what: &'static str,
    data: &[u8],
) -> Result<(), WireError> {
    let max = max_for_prefix(prefix);
    if data.len() > max {
        return Err(WireError::TooLong {
            what,
            len: data.len(),
            max,
        });
    }
    let be = (data.len() as u32).to_be_bytes();
    out.extend_from_slice(&be[4 - prefix..]);
    out.extend_from_slice(data);
    Ok(())
}

/// A vector of structures behind a length prefix.
pub(crate) fn put_list<T>(
    out: &mut Vec<u8>,
    prefix: usize,
    what: &'static str,
    items: &[T],
    mut item: impl FnMut(&T, &mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    put_vec(out, prefix, what, |out| {
        for i in items {
            item(i, out)?;
        }
        Ok(())
    })
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
