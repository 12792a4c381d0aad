//! The offset between this client's clock and the server's, so that latency (arrival minus
//! production time) means something when the two run on different machines.
//!
//! PROTOCOL.md: clock offset ≈ `server_time_ms − (t_send + rtt/2)`, taken from the ping with the
//! smallest round trip, since the shortest exchange leaves the least room for asymmetry. The
//! `hello` gives a first, rougher estimate (its round trip is the whole handshake) so that the
//! first chunks are already corrected.

/// Now on this client's clock, µs since the epoch: what `listen` and the load generator time
/// arrivals with.
pub fn unix_us() -> u64 {
    crate::audio::unix_micros(std::time::SystemTime::now())
}

/// Half a millisecond: `server_time_ms` is truncated to whole milliseconds, so on average the
/// server's clock read half a millisecond later than it says.
const TRUNCATION_US: i64 = 500;

#[derive(Debug, Clone, Copy, Default)]
pub struct ClockOffset {
    best_rtt_us: Option<u64>,
    /// Server clock minus client clock, µs.
    offset_us: i64,
}

impl ClockOffset {
    /// Takes one exchange: the client sent at `sent_us` and received the answer, stamped
    /// `server_time_ms` by the server, at `received_us` (client clock, µs since the epoch).
    /// Keeps it when its round trip is the shortest so far.
    pub fn observe(&mut self, sent_us: u64, received_us: u64, server_time_ms: u64) {
        let rtt = received_us.saturating_sub(sent_us);
        if self.best_rtt_us.is_some_and(|best| rtt > best) {
            return;
        }
        // Saturating: the server's numbers are input, and a wrong one must not overflow.
        let server_us = (server_time_ms as i64)
            .saturating_mul(1000)
            .saturating_add(TRUNCATION_US);
        let client_mid_us = (sent_us as i64).saturating_add((rtt / 2) as i64);
        self.offset_us = server_us.saturating_sub(client_mid_us);
        self.best_rtt_us = Some(rtt);
    }

    /// Server clock minus client clock, µs (0 until something was observed).
    pub fn offset_us(&self) -> i64 {
        self.offset_us
    }

    /// The round trip of the exchange the offset comes from.
    pub fn rtt_us(&self) -> Option<u64> {
        self.best_rtt_us
    }

    /// A server timestamp (µs since the epoch) on this client's clock.
    pub fn to_local_us(&self, server_us: u64) -> i64 {
        (server_us as i64).saturating_sub(self.offset_us)
    }
}

/// How long after its production a chunk arrived, µs: `arrival_us` on this client's clock,
/// `produced_us` on the server's, `offset_us` server minus client. 0 when it seems to have
/// arrived first (clock error); never overflows, whatever the server sends.
pub fn latency_us(arrival_us: u64, produced_us: u64, offset_us: i64) -> u64 {
    let late = i128::from(arrival_us) + i128::from(offset_us) - i128::from(produced_us);
    late.clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_comes_from_the_exchange_with_the_shortest_round_trip() {
        let mut clock = ClockOffset::default();
        // Server 2 s ahead; a slow exchange (40 ms) with an asymmetric delay first ...
        clock.observe(1_000_000, 1_040_000, 3_035);
        assert_eq!(clock.rtt_us(), Some(40_000));
        // ... then a 2 ms one, which wins: mid-point 2_001_000 client = 4_001_500 server.
        clock.observe(2_000_000, 2_002_000, 4_001);
        assert_eq!(clock.rtt_us(), Some(2_000));
        assert_eq!(clock.offset_us(), 2_000_500);
        // A slower one later does not replace it.
        clock.observe(3_000_000, 3_100_000, 5_090);
        assert_eq!(clock.offset_us(), 2_000_500);
        assert_eq!(clock.to_local_us(4_001_500), 2_001_000);
    }

    #[test]
    fn latency_from_any_server_numbers_neither_overflows_nor_goes_negative() {
        assert_eq!(latency_us(1_000_500, 1_000_000, 0), 500);
        assert_eq!(latency_us(1_000_000, 1_000_500, 200), 0);
        assert_eq!(latency_us(0, u64::MAX, i64::MIN), 0);
        assert_eq!(latency_us(u64::MAX, 0, i64::MAX), u64::MAX);
        let mut clock = ClockOffset::default();
        clock.observe(0, u64::MAX, u64::MAX);
        clock.to_local_us(u64::MAX);
    }
}
