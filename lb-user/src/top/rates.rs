//! Rates from lbd's cumulative counters: the pure model behind `lbctl top`
//! and `lbctl stats --rate` (no terminal, no socket, no clock of its own).
//!
//! A [`Sample`] is one `stats` answer and the instant it was taken (the
//! caller's clock: tests give made-up instants). [`rates`] compares two
//! samples: each counter's growth divided by the time between them. A
//! service or backend that is in the newer sample only (it appeared) has
//! no rate yet; one in the older only (it went) is simply not listed.
//! A counter smaller than before means lbd started over (restarted without
//! adopting its pinned maps, or the service was removed and added again):
//! that service's or backend's rates are then "none" for this interval,
//! never a negative or wrapped number; the next interval has rates again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::control::{ServiceTraffic, Traffic};

/// One `stats` answer and when it was taken.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the answer arrived.
    pub at: Instant,
    /// The counters, per service (`VIP:PORT/PROTO`).
    pub services: BTreeMap<String, ServiceTraffic>,
}

impl Sample {
    /// `traffic` (lbd's `stats` answer) taken at `at`.
    #[must_use]
    pub fn new(at: Instant, traffic: Vec<ServiceTraffic>) -> Self {
        Self {
            at,
            services: traffic
                .into_iter()
                .map(|s| (s.service.clone(), s))
                .collect(),
        }
    }
}

/// Per-second rates of one service or backend; `None` where there is no
/// rate to give (no earlier sample of it, or its counters started over).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Packets forwarded per second.
    #[serde(rename = "packets_per_s")]
    pub packets: Option<f64>,
    /// Bytes forwarded per second.
    #[serde(rename = "bytes_per_s")]
    pub bytes: Option<f64>,
    /// Flows begun per second.
    #[serde(rename = "new_flows_per_s")]
    pub new_flows: Option<f64>,
}

impl Rates {
    /// No rates (`-` on screen, `null` in JSON).
    pub const NONE: Self = Self {
        packets: None,
        bytes: None,
        new_flows: None,
    };

    /// The rates between `before` and `now`, `elapsed` apart: none when
    /// there is no `before`, no time passed, or any counter went down.
    #[must_use]
    pub fn between(before: Option<&Traffic>, now: &Traffic, elapsed: Duration) -> Self {
        let Some(before) = before else {
            return Self::NONE;
        };
        let secs = elapsed.as_secs_f64();
        let pairs = [
            (before.packets, now.packets),
            (before.bytes, now.bytes),
            (before.new_flows, now.new_flows),
        ];
        if secs <= 0.0 || pairs.iter().any(|(b, n)| n < b) {
            return Self::NONE;
        }
        let rate = |(b, n): (u64, u64)| Some((n - b) as f64 / secs);
        Self {
            packets: rate(pairs[0]),
            bytes: rate(pairs[1]),
            new_flows: rate(pairs[2]),
        }
    }
}

/// One service's rates and its backends'.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRates {
    /// `VIP:PORT/PROTO`.
    pub service: String,
    /// The service's (the VIP's) rates.
    pub total: Rates,
    /// Per backend address: this service's traffic to it.
    pub backends: BTreeMap<String, Rates>,
}

/// The rates of every service in `now`, against `before` (none: every
/// rate is `None`).
#[must_use]
pub fn rates(before: Option<&Sample>, now: &Sample) -> Vec<ServiceRates> {
    let elapsed = before.map_or(Duration::ZERO, |b| now.at.saturating_duration_since(b.at));
    now.services
        .values()
        .map(|s| {
            let old = before.and_then(|b| b.services.get(&s.service));
            ServiceRates {
                service: s.service.clone(),
                total: Rates::between(old.map(|o| &o.total), &s.total, elapsed),
                backends: s
                    .backends
                    .iter()
                    .map(|(addr, t)| {
                        let old = old.and_then(|o| o.backends.get(addr));
                        (addr.clone(), Rates::between(old, t, elapsed))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// A number for people: `0`, `7.5`, `42.0`, `950`, `1.2k`, `34k`, `3.4M`,
/// `5.6G`, `7.8T` (powers of 1000); `-` for none.
#[must_use]
pub fn human(value: Option<f64>) -> String {
    let Some(v) = value else {
        return "-".into();
    };
    if v <= 0.0 || !v.is_finite() {
        return "0".into();
    }
    if v < 99.95 {
        return format!("{v:.1}");
    }
    if v < 999.5 {
        return format!("{v:.0}");
    }
    // The largest unit that leaves at least 1 (rounded: 999.6k is 1.0M).
    let units = [(1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')];
    let (div, unit) = units
        .into_iter()
        .find(|(div, _)| v >= div * 0.9995)
        .unwrap_or((1e3, 'k'));
    let scaled = v / div;
    if scaled < 9.95 {
        format!("{scaled:.1}{unit}")
    } else {
        format!("{scaled:.0}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(packets: u64, bytes: u64, new_flows: u64) -> Traffic {
        Traffic {
            packets,
            bytes,
            new_flows,
            ..Traffic::default()
        }
    }

    fn service(name: &str, total: Traffic, backends: &[(&str, Traffic)]) -> ServiceTraffic {
        ServiceTraffic {
            service: name.into(),
            total,
            backends: backends
                .iter()
                .map(|(a, t)| ((*a).to_owned(), t.clone()))
                .collect(),
            flows_recent: 0,
            flows_off_table: 0,
        }
    }

    #[test]
    fn growth_over_elapsed_time() {
        let t0 = Instant::now();
        let a = Sample::new(
            t0,
            vec![service(
                "198.18.0.100:80/tcp",
                traffic(100, 10_000, 10),
                &[("198.18.0.11", traffic(40, 4000, 4))],
            )],
        );
        let b = Sample::new(
            t0 + Duration::from_secs(2),
            vec![service(
                "198.18.0.100:80/tcp",
                traffic(300, 50_000, 30),
                &[("198.18.0.11", traffic(140, 14_000, 9))],
            )],
        );
        let r = rates(Some(&a), &b);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].total,
            Rates {
                packets: Some(100.0),
                bytes: Some(20_000.0),
                new_flows: Some(10.0)
            }
        );
        assert_eq!(
            r[0].backends["198.18.0.11"],
            Rates {
                packets: Some(50.0),
                bytes: Some(5000.0),
                new_flows: Some(2.5)
            }
        );
    }

    #[test]
    fn no_earlier_sample_or_no_time_gives_no_rate() {
        let t0 = Instant::now();
        let s = Sample::new(t0, vec![service("a", traffic(5, 5, 5), &[])]);
        assert_eq!(rates(None, &s)[0].total, Rates::NONE);
        // The same instant twice: no time passed, no rate (not infinity).
        assert_eq!(rates(Some(&s), &s)[0].total, Rates::NONE);
        // An older "now" than "before" (a clock gone backwards) likewise.
        let later = Sample::new(t0 + Duration::from_secs(1), vec![]);
        let earlier = Sample::new(t0, vec![service("a", traffic(9, 9, 9), &[])]);
        assert_eq!(rates(Some(&later), &earlier)[0].total, Rates::NONE);
    }

    #[test]
    fn unchanged_counters_are_a_rate_of_zero() {
        let t0 = Instant::now();
        let a = Sample::new(t0, vec![service("a", traffic(5, 500, 1), &[])]);
        let b = Sample::new(
            t0 + Duration::from_secs(1),
            vec![service("a", traffic(5, 500, 1), &[])],
        );
        assert_eq!(
            rates(Some(&a), &b)[0].total,
            Rates {
                packets: Some(0.0),
                bytes: Some(0.0),
                new_flows: Some(0.0)
            }
        );
    }

    /// lbd restarted: counters smaller than before are no rate for this
    /// interval (not a negative or wrapped one), and rates again after.
    #[test]
    fn counters_that_went_down_give_no_rate_then_rates_again() {
        let t0 = Instant::now();
        let s = |secs, p, b, f, bp| {
            Sample::new(
                t0 + Duration::from_secs(secs),
                vec![service(
                    "a",
                    traffic(p, b, f),
                    &[("198.18.0.11", traffic(bp, bp * 100, 1))],
                )],
            )
        };
        let before = s(0, 1_000_000, 100_000_000, 5000, 900_000);
        // Only the bytes went down (and packets grew): still a restart.
        let after = s(1, 1_000_050, 3_000, 5010, 20);
        let r = rates(Some(&before), &after);
        assert_eq!(r[0].total, Rates::NONE);
        assert_eq!(r[0].backends["198.18.0.11"], Rates::NONE);
        let next = s(2, 1_000_150, 13_000, 5020, 70);
        let r = rates(Some(&after), &next);
        assert_eq!(r[0].total.packets, Some(100.0));
        assert_eq!(r[0].total.bytes, Some(10_000.0));
        assert_eq!(r[0].backends["198.18.0.11"].packets, Some(50.0));
    }

    #[test]
    fn services_and_backends_appearing_or_going() {
        let t0 = Instant::now();
        let a = Sample::new(
            t0,
            vec![
                service("gone", traffic(1, 1, 1), &[]),
                service(
                    "kept",
                    traffic(10, 10, 10),
                    &[("old", traffic(5, 5, 5)), ("stays", traffic(5, 5, 5))],
                ),
            ],
        );
        let b = Sample::new(
            t0 + Duration::from_secs(1),
            vec![
                service(
                    "kept",
                    traffic(20, 20, 20),
                    &[("stays", traffic(9, 9, 9)), ("new", traffic(3, 3, 3))],
                ),
                service("fresh", traffic(7, 7, 7), &[]),
            ],
        );
        let r = rates(Some(&a), &b);
        let names: Vec<&str> = r.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["fresh", "kept"], "the gone service is not listed");
        assert_eq!(r[0].total, Rates::NONE, "a new service has no rate yet");
        let kept = &r[1];
        assert_eq!(kept.total.packets, Some(10.0));
        assert_eq!(
            kept.backends.keys().map(String::as_str).collect::<Vec<_>>(),
            ["new", "stays"]
        );
        assert_eq!(kept.backends["new"], Rates::NONE);
        assert_eq!(kept.backends["stays"].packets, Some(4.0));
    }

    #[test]
    fn rates_serialize_with_units_and_null_for_none() {
        let r = Rates {
            packets: Some(1.5),
            bytes: None,
            new_flows: Some(0.0),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"packets_per_s":1.5,"bytes_per_s":null,"new_flows_per_s":0.0}"#
        );
    }

    #[test]
    fn numbers_for_people() {
        let cases = [
            (None, "-"),
            (Some(0.0), "0"),
            (Some(-3.0), "0"),
            (Some(0.31), "0.3"),
            (Some(7.5), "7.5"),
            (Some(99.94), "99.9"),
            (Some(99.96), "100"),
            (Some(999.7), "1.0k"),
            (Some(9960.0), "10k"),
            (Some(999_600.0), "1.0M"),
            (Some(100.0), "100"),
            (Some(950.4), "950"),
            (Some(1000.0), "1.0k"),
            (Some(1234.0), "1.2k"),
            (Some(34_000.0), "34k"),
            (Some(999_960.0), "1.0M"),
            (Some(3_400_000.0), "3.4M"),
            (Some(5.6e9), "5.6G"),
            (Some(7.8e12), "7.8T"),
            (Some(7.8e15), "7800T"),
        ];
        for (v, want) in cases {
            assert_eq!(human(v), want, "{v:?}");
        }
    }
}
