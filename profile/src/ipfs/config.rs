//! [`GatewayConfig`]: which gateways the client uses, in which order, and every
//! timeout, retry and size cap it applies. `Default` plus consuming `with_*`
//! setters; [`GatewayConfig::build`] checks the settings that must agree.

use std::time::Duration;

use reqwest::Url;

use super::car::CarLimits;
use super::error::ConfigError;

/// Default wait for response headers: 10 s (pointer spec §3).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest pause inside a response body: 30 s (pointer spec §3).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default budget for one whole fetch or pin across all gateways: 5 min (pointer spec §3).
pub const TOTAL_BUDGET: Duration = Duration::from_secs(300);
/// Default wait for the answer to one availability probe (`HEAD /ipfs/{cid}`):
/// 10 s (profile spec §5).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default TCP connect timeout: 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts per gateway endpoint for transient failures: 3.
pub const MAX_ATTEMPTS: u32 = 3;
/// Most attempts per gateway endpoint that can be configured: 10.
pub const MAX_ATTEMPTS_CAP: u32 = 10;
/// Default first retry delay: 500 ms, doubled per retry, times a uniform jitter in [0.5, 1.5).
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default cap on one retry delay: 4 s.
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Most gateways in one configuration: 16.
pub const MAX_GATEWAYS: usize = 16;

/// A gateway base URL: http or https, no credentials, path ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl(Url);

impl GatewayUrl {
    /// Parses and checks a gateway base URL.
    ///
    /// # Errors
    /// [`ConfigError::BadUrl`] if it does not parse, is not http(s), has no host, or
    /// carries a user name or password.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::BadUrl {
            url: s.split('@').next_back().unwrap_or_default().to_owned(),
            reason,
        };
        let mut url = Url::parse(s).map_err(|_| bad("does not parse"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials in gateway URLs are not allowed"));
        }
        if url.host().is_none() {
            return Err(bad("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("query and fragment are not allowed"));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(Self(url))
    }

    /// `path` (relative, no leading `/`) resolved against this base.
    pub(crate) fn join(&self, path: &str) -> Url {
        self.0.join(path).unwrap_or_else(|_| self.0.clone())
    }

    /// `path` resolved against this base, with the query `params`.
    pub(crate) fn url(&self, path: &str, params: &[(&str, &str)]) -> Url {
        let mut u = self.join(path);
        if !params.is_empty() {
            u.query_pairs_mut().extend_pairs(params);
        }
        u
    }

    /// The base URL as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for GatewayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// How the client talks to gateways.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    gateways: Vec<GatewayUrl>,
    first_byte_timeout: Duration,
    stall_timeout: Duration,
    total_budget: Duration,
    connect_timeout: Duration,
    probe_timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    limits: CarLimits,
}

impl Default for GatewayConfig {
    /// No gateways; every other setting at its module const.
    fn default() -> Self {
        Self {
            gateways: Vec::new(),
            first_byte_timeout: FIRST_BYTE_TIMEOUT,
            stall_timeout: STALL_TIMEOUT,
            total_budget: TOTAL_BUDGET,
            connect_timeout: CONNECT_TIMEOUT,
            probe_timeout: PROBE_TIMEOUT,
            max_attempts: MAX_ATTEMPTS,
            backoff_base: BACKOFF_BASE,
            backoff_max: BACKOFF_MAX,
            limits: CarLimits::default(),
        }
    }
}

impl GatewayConfig {
    /// Adds a gateway after those already listed (they are tried in order).
    #[must_use]
    pub fn with_gateway(mut self, url: GatewayUrl) -> Self {
        self.gateways.push(url);
        self
    }
    /// Replaces the gateway list.
    #[must_use]
    pub fn with_gateways(mut self, urls: Vec<GatewayUrl>) -> Self {
        self.gateways = urls;
        self
    }
    /// Wait for response headers (default [`FIRST_BYTE_TIMEOUT`]).
    #[must_use]
    pub fn with_first_byte_timeout(mut self, d: Duration) -> Self {
        self.first_byte_timeout = d;
        self
    }
    /// Longest pause while a body streams (default [`STALL_TIMEOUT`]).
    #[must_use]
    pub fn with_stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }
    /// Budget for one fetch or pin across all gateways (default [`TOTAL_BUDGET`]).
    #[must_use]
    pub fn with_total_budget(mut self, d: Duration) -> Self {
        self.total_budget = d;
        self
    }
    /// TCP connect timeout (default [`CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Wait for one availability probe's answer (default [`PROBE_TIMEOUT`]).
    #[must_use]
    pub fn with_probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = d;
        self
    }
    /// Attempts per gateway endpoint on transient failures (default [`MAX_ATTEMPTS`]).
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// First retry delay and the cap on any delay (defaults [`BACKOFF_BASE`], [`BACKOFF_MAX`]).
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }
    /// CAR size, block size, block count and depth caps.
    #[must_use]
    pub fn with_limits(mut self, limits: CarLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the settings that must agree.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming the first bad setting.
    pub fn build(self) -> Result<Self, ConfigError> {
        let zero = |field| ConfigError::OutOfRange {
            field,
            reason: "must be greater than zero",
        };
        if self.gateways.len() > MAX_GATEWAYS {
            return Err(ConfigError::OutOfRange {
                field: "gateways",
                reason: "at most 16 gateways",
            });
        }
        if self.first_byte_timeout.is_zero() {
            return Err(zero("first_byte_timeout"));
        }
        if self.stall_timeout.is_zero() {
            return Err(zero("stall_timeout"));
        }
        if self.total_budget.is_zero() {
            return Err(zero("total_budget"));
        }
        if self.connect_timeout.is_zero() {
            return Err(zero("connect_timeout"));
        }
        if self.probe_timeout.is_zero() {
            return Err(zero("probe_timeout"));
        }
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_CAP {
            return Err(ConfigError::OutOfRange {
                field: "max_attempts",
                reason: "must be 1 to 10",
            });
        }
        if self.backoff_base > self.backoff_max {
            return Err(ConfigError::OutOfRange {
                field: "backoff",
                reason: "base must not exceed max",
            });
        }
        if self.limits.max_bytes() == 0 || self.limits.max_blocks() == 0 {
            return Err(zero("limits"));
        }
        Ok(self)
    }

    /// The gateways, in the order tried.
    #[must_use]
    pub fn gateways(&self) -> &[GatewayUrl] {
        &self.gateways
    }
    /// Wait for response headers.
    #[must_use]
    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }
    /// Longest pause inside a body.
    #[must_use]
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }
    /// Budget per operation.
    #[must_use]
    pub fn total_budget(&self) -> Duration {
        self.total_budget
    }
    /// TCP connect timeout.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// Wait for one availability probe.
    #[must_use]
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout
    }
    /// Attempts per endpoint.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// First retry delay.
    #[must_use]
    pub fn backoff_base(&self) -> Duration {
        self.backoff_base
    }
    /// Cap on one retry delay.
    #[must_use]
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max
    }
    /// Size caps.
    #[must_use]
    pub fn limits(&self) -> &CarLimits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let u = GatewayUrl::parse("http://127.0.0.1:5001").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:5001/");
        assert_eq!(
            u.join("api/v0/block/get").as_str(),
            "http://127.0.0.1:5001/api/v0/block/get"
        );
        let sub = GatewayUrl::parse("https://gw.example/prefix").unwrap();
        assert_eq!(
            sub.join("ipfs/x").as_str(),
            "https://gw.example/prefix/ipfs/x"
        );
        for bad in ["ftp://x", "http://u:p@x/", "not a url", "http://x/?q=1"] {
            let err = GatewayUrl::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("u:p"), "{err}");
        }
    }

    #[test]
    fn at_most_max_gateways() {
        let urls = |n: usize| {
            (0..n)
                .map(|i| GatewayUrl::parse(&format!("http://127.0.0.1:{}/", 1000 + i)).unwrap())
                .collect::<Vec<_>>()
        };
        assert!(
            GatewayConfig::default()
                .with_gateways(urls(MAX_GATEWAYS))
                .build()
                .is_ok()
        );
        assert!(matches!(
            GatewayConfig::default()
                .with_gateways(urls(MAX_GATEWAYS + 1))
                .build(),
            Err(ConfigError::OutOfRange {
                field: "gateways",
                ..
            })
        ));
    }

    #[test]
    fn build_checks_ranges() {
        assert!(GatewayConfig::default().build().is_ok());
        assert!(
            GatewayConfig::default()
                .with_max_attempts(0)
                .build()
                .is_err()
        );
        assert!(
            GatewayConfig::default()
                .with_max_attempts(11)
                .build()
                .is_err()
        );
        assert!(
            GatewayConfig::default()
                .with_total_budget(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            GatewayConfig::default()
                .with_backoff(Duration::from_secs(5), Duration::from_secs(1))
                .build()
                .is_err()
        );
    }
}
