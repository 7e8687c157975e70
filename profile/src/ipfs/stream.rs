//! Reading a CAR response while it arrives, resumably: each block is re-hashed as
//! soon as its frame is complete ([`CarStream`]), so verification overlaps the
//! transfer instead of following it, and a body cut off mid-way leaves the verified
//! blocks and the unfinished tail in place so the next attempt can ask for the rest
//! with `Range: bytes=N-` and continue across the seam.
//!
//! [`read_into`] drives one response into a [`CarStream`], enforcing the byte cap
//! (the body is dropped as soon as it passes it) and the stall timeout (no chunk for
//! that long fails the read), and maps every problem to a typed [`FailureCause`].
//! [`range_start`] checks that a `206 Partial Content` answer starts where asked.
#![expect(
    clippy::result_large_err,
    reason = "failure causes carry the CIDs they are about; the error path is cold"
)]

use std::time::Duration;

use reqwest::header::CONTENT_RANGE;

use super::car::CarStream;
use super::error::{CarError, FailureCause};

/// A [`CarError`] met while streaming, as a gateway failure: the byte cap is a size
/// failure, everything else means the gateway served bad bytes.
pub(crate) fn car_cause(e: CarError) -> FailureCause {
    match e {
        CarError::TooLarge { limit } => FailureCause::TooLarge { limit },
        other => FailureCause::Tampered(other),
    }
}

/// Feeds the body of `resp` (status, encoding and Content-Length already checked)
/// into `car`. A network error or stall leaves `car` holding everything received
/// before it, ready to be resumed.
pub(crate) async fn read_into(
    mut resp: reqwest::Response,
    car: &mut CarStream,
    stall: Duration,
) -> Result<(), FailureCause> {
    loop {
        match tokio::time::timeout(stall, resp.chunk()).await {
            Err(_) => return Err(FailureCause::Stalled(stall)),
            Ok(Err(e)) => return Err(FailureCause::Network(super::client::error_chain(&e))),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(chunk))) => car.feed(&chunk).map_err(car_cause)?,
        }
    }
}

/// Checks the `Content-Range` of a 206 answer to `Range: bytes=offset-`: it must
/// be `bytes offset-last/total` (or `/*`) with `last >= offset`.
///
/// # Errors
/// [`FailureCause::Protocol`] naming what is wrong.
pub(crate) fn range_start(resp: &reqwest::Response, offset: u64) -> Result<(), FailureCause> {
    let bad = |why: &str| FailureCause::Protocol(format!("206 answer with {why}"));
    let value = resp
        .headers()
        .get(CONTENT_RANGE)
        .ok_or_else(|| bad("no Content-Range"))?
        .to_str()
        .map_err(|_| bad("an unreadable Content-Range"))?;
    let (first, last) =
        parse_content_range(value).ok_or_else(|| bad("a malformed Content-Range"))?;
    if first != offset || last < first {
        return Err(bad(&format!(
            "Content-Range {value:?}, expected bytes from {offset}"
        )));
    }
    Ok(())
}

/// `(first, last)` of `bytes first-last/total` (total may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    if total != "*" {
        total.parse::<u64>().ok()?;
    }
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, 99)));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0)));
        for bad in [
            "bytes */100",
            "10-99/100",
            "bytes 10-/100",
            "bytes a-b/c",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
