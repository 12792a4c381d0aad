//! Limits per client address: failed logins in a sliding window (brute force), and open
//! connections at once (one host cannot take every thread and descriptor).
//!
//! An address is an IPv4 address or an IPv6 /64 network: one IPv6 host usually owns a whole
//! /64, so counting single IPv6 addresses would give it 2^64 fresh starts.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failed logins one address may make within [`LOGIN_WINDOW`]; the next attempt gets 429.
pub const MAX_FAILED_LOGINS: usize = 5;
/// The sliding window failed logins are counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once by each limiter; beyond, the stalest entries are dropped first.
const MAX_TRACKED: usize = 65_536;

/// The unit limits are counted by: the IPv4 address, or the IPv6 /64 network.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// An address or a network in CIDR notation (`10.0.0.0/8`, `::1`), for `--trusted-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange {
            network: addr,
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.network.is_ipv4() => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            other => other,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => same_prefix(
                u128::from(n.to_bits()),
                u128::from(a.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                same_prefix(n.to_bits(), a.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix.min(bits));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

/// Counts failed logins per address in a sliding window.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Err(wait)` while `ip` has used up its failed attempts: the time until the oldest one
    /// leaves the window.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.lock();
        let Some(times) = failures.get_mut(&address_key(ip)) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= MAX_FAILED_LOGINS => {
                Err(LOGIN_WINDOW.saturating_sub(now.duration_since(*oldest)))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let times = failures.entry(address_key(ip)).or_default();
        times.push_back(now);
        if times.len() > MAX_FAILED_LOGINS {
            times.pop_front();
        }
    }

    /// A successful login forgets the address's failures.
    pub fn record_success(&self, ip: IpAddr) {
        self.lock().remove(&address_key(ip));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts open connections per address, up to a limit.
pub struct ConnectionLimiter {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted connection; the count goes down when it is dropped.
pub struct ConnectionPermit {
    key: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionLimiter {
    /// `max` connections per address; 0 means no limit.
    pub fn new(max: usize) -> ConnectionLimiter {
        ConnectionLimiter {
            max,
            open: Arc::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts a new connection from `ip`, or `None` when it already has `max` open.
    pub fn admit(&self, ip: IpAddr) -> Option<ConnectionPermit> {
        let key = address_key(ip);
        if self.max > 0 {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(key).or_insert(0);
            if *count >= self.max {
                return None;
            }
            *count += 1;
        }
        Some(ConnectionPermit {
            key,
            open: self.open.clone(),
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_64_network() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(address_key(ip("10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn ranges_match_by_prefix() {
        let net = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.1.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        let one = IpRange::parse("::1").unwrap();
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert_eq!(IpRange::parse("10.0.0.0/33"), None);
        assert_eq!(IpRange::parse("nope"), None);
    }

    #[test]
    fn failed_logins_lock_an_address_out_for_the_rest_of_the_window() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..MAX_FAILED_LOGINS {
            assert!(limiter.check(a, start).is_ok(), "attempt {i}");
            limiter.record_failure(a, start + Duration::from_secs(i as u64));
        }
        let wait = limiter
            .check(a, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            limiter.check(ip("192.0.2.2"), start).is_ok(),
            "others are not affected"
        );
        // The oldest failure leaves the window: one more attempt is allowed.
        assert!(limiter.check(a, start + LOGIN_WINDOW).is_ok());
        limiter.record_success(a);
        assert!(limiter.check(a, start + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn connections_are_limited_per_address_and_released_on_drop() {
        let limiter = ConnectionLimiter::new(2);
        let a = limiter.admit(ip("192.0.2.1")).unwrap();
        let _b = limiter.admit(ip("192.0.2.1")).unwrap();
        assert!(limiter.admit(ip("192.0.2.1")).is_none());
        assert!(limiter.admit(ip("192.0.2.9")).is_some());
        drop(a);
        assert!(limiter.admit(ip("192.0.2.1")).is_some());
        let unlimited = ConnectionLimiter::new(0);
        let all: Vec<_> = (0..100).map(|_| unlimited.admit(ip("192.0.2.1"))).collect();
        assert!(all.iter().all(Option::is_some));
    }
}
