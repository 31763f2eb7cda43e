//! telering's ring core (`telering::ring::spsc_with`), in both slot layouts:
//! one `Writer::publish` per record or `Writer::publish_with` batches of
//! [`BATCH`], the reader taking what is available in place
//! (`Reader::read_with`).

use std::time::Duration;

use telering::ring::{self, OverflowPolicy, SlotLayout};
use telering::Reading;

use super::{check_each, job, rec, run_pinned, template, Idle, Pins, BATCH, CAPACITY, READ_MAX};

/// telering ring, one `Writer::publish` per record; the reader takes what is
/// available in place (`Reader::read_with`, up to [`READ_MAX`]).
pub fn telering_single(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, false, SlotLayout::Packed)
}

/// telering ring, `Writer::publish_with(256, ..)` per batch.
pub fn telering_batch(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, true, SlotLayout::Packed)
}

/// [`telering_single`] on a ring with the marked slot layout.
pub fn telering_single_marked(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, false, SlotLayout::Marked)
}

/// [`telering_batch`] on a ring with the marked slot layout.
pub fn telering_batch_marked(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, true, SlotLayout::Marked)
}

fn telering_spsc(n: u64, pins: &Pins, batch: bool, layout: SlotLayout) -> Duration {
    let (mut w, mut r) =
        ring::spsc_with::<Reading>(CAPACITY, OverflowPolicy::Block, layout).expect("ring capacity");
    let tmpl = template();
    let idle = Idle::for_threads(pins, 2);
    let (t, sums) = run_pinned(
        pins,
        vec![
            job(move || {
                if batch {
                    let mut i = 0;
                    while i < n {
                        let k = (n - i).min(BATCH as u64) as usize;
                        let got = w
                            .publish_with(k, |j| rec(&tmpl, i + j as u64))
                            .expect("telering publish_with");
                        i += got as u64;
                    }
                } else {
                    for i in 0..n {
                        w.publish(rec(&tmpl, i)).expect("telering publish");
                    }
                }
                0u64
            }),
            job(move || {
                let idler = idle.idler();
                let mut sum = 0u64;
                let mut got = 0u64;
                while got < n {
                    let k = r.read_with(READ_MAX, |_, v| sum = sum.wrapping_add(v.ts_us));
                    if k == 0 {
                        idler.idle();
                    } else {
                        got += k as u64;
                        idler.reset();
                    }
                }
                sum
            }),
        ],
    );
    check_each("telering", n, &sums[1..]);
    t
}
