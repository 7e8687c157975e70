//! The small part of `multipart/form-data` (RFC 7578) that Kubo's RPC uses: the
//! client sends one file part; the server reads file parts either from a body held
//! in memory ([`parse`], its size capped before) or while the body arrives
//! ([`PartStream`], so a CAR can be verified as it is uploaded). Part headers other
//! than `Content-Disposition` are ignored; at most [`MAX_PARTS`] parts are read.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

/// Most parts read from one body.
pub const MAX_PARTS: usize = 1024;
/// Longest preamble or block of part headers read by [`PartStream`] (bytes): 16 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// Its bytes.
    pub data: &'a [u8],
}

/// A fresh boundary for a body we send.
pub(crate) fn boundary() -> String {
    use rand::Rng;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    format!("sphere-{}", hex::encode(b))
}

/// The `Content-Type` header value for `boundary`.
pub(crate) fn content_type(boundary: &str) -> String {
    format!("multipart/form-data; boundary={boundary}")
}

/// A body with one file part named `name`.
pub(crate) fn encode_file(boundary: &str, name: &str, filename: &str, data: &[u8]) -> Vec<u8> {
    encode_file_with(boundary, name, filename, data.len(), |out| {
        out.extend_from_slice(data);
    })
}

/// A body with one file part named `name` whose bytes (about `len` of them) `write`
/// appends, so a CAR can be encoded straight into the request body.
pub(crate) fn encode_file_with(
    boundary: &str,
    name: &str,
    filename: &str,
    len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut out = Vec::with_capacity(head.len().saturating_add(len).saturating_add(tail.len()));
    out.extend_from_slice(head.as_bytes());
    write(&mut out);
    out.extend_from_slice(tail.as_bytes());
    out
}

/// Why a multipart body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The `Content-Type` is not `multipart/form-data` with a boundary.
    #[error("expected multipart/form-data with a boundary")]
    NotMultipart,
    /// The body does not follow the multipart framing.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_PARTS`] parts.
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// The boundary of a `multipart/form-data` content type.
///
/// # Errors
/// [`MultipartError::NotMultipart`].
pub fn boundary_of(content_type: &str) -> Result<String, MultipartError> {
    let mut params = content_type.split(';');
    let mime = params.next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim().trim_matches('"');
            if v.is_empty() || v.len() > 200 {
                return Err(MultipartError::NotMultipart);
            }
            return Ok(v.to_owned());
        }
    }
    Err(MultipartError::NotMultipart)
}

/// Position of `needle` in `hay` at or after `from` (SIMD substring search: the
/// body of a 10 MiB upload is scanned once).
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    from.checked_add(memchr::memmem::find(rest, needle)?)
}

/// Splits `body` into its parts.
///
/// # Errors
/// [`MultipartError`] for a malformed body or too many parts.
pub fn parse<'a>(boundary: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, MultipartError> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let mut pos =
        find(body, delim.as_bytes(), 0).ok_or(MultipartError::Malformed("no boundary"))?;
    let mut parts = Vec::new();
    loop {
        pos = pos
            .checked_add(delim.len())
            .ok_or(MultipartError::Malformed("overflow"))?;
        let after = body
            .get(pos..)
            .ok_or(MultipartError::Malformed("truncated"))?;
        if after.starts_with(b"--") {
            return Ok(parts);
        }
        if !after.starts_with(b"\r\n") {
            return Err(MultipartError::Malformed("boundary not followed by CRLF"));
        }
        let head_start = pos
            .checked_add(2)
            .ok_or(MultipartError::Malformed("overflow"))?;
        let head_end = find(body, b"\r\n\r\n", head_start)
            .ok_or(MultipartError::Malformed("part headers not terminated"))?;
        let head = body
            .get(head_start..head_end)
            .ok_or(MultipartError::Malformed("truncated"))?;
        let data_start = head_end
            .checked_add(4)
            .ok_or(MultipartError::Malformed("overflow"))?;
        let data_end = find(body, next_delim.as_bytes(), data_start).ok_or(
            MultipartError::Malformed("part not terminated by the boundary"),
        )?;
        let data = body
            .get(data_start..data_end)
            .ok_or(MultipartError::Malformed("truncated"))?;
        if parts.len() >= MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        parts.push(Part {
            name: part_name(head).unwrap_or_default(),
            data,
        });
        pos = data_end
            .checked_add(2)
            .ok_or(MultipartError::Malformed("overflow"))?;
    }
}

/// What [`PartStream::feed`] reports, in body order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A part begins; its `Content-Disposition` name (empty if none).
    Start(String),
    /// The next bytes of the current part (possibly empty).
    Data(&'a [u8]),
    /// The current part ended.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartState {
    Preamble,
    AfterDelimiter,
    Headers,
    Data,
    Done,
}

/// A multipart body split into parts while it arrives, without copying part bytes
/// (only a delimiter-length tail is held back between chunks, in case a delimiter
/// straddles them). Same rules as [`parse`].
#[derive(Debug)]
pub struct PartStream {
    delimiter: Vec<u8>,
    state: PartState,
    buf: Vec<u8>,
    held: Vec<u8>,
    parts: usize,
}

impl PartStream {
    /// A splitter for `boundary`.
    #[must_use]
    pub fn new(boundary: &str) -> Self {
        Self {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            state: PartState::Preamble,
            // The first delimiter has no CRLF before it: pretend it had.
            buf: b"\r\n".to_vec(),
            held: Vec::new(),
            parts: 0,
        }
    }

    /// Takes the next bytes of the body, reporting parts to `on`.
    ///
    /// # Errors
    /// [`MultipartError`] for a malformed body or too many parts, or `on`'s error.
    pub fn feed<E: From<MultipartError>>(
        &mut self,
        chunk: &[u8],
        on: &mut impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let joined;
        let mut input: &[u8] = if self.buf.is_empty() {
            chunk
        } else {
            let mut b = std::mem::take(&mut self.buf);
            b.extend_from_slice(chunk);
            joined = b;
            &joined
        };
        let dl = self.delimiter.len();
        loop {
            match self.state {
                PartState::Done => return Ok(()),
                PartState::Data => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    input = self.data(input, on)?;
                }
                PartState::Preamble => {
                    if let Some(i) = find(input, &self.delimiter, 0) {
                        input = input.get(i.saturating_add(dl)..).unwrap_or_default();
                        self.state = PartState::AfterDelimiter;
                    } else {
                        if input.len() > MAX_HEAD_BYTES {
                            return Err(MultipartError::Malformed("no boundary").into());
                        }
                        self.buf = input.to_vec();
                        return Ok(());
                    }
                }
                PartState::AfterDelimiter => {
                    if input.len() < 2 {
                        self.buf = input.to_vec();
                        return Ok(());
                    }
                    if input.starts_with(b"--") {
                        // The closing delimiter; an epilogue is ignored.
                        self.state = PartState::Done;
                        return Ok(());
                    }
                    if !input.starts_with(b"\r\n") {
                        return Err(
                            MultipartError::Malformed("boundary not followed by CRLF").into()
                        );
                    }
                    input = input.get(2..).unwrap_or_default();
                    self.state = PartState::Headers;
                }
                PartState::Headers => {
                    let Some(end) = find(input, b"\r\n\r\n", 0) else {
                        if input.len() > MAX_HEAD_BYTES {
                            return Err(
                                MultipartError::Malformed("part headers not terminated").into()
                            );
                        }
                        self.buf = input.to_vec();
                        return Ok(());
                    };
                    if self.parts >= MAX_PARTS {
                        return Err(MultipartError::TooManyParts.into());
                    }
                    self.parts = self.parts.saturating_add(1);
                    let head = input.get(..end).unwrap_or_default();
                    on(Event::Start(part_name(head).unwrap_or_default()))?;
                    input = input.get(end.saturating_add(4)..).unwrap_or_default();
                    self.state = PartState::Data;
                }
            }
        }
    }

    /// Part bytes: reports those that cannot begin a delimiter and returns what
    /// follows the part's closing delimiter (empty if it was not seen yet).
    fn data<'a, E: From<MultipartError>>(
        &mut self,
        input: &'a [u8],
        on: &mut impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<&'a [u8], E> {
        let dl = self.delimiter.len();
        let keep = dl.saturating_sub(1);
        if !self.held.is_empty() {
            // A delimiter may start in the held tail and end in `input`.
            let mut seam = std::mem::take(&mut self.held);
            let held = seam.len();
            let extra = input.len().min(keep);
            seam.extend_from_slice(input.get(..extra).unwrap_or_default());
            match find(&seam, &self.delimiter, 0) {
                Some(p) if p < held => {
                    on(Event::Data(seam.get(..p).unwrap_or_default()))?;
                    on(Event::End)?;
                    self.state = PartState::AfterDelimiter;
                    let after = p.saturating_add(dl).saturating_sub(held);
                    return Ok(input.get(after..).unwrap_or_default());
                }
                _ if extra == keep => {
                    // No delimiter starts in the held bytes: they are data.
                    on(Event::Data(seam.get(..held).unwrap_or_default()))?;
                }
                _ => {
                    // A tiny chunk: keep at most a delimiter's worth back.
                    let safe = seam.len().saturating_sub(keep);
                    on(Event::Data(seam.get(..safe).unwrap_or_default()))?;
                    self.held = seam.get(safe..).unwrap_or_default().to_vec();
                    return Ok(&[]);
                }
            }
        }
        if let Some(p) = find(input, &self.delimiter, 0) {
            on(Event::Data(input.get(..p).unwrap_or_default()))?;
            on(Event::End)?;
            self.state = PartState::AfterDelimiter;
            return Ok(input.get(p.saturating_add(dl)..).unwrap_or_default());
        }
        let safe = input.len().saturating_sub(keep);
        on(Event::Data(input.get(..safe).unwrap_or_default()))?;
        self.held = input.get(safe..).unwrap_or_default().to_vec();
        Ok(&[])
    }

    /// Ends the body: the closing delimiter must have been seen.
    ///
    /// # Errors
    /// [`MultipartError::Malformed`] for a body cut short.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.state {
            PartState::Done => Ok(()),
            PartState::Preamble => Err(MultipartError::Malformed("no boundary")),
            PartState::Data => Err(MultipartError::Malformed(
                "part not terminated by the boundary",
            )),
            PartState::AfterDelimiter | PartState::Headers => {
                Err(MultipartError::Malformed("truncated"))
            }
        }
    }
}

/// The `name="…"` of a part's `Content-Disposition` header.
fn part_name(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    for line in text.split("\r\n") {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for p in v.split(';') {
            if let Some((pk, pv)) = p.split_once('=')
                && pk.trim().eq_ignore_ascii_case("name")
            {
                return Some(pv.trim().trim_matches('"').to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
#[expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests index fixtures they built"
)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trip_one_file() {
        let b = boundary();
        let body = encode_file(&b, "file", "x.car", b"\r\n--not-it\r\ndata");
        let ct = content_type(&b);
        assert_eq!(boundary_of(&ct).unwrap(), b);
        let parts = parse(&b, &body).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].name, "file");
        assert_eq!(parts[0].data, b"\r\n--not-it\r\ndata");
    }

    #[test]
    fn kubo_client_shape_with_two_files_and_empty_part() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\nabc\r\n--XX\r\nContent-Disposition: form-data; name=\"file-1\"\r\n\r\n\r\n--XX--\r\n";
        let parts = parse("XX", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"abc");
        assert_eq!(parts[1].name, "file-1");
        assert_eq!(parts[1].data, b"");
        assert_eq!(
            boundary_of("multipart/form-data; boundary=\"XX\"").unwrap(),
            "XX"
        );
        assert!(boundary_of("application/json").is_err());
    }

    #[test]
    fn at_most_max_parts() {
        let body = |n: usize| {
            let mut b = Vec::new();
            for _ in 0..n {
                b.extend_from_slice(
                    b"--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n",
                );
            }
            b.extend_from_slice(b"--XX--\r\n");
            b
        };
        assert_eq!(parse("XX", &body(MAX_PARTS)).unwrap().len(), MAX_PARTS);
        assert_eq!(
            parse("XX", &body(MAX_PARTS + 1)),
            Err(MultipartError::TooManyParts)
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b""[..],
            b"--XX",
            b"--XXjunk",
            b"--XX\r\nno end",
            b"--XX\r\n\r\nabc",
        ] {
            assert!(parse("XX", bad).is_err(), "{bad:?}");
        }
    }

    /// Runs `body` through a [`PartStream`] cut at the given points; returns the
    /// parts as (name, bytes).
    fn streamed(
        boundary: &str,
        body: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<(String, Vec<u8>)>, MultipartError> {
        let mut s = PartStream::new(boundary);
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        let mut on = |e: Event<'_>| -> Result<(), MultipartError> {
            match e {
                Event::Start(n) => parts.push((n, Vec::new())),
                Event::Data(d) => parts.last_mut().unwrap().1.extend_from_slice(d),
                Event::End => {}
            }
            Ok(())
        };
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        points.sort_unstable();
        for p in points.into_iter().chain([body.len()]) {
            s.feed(&body[at..p], &mut on)?;
            at = p;
        }
        s.finish()?;
        Ok(parts)
    }

    #[test]
    fn streaming_agrees_with_parse_at_every_cut() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nab\r\n--Xc\r\n--XX\r\nContent-Disposition: form-data; name=\"file-1\"\r\n\r\n\r\n--XX--\r\n";
        let want: Vec<(String, Vec<u8>)> = parse("XX", body)
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.data.to_vec()))
            .collect();
        for a in 0..=body.len() {
            for b in a..=body.len() {
                assert_eq!(streamed("XX", body, &[a, b]).unwrap(), want, "cuts {a} {b}");
            }
        }
        // one byte at a time
        let all: Vec<usize> = (0..body.len()).collect();
        assert_eq!(streamed("XX", body, &all).unwrap(), want);
    }

    proptest! {
        #[test]
        fn streaming_matches_parse(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let b = boundary();
            let body = encode_file(&b, "file", "f", &data);
            let parts = streamed(&b, &body, &cuts).unwrap();
            prop_assert_eq!(parts, vec![("file".to_owned(), data)]);
        }

        #[test]
        fn streaming_random_bodies_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let _ = streamed("XX", &data, &cuts);
            let mut framed = b"--XX\r\n".to_vec();
            framed.extend_from_slice(&data);
            let _ = streamed("XX", &framed, &cuts);
        }

        #[test]
        fn random_bodies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse("XX", &data);
        }

        #[test]
        fn any_payload_round_trips(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let b = boundary();
            let body = encode_file(&b, "file", "f", &data);
            let parts = parse(&b, &body).unwrap();
            prop_assert_eq!(parts.len(), 1);
            prop_assert_eq!(parts[0].data, &data[..]);
        }
    }
}
