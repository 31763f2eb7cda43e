//! One sensor: its publishing loop (rate, quota, stop), the task driving
//! its event loop (reconnects), and the drain and DISCONNECT at the end
//! that make the accounting exact.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{Client, Ev, EventLoop, PollError};
use crate::config::{CLOSE_TIMEOUT, DRAIN_STALL_TIMEOUT, RECONNECT_WINDOW};
use crate::generator::Generator;
use crate::tally::{refusal_key, Tally};

/// What the event-loop task reports to the publisher.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    written: u64,
    acked: u64,
    /// Messages dropped unsent at a reconnect (clean session).
    dropped: u64,
    /// The event loop gave up (it could not reconnect).
    dead: bool,
}

#[derive(Debug, Default)]
struct DriverOutcome {
    written: u64,
    acked: u64,
    errors: u64,
    reconnects: u64,
    /// Refused reconnects by code (at most one: a refusal ends the loop).
    refused: BTreeMap<String, u64>,
}

/// Drives the event loop until the broker closes after our DISCONNECT, or
/// until it gives up reconnecting: after [`RECONNECT_WINDOW`] without a
/// connection, or at once once the run is over (`stop` or `end`), or the
/// broker refuses the reconnect in its CONNACK.
async fn drive(
    mut eventloop: EventLoop,
    progress: watch::Sender<Progress>,
    mut stop: Option<watch::Receiver<bool>>,
    end: Option<Instant>,
) -> DriverOutcome {
    let mut out = DriverOutcome::default();
    let mut disconnecting = false;
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let ev = if disconnecting {
            match tokio::time::timeout(CLOSE_TIMEOUT, eventloop.poll()).await {
                Ok(ev) => ev,
                Err(_) => break,
            }
        } else {
            eventloop.poll().await
        };
        match ev {
            Ok(Ev::Written) => {
                out.written += 1;
                progress.send_modify(|p| p.written += 1);
            }
            Ok(Ev::PubAck) => {
                out.acked += 1;
                progress.send_modify(|p| p.acked += 1);
            }
            Ok(Ev::ConnAck { dropped }) => {
                down_since = None;
                backoff = Duration::from_millis(50);
                if dropped > 0 {
                    tracing::warn!(dropped, "reconnected; unsent messages were dropped");
                    progress.send_modify(|p| p.dropped += dropped);
                }
            }
            Ok(Ev::DisconnectSent) => disconnecting = true,
            Ok(Ev::Other) => {}
            // The broker closing the connection after our DISCONNECT.
            Err(_) if disconnecting => break,
            Err(PollError::Refused(r)) => {
                // The same CONNECT would be refused again: give up.
                out.errors += 1;
                *out.refused.entry(refusal_key(&r)).or_default() += 1;
                tracing::error!(refusal = %r, "reconnect refused by the broker; giving up");
                break;
            }
            Err(PollError::Other(e) | PollError::Tls(e)) => {
                out.errors += 1;
                let down = *down_since.get_or_insert_with(Instant::now);
                let over = stop_requested(&stop) || end.is_some_and(|e| Instant::now() >= e);
                if over || down.elapsed() >= RECONNECT_WINDOW {
                    tracing::warn!(error = %e, "connection lost; giving up");
                    break;
                }
                tracing::warn!(error = %e, "connection lost; reconnecting");
                out.reconnects += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop_signal(&mut stop) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    progress.send_modify(|p| p.dead = true);
    out
}

/// When and how much one sensor publishes.
pub(crate) struct Plan {
    pub(crate) qos: u8,
    pub(crate) quota: Option<u64>,
    pub(crate) end: Option<Instant>,
    pub(crate) period: Option<Duration>,
    pub(crate) first: Instant,
}

/// Resolves when `stop` becomes true; never if there is none or its sender
/// is gone.
async fn stop_signal(stop: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = stop {
        if rx.wait_for(|s| *s).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

fn stop_requested(stop: &Option<watch::Receiver<bool>>) -> bool {
    stop.as_ref().is_some_and(|rx| *rx.borrow())
}

/// Waits until `done(progress)`, as long as the event loop keeps making
/// progress (at most [`DRAIN_STALL_TIMEOUT`] between updates). False if it
/// stalled or the event loop gave up.
async fn drain(progress: &mut watch::Receiver<Progress>, done: impl Fn(&Progress) -> bool) -> bool {
    loop {
        // Copy out: the `Ref` locks the channel against the event loop.
        let p = *progress.borrow_and_update();
        if done(&p) {
            return true;
        }
        if p.dead {
            return false;
        }
        match tokio::time::timeout(DRAIN_STALL_TIMEOUT, progress.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return done(&progress.borrow()),
        }
    }
}

pub(crate) async fn sensor(
    client: Client,
    eventloop: EventLoop,
    mut generator: Generator,
    plan: Plan,
    mut stop: Option<watch::Receiver<bool>>,
) -> Tally {
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let driver = tokio::spawn(drive(eventloop, progress_tx, stop.clone(), plan.end));
    let mut tally = Tally::default();

    let mut k = 0u64;
    loop {
        if plan.quota.is_some_and(|q| k >= q) || stop_requested(&stop) {
            break;
        }
        if let Some(period) = plan.period {
            let Some(due) = Duration::try_from_secs_f64(period.as_secs_f64() * k as f64)
                .ok()
                .and_then(|d| plan.first.checked_add(d))
            else {
                break;
            };
            if plan.end.is_some_and(|end| due >= end) {
                break;
            }
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop_signal(&mut stop) => break,
                }
            }
        }
        if plan.end.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let msg = generator.next_message();
        // Not raced against the stop signal: a cancelled send may still
        // have handed the message over, which would spoil the accounting.
        match client.publish(msg.topic, plan.qos, msg.payload).await {
            Ok(()) => tally.count(msg.class),
            Err(e) => {
                // The event loop is gone (it gave up reconnecting).
                tracing::warn!(error = %e, "publish failed");
                tally.errors += 1;
                break;
            }
        }
        k += 1;
    }

    // Wait until everything sent is on the wire (QoS 0) or acknowledged
    // (QoS 1), then disconnect.
    let sent = tally.sent;
    let qos = plan.qos;
    let confirmed = |p: &Progress| if qos == 0 { p.written } else { p.acked };
    let drained = drain(&mut progress, |p| confirmed(p) + p.dropped >= sent).await;
    if !drained {
        let p = *progress.borrow();
        tracing::warn!(
            sent,
            confirmed = confirmed(&p),
            "sensor could not confirm all its messages"
        );
    }
    if let Err(e) = client.try_disconnect() {
        tracing::debug!(error = %e, "could not request DISCONNECT");
    }
    let mut driver = driver;
    let outcome = match tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut driver).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "event loop task failed");
            tally.errors += 1;
            let p = *progress.borrow();
            DriverOutcome {
                written: p.written,
                acked: p.acked,
                ..DriverOutcome::default()
            }
        }
        Err(_) => {
            driver.abort();
            tracing::warn!("event loop did not finish after DISCONNECT");
            tally.errors += 1;
            let p = *progress.borrow();
            DriverOutcome {
                written: p.written,
                acked: p.acked,
                ..DriverOutcome::default()
            }
        }
    };
    tally.written = outcome.written;
    tally.acked = outcome.acked;
    tally.errors += outcome.errors;
    tally.reconnects = outcome.reconnects;
    tally.refused = outcome.refused;
    let confirmed = if qos == 0 {
        outcome.written
    } else {
        outcome.acked
    };
    tally.lost = sent.saturating_sub(confirmed);
    drop(client);
    tally
}
