//! rtrb, the wait-free SPSC ring: `push`/`pop` or chunks, and two rings for
//! the one-to-two scenarios (the producer pushes to both, or alternates).

use std::time::Duration;

use telering::Reading;

use super::{
    check_each, check_total, job, rec, run_pinned, share, template, Idle, Job, Pins, BATCH,
    CAPACITY, READ_MAX,
};

/// rtrb `push`/`pop`, one record at a time.
pub fn rtrb_single(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 1, true, false)
}

/// rtrb chunks: `write_chunk_uninit(256).fill_from_iter(..)`, and the reader
/// takes what is available in place with `read_chunk`.
pub fn rtrb_chunks(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 1, true, true)
}

/// Two rtrb rings; the producer pushes every record into both.
pub fn rtrb_broadcast(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 2, true, false)
}

/// Two rtrb rings; the producer alternates between them (partitions).
pub fn rtrb_cluster(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 2, false, false)
}

fn rtrb_run(n: u64, pins: &Pins, rings: usize, every: bool, chunks: bool) -> Duration {
    let idle = Idle::for_threads(pins, rings + 1);
    let tmpl = template();
    let (mut producers, consumers): (Vec<_>, Vec<_>) = (0..rings)
        .map(|_| rtrb::RingBuffer::<Reading>::new(CAPACITY))
        .unzip();
    let mut jobs: Vec<Job<'_, u64>> = vec![job(move || {
        let idler = idle.idler();
        let push = |p: &mut rtrb::Producer<Reading>, v: Reading| {
            let mut v = v;
            loop {
                match p.push(v) {
                    Ok(()) => break,
                    Err(rtrb::PushError::Full(back)) => {
                        v = back;
                        idler.idle();
                    }
                }
            }
            idler.reset();
        };
        if chunks {
            let p = &mut producers[0];
            let mut i = 0;
            while i < n {
                let k = (n - i).min(BATCH as u64) as usize;
                match p.write_chunk_uninit(k) {
                    Ok(chunk) => {
                        chunk.fill_from_iter((i..i + k as u64).map(|x| rec(&tmpl, x)));
                        i += k as u64;
                        idler.reset();
                    }
                    Err(_) => idler.idle(),
                }
            }
        } else if every {
            for i in 0..n {
                let v = rec(&tmpl, i);
                for p in producers.iter_mut() {
                    push(p, v);
                }
            }
        } else {
            let mut j = 0;
            for i in 0..n {
                push(&mut producers[j], rec(&tmpl, i));
                j += 1;
                if j == rings {
                    j = 0;
                }
            }
        }
        0
    })];
    for (j, mut c) in consumers.into_iter().enumerate() {
        let want = if every { n } else { share(n, rings, j) };
        jobs.push(job(move || {
            let idler = idle.idler();
            let mut sum = 0u64;
            let mut got = 0u64;
            if chunks {
                while got < want {
                    let avail = c.slots().min(READ_MAX);
                    if avail == 0 {
                        idler.idle();
                        continue;
                    }
                    let chunk = c.read_chunk(avail).expect("slots() were available");
                    let (a, b) = chunk.as_slices();
                    for v in a.iter().chain(b) {
                        sum = sum.wrapping_add(v.ts_us);
                    }
                    got += avail as u64;
                    chunk.commit_all();
                    idler.reset();
                }
            } else {
                while got < want {
                    match c.pop() {
                        Ok(v) => {
                            sum = sum.wrapping_add(v.ts_us);
                            got += 1;
                            idler.reset();
                        }
                        Err(_) => idler.idle(),
                    }
                }
            }
            sum
        }));
    }
    let (t, sums) = run_pinned(pins, jobs);
    if every {
        check_each("rtrb", n, &sums[1..]);
    } else {
        check_total("rtrb", n, &sums[1..]);
    }
    t
}
