//! Counting: what each sensor sent, by class, and what was confirmed; the
//! [`SimSummary`] of a run.

use std::collections::BTreeMap;

use crate::config::Refusal;
use crate::generator::{Class, Fault};

/// The outcome of a run.
///
/// When `lost == 0` and `reconnects == 0` (always so when `errors == 0`;
/// failed attempts while connecting, before anything is published, count in
/// `errors` but do not matter) the broker received exactly `sent` messages:
/// `valid` that validation accepts, making `records` engine records, and
/// `malformed` that it refuses, by reason code in `malformed_by_reason`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimSummary {
    /// Sensors (connections).
    pub sensors: usize,
    /// Messages published (accepted by the MQTT clients).
    pub sent: u64,
    /// Of those, valid messages.
    pub valid: u64,
    /// Of those, deliberately invalid messages.
    pub malformed: u64,
    /// Invalid messages by [`Fault::code`]; reasons never sent are absent.
    pub malformed_by_reason: BTreeMap<String, u64>,
    /// QoS 1 acknowledgements received; equals `sent` on a clean QoS 1 run.
    pub acked: u64,
    /// The QoS used.
    pub qos: u8,
    /// Connection and publish errors (a failed reconnect attempt counts).
    pub errors: u64,
    /// Reconnect attempts after a connection was lost mid-run.
    pub reconnects: u64,
    /// Reconnects the broker refused in its CONNACK (each ends its sensor;
    /// also counted in `errors`). Refusals while connecting at the start
    /// are not here: they fail the run with `SimError::Refused`.
    pub refused: u64,
    /// `refused` by CONNACK code and name, e.g. `"0x05 not authorized"`;
    /// codes never seen are absent.
    pub refused_by_code: BTreeMap<String, u64>,
    /// Messages sent but never confirmed written (QoS 0) or acknowledged
    /// (QoS 1), because of connection errors; 0 on a clean run.
    pub lost: u64,
    /// Seconds from the moment all sensors were connected until the last
    /// one had its messages confirmed and disconnected.
    pub duration_s: f64,
    /// Messages per second achieved (`sent / duration_s`).
    pub rate: f64,
    /// Engine records the valid messages produce: 1 per temperature or
    /// humidity message, 2 per reading message.
    pub records: u64,
}

/// The key of a refusal in [`SimSummary::refused_by_code`].
pub(crate) fn refusal_key(r: &Refusal) -> String {
    format!("{:#04x} {}", r.code, r.reason)
}

/// Per-sensor (and total) counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(crate) sent: u64,
    pub(crate) valid: u64,
    pub(crate) records: u64,
    pub(crate) malformed: [u64; Fault::ALL.len()],
    pub(crate) written: u64,
    pub(crate) acked: u64,
    pub(crate) lost: u64,
    pub(crate) errors: u64,
    pub(crate) reconnects: u64,
    pub(crate) refused: BTreeMap<String, u64>,
}

impl Tally {
    pub(crate) fn count(&mut self, class: Class) {
        self.sent += 1;
        match class {
            Class::Valid { records } => {
                self.valid += 1;
                self.records += u64::from(records);
            }
            Class::Malformed(r) => {
                if let Some(i) = Fault::ALL.iter().position(|x| *x == r) {
                    self.malformed[i] += 1;
                }
            }
        }
    }

    pub(crate) fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.valid += o.valid;
        self.records += o.records;
        for (a, b) in self.malformed.iter_mut().zip(o.malformed) {
            *a += b;
        }
        self.written += o.written;
        self.acked += o.acked;
        self.lost += o.lost;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
    }

    pub(crate) fn summary(&self, sensors: usize, qos: u8, duration_s: f64) -> SimSummary {
        let malformed_by_reason: BTreeMap<String, u64> = Fault::ALL
            .iter()
            .zip(self.malformed)
            .filter(|(_, c)| *c > 0)
            .map(|(r, c)| (r.code().to_owned(), c))
            .collect();
        SimSummary {
            sensors,
            sent: self.sent,
            valid: self.valid,
            malformed: self.malformed.iter().sum(),
            malformed_by_reason,
            acked: self.acked,
            qos,
            errors: self.errors,
            reconnects: self.reconnects,
            refused: self.refused.values().sum(),
            refused_by_code: self.refused.clone(),
            lost: self.lost,
            duration_s,
            rate: if duration_s > 0.0 {
                self.sent as f64 / duration_s
            } else {
                0.0
            },
            records: self.records,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{Fleet, Format, Generator};

    #[test]
    fn summary_adds_up() {
        for format in [Format::Bare, Format::Json, Format::Reading, Format::Mixed] {
            let fleet = Fleet::new("sim", 4, 7);
            let ids: Vec<String> = fleet.ids().map(str::to_owned).collect();
            let fleet = Arc::new(Mutex::new(fleet));
            let mut tally = Tally::default();
            for (i, id) in ids.iter().enumerate() {
                let mut g = Generator::new(i, id.clone(), format, 0.3, 7, Arc::clone(&fleet));
                for _ in 0..2_000 {
                    tally.count(g.next_message().class);
                }
            }
            let s = tally.summary(4, 0, 1.0);
            assert_eq!(s.valid + s.malformed, s.sent);
            assert_eq!(s.sent, 8_000);
            assert_eq!(s.malformed_by_reason.values().sum::<u64>(), s.malformed);
            assert_eq!(s.malformed_by_reason.len(), Fault::ALL.len(), "{format}");
        }
    }
}
