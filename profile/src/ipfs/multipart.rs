//! The small part of `multipart/form-data` (RFC 7578) that Kubo's RPC uses: the
//! client sends one file part, the server reads file parts from a body already
//! held in memory (its size was capped before). Part headers other than
//! `Content-Disposition` are ignored; at most [`MAX_PARTS`] parts are read.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

/// Most parts read from one body.
pub const MAX_PARTS: usize = 1024;

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
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut out = Vec::with_capacity(
        head.len()
            .saturating_add(data.len())
            .saturating_add(tail.len()),
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(data);
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

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    let first = *needle.first()?;
    let mut off = 0usize;
    loop {
        let tail = rest.get(off..)?;
        let i = tail.iter().position(|b| *b == first)?;
        let at = off.checked_add(i)?;
        let end = at.checked_add(needle.len())?;
        if rest.get(at..end)? == needle {
            return from.checked_add(at);
        }
        off = at.checked_add(1)?;
    }
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
#[expect(clippy::indexing_slicing, reason = "tests index fixtures they built")]
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

    proptest! {
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
