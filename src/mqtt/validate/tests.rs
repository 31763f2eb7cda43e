//! Validation outcomes, the topic split, the reason codes, and the fast path
//! pinned to the serde_json reference.

use super::*;
use crate::record::{DeviceId, DeviceIdError};

fn v(topic: &str, payload: &[u8]) -> Result<Accepted, Reason> {
    validate(topic.as_bytes(), payload, &Limits::default(), 42)
}

#[test]
fn accepts_the_three_formats() {
    let a = v("sensors/dev-1/temperature", b"21.5").unwrap();
    assert_eq!(a.metric, Metric::Temperature);
    assert_eq!(a.reading.temperature, 21.5);
    assert!(a.reading.humidity.is_nan());
    assert_eq!(a.reading.ts_us, 42);
    assert_eq!(a.reading.device.as_str(), "dev-1");
    let a = v(
        "sensors/d/humidity",
        br#"{"ts": 1700000000000000, "value": 55}"#,
    )
    .unwrap();
    assert_eq!(
        (a.reading.humidity, a.reading.ts_us),
        (55.0, 1_700_000_000_000_000)
    );
    let a = v("sensors/d/humidity", br#"{"value": 0}"#).unwrap();
    assert_eq!(a.reading.ts_us, 42);
    let a = v(
        "sensors/d/reading",
        br#"{"ts": 7, "temperature": -40, "humidity": 100}"#,
    )
    .unwrap();
    assert_eq!(a.metric, Metric::Reading);
    assert_eq!((a.reading.temperature, a.reading.humidity), (-40.0, 100.0));
    assert!(v("sensors/d/temperature", b" 125 \n").is_ok());
    let a = v(
        "sensors/d/temperature",
        br#"{"value": 20, "unit": "C", "battery": 91}"#,
    )
    .unwrap();
    assert_eq!(a.reading.temperature, 20.0);
}

#[test]
fn refuses_with_reasons() {
    use Reason::*;
    let cases: &[(&str, &[u8], Reason)] = &[
        ("sensors/d/temperature", b"\xff\xfe", NotUtf8),
        ("sensors/d/temperature", b"warm", NotJson),
        ("sensors/d/temperature", b"{\"value\": ", NotJson),
        ("sensors/d/temperature", b"{\"valu\": 1}", MissingValue),
        ("sensors/d/temperature", b"[1]", NotJson),
        ("sensors/d/temperature", b"NaN", NotFinite),
        ("sensors/d/temperature", b"inf", NotFinite),
        ("sensors/d/humidity", b"-infinity", NotFinite),
        ("sensors/d/temperature", b"125.01", TemperatureOutOfRange),
        ("sensors/d/temperature", b"-40.5", TemperatureOutOfRange),
        ("sensors/d/humidity", b"100.5", HumidityOutOfRange),
        ("sensors/d/humidity", b"-1", HumidityOutOfRange),
        ("sensors/d/pressure", b"1", UnknownMetric),
        ("sensors//temperature", b"1", DeviceIdEmpty),
        (
            "sensors/abcdefghijklmnopq/temperature",
            b"1",
            DeviceIdTooLong,
        ),
        ("other/d/temperature", b"1", UnknownTopic),
        ("sensors/d/temperature/x", b"1", UnknownTopic),
        ("sensors/d", b"1", UnknownTopic),
        (
            "sensors/d/temperature",
            b"{\"ts\": -1, \"value\": 1}",
            BadTimestamp,
        ),
        (
            "sensors/d/temperature",
            b"{\"ts\": 1.5, \"value\": 1}",
            BadTimestamp,
        ),
        ("sensors/d/temperature", b"{\"value\": \"1\"}", MissingValue),
        ("sensors/d/reading", b"{\"temperature\": 1}", MissingValue),
        (
            "sensors/d/reading",
            b"{\"temperature\": 1, \"humidity\": 1e999}",
            NotJson,
        ),
        ("sensors/d/reading", b"12", NotJson),
    ];
    for (topic, payload, want) in cases {
        assert_eq!(
            v(topic, payload).map(|_| ()),
            Err(*want),
            "{topic} {payload:?}"
        );
    }
    let big = vec![b'1'; DEFAULT_MAX_PAYLOAD + 1];
    assert_eq!(
        v("sensors/d/temperature", &big).map(|_| ()),
        Err(PayloadTooLarge)
    );
}

#[test]
fn topic_levels_are_checked_exactly() {
    let cases: [(&str, Result<Metric, Reason>); 10] = [
        ("sensors/a/temperature", Ok(Metric::Temperature)),
        ("sensors/a/reading", Ok(Metric::Reading)),
        ("sensors/a/b/temperature", Err(Reason::UnknownTopic)),
        ("sensors/a/temperature/", Err(Reason::UnknownTopic)),
        ("sensors/a", Err(Reason::UnknownTopic)),
        ("sensors/", Err(Reason::UnknownTopic)),
        ("/sensors/a/temperature", Err(Reason::UnknownTopic)),
        ("sensorsX/a/temperature", Err(Reason::UnknownTopic)),
        ("sensors/a/", Err(Reason::UnknownMetric)),
        ("sensors//humidity", Err(Reason::DeviceIdEmpty)),
    ];
    for (topic, want) in cases {
        let got = parse_topic(topic.as_bytes()).map(|(_, m)| m);
        assert_eq!(got, want, "{topic}");
    }
    // Not UTF-8 comes before the other reasons.
    for topic in [
        &b"sensors/\xff/temperature"[..],
        b"sensors/\xff/pressure",
        b"sensors/d/\xff",
        b"sensors/\xff/temp\xff",
        b"sensors//\xff",
    ] {
        assert_eq!(parse_topic(topic), Err(Reason::UnknownTopic), "{topic:?}");
    }
}

/// The topic split as it was written on `str` (a whole-topic UTF-8
/// check first), to compare the byte-level one with.
fn parse_topic_on_str(topic: &[u8]) -> Result<(DeviceId, Metric), Reason> {
    let topic = std::str::from_utf8(topic).map_err(|_| Reason::UnknownTopic)?;
    let (device, metric) = topic
        .strip_prefix("sensors/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(_, metric)| !metric.contains('/'))
        .ok_or(Reason::UnknownTopic)?;
    let metric = match metric {
        "temperature" => Metric::Temperature,
        "humidity" => Metric::Humidity,
        "reading" => Metric::Reading,
        _ => return Err(Reason::UnknownMetric),
    };
    let device = DeviceId::new(device).map_err(|e| match e {
        DeviceIdError::Empty => Reason::DeviceIdEmpty,
        DeviceIdError::TooLong(_) | DeviceIdError::Nul => Reason::DeviceIdTooLong,
    })?;
    Ok((device, metric))
}

fn topic_levels() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let level = prop_oneof![
        4 => proptest::sample::select(&[
            "sensors", "temperature", "humidity", "reading", "dev-1", "sim-0",
            "sixteen-bytes-id", "seventeen-bytes-x", "", "pressure", "Sensors",
            "reading ", "wide-\u{e9}", "\0", "a\0b",
        ][..])
        .prop_map(|l| l.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..6),
        1 => proptest::collection::vec(
            proptest::sample::select(b"/sensor\xff\xc3\xa9\x80".to_vec()),
            0..10,
        ),
    ];
    prop_oneof![
        proptest::collection::vec(level.clone(), 0..5),
        (level.clone(), level).prop_map(|(d, m)| vec![b"sensors".to_vec(), d, m]),
    ]
    .prop_map(|levels| levels.join(&b'/'))
}

proptest::proptest! {
    #[test]
    fn parse_topic_matches_the_str_split(topic in topic_levels()) {
        let key = |r: Result<(DeviceId, Metric), Reason>| {
            r.map(|(d, m)| (d.as_bytes().to_vec(), m))
        };
        proptest::prop_assert_eq!(key(parse_topic(&topic)), key(parse_topic_on_str(&topic)));
    }
}

#[test]
fn codes_round_trip() {
    for r in Reason::ALL {
        assert_eq!(Reason::from_code(r.code()), Some(r));
        assert!(!r.describe().is_empty());
    }
}

proptest::proptest! {
    #[test]
    fn never_panics(topic in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                    payload in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
        let _ = validate(&topic, &payload, &Limits::default(), 0);
    }

    #[test]
    fn accepted_values_are_in_range(t in -100.0f64..200.0, h in -50.0f64..150.0) {
        let p = format!("{{\"temperature\": {t}, \"humidity\": {h}}}");
        match v("sensors/x/reading", p.as_bytes()) {
            Ok(a) => {
                proptest::prop_assert!((-40.0..=125.0).contains(&a.reading.temperature));
                proptest::prop_assert!((0.0..=100.0).contains(&a.reading.humidity));
            }
            Err(r) => proptest::prop_assert!(matches!(r, Reason::TemperatureOutOfRange | Reason::HumidityOutOfRange)),
        }
    }
}

/// The fast path against the serde_json-only reference.
mod fast_path {
    use std::cell::Cell;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    use super::super::fast::{self, Fields};
    use super::super::*;

    /// An outcome with the floats as bits (so NaN and the sign of zero
    /// compare too) and whether the clock was read.
    type Outcome = (Result<(Metric, u64, u32, u32, String), Reason>, bool);

    fn run(
        f: impl FnOnce(&[u8], &[u8], &Limits, &dyn Fn() -> u64) -> Result<Accepted, Reason>,
        topic: &str,
        payload: &[u8],
    ) -> Outcome {
        let clock_read = Cell::new(false);
        let now = || {
            clock_read.set(true);
            42
        };
        let got = f(topic.as_bytes(), payload, &Limits::default(), &now).map(|a| {
            let r = a.reading;
            (
                a.metric,
                r.ts_us,
                r.temperature.to_bits(),
                r.humidity.to_bits(),
                r.device.as_str().to_owned(),
            )
        });
        (got, clock_read.get())
    }

    /// `(fast, reference)` for one message.
    fn both(topic: &str, payload: &[u8]) -> (Outcome, Outcome) {
        let fast = run(|t, p, l, now| validate_with(t, p, l, now), topic, payload);
        let reference = run(
            |t, p, l, now| validate_with_serde_only(t, p, l, now),
            topic,
            payload,
        );
        (fast, reference)
    }

    const TOPICS: [&str; 3] = [
        "sensors/d/temperature",
        "sensors/d/humidity",
        "sensors/d/reading",
    ];

    fn check_same(payload: &[u8]) -> Result<(), TestCaseError> {
        for topic in TOPICS {
            let (fast, reference) = both(topic, payload);
            prop_assert_eq!(
                fast,
                reference,
                "{} {:?}",
                topic,
                String::from_utf8_lossy(payload)
            );
        }
        Ok(())
    }

    /// The payloads of src/mqtt/sim.rs (`valid_message`): f32 readings
    /// with two decimals, `ts` in µs.
    fn sim_value(ts: u64, x: f32) -> String {
        format!(r#"{{"ts": {ts}, "value": {x:.2}}}"#)
    }

    fn sim_reading(ts: u64, t: f32, h: f32) -> String {
        format!(r#"{{"ts": {ts}, "temperature": {t:.2}, "humidity": {h:.2}}}"#)
    }

    #[test]
    fn simulator_payloads_take_the_fast_path() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 11
        };
        let unit = |x: u64| x as f64 / (1u64 << 53) as f64;
        for i in 0..20_000 {
            let ts = 1_700_000_000_000_000 + next() % 100_000_000_000_000;
            let t = (-60.0 + 200.0 * unit(next())) as f32;
            let h = (-20.0 + 140.0 * unit(next())) as f32;
            let (t, h) = if i == 0 { (-0.001, 0.004) } else { (t, h) };
            let parsed = |x: f32| format!("{x:.2}").parse::<f64>().unwrap();
            let p = sim_value(ts, t);
            assert_eq!(
                fast::fields(p.as_bytes(), fast::VALUE),
                Some(Fields {
                    ts: Some(ts),
                    values: [Some(parsed(t))],
                }),
                "{p}"
            );
            check_same(p.as_bytes()).unwrap();
            let p = sim_reading(ts, t, h);
            assert_eq!(
                fast::fields(p.as_bytes(), fast::READING),
                Some(Fields {
                    ts: Some(ts),
                    values: [Some(parsed(t)), Some(parsed(h))],
                }),
                "{p}"
            );
            check_same(p.as_bytes()).unwrap();
        }
    }

    #[test]
    fn fast_path_answers_exactly_where_it_is_certain() {
        let value = |p: &str| fast::fields(p.as_bytes(), fast::VALUE);
        let ts = |p: &str| value(p).map(|f| f.ts);
        let num = |p: &str| value(p).map(|f| f.values[0].map(f64::to_bits));
        let bits = |x: f64| Some(Some(x.to_bits()));
        // Taken.
        assert_eq!(ts(r#"{"ts":0,"value":1}"#), Some(Some(0)));
        assert_eq!(
            ts(r#"{"ts": 18446744073709551615, "value": 1}"#),
            Some(Some(u64::MAX))
        );
        assert_eq!(ts(r#"{"value":1}"#), Some(None));
        assert_eq!(num(r#"{"value": -0}"#), bits(-0.0));
        assert_eq!(num(r#"{"value": -0.00}"#), bits(-0.0));
        assert_eq!(num(r#"{"value": 1E+2}"#), bits(100.0));
        assert_eq!(num(r#"{"value": 0.05e1}"#), bits(0.5));
        assert_eq!(
            num(r#"{"value": 9007199254740992}"#),
            bits(9_007_199_254_740_992.0)
        );
        assert_eq!(num(r#"{"value": 1e22}"#), bits(1e22));
        assert_eq!(num(r#"{"value": 1e-22}"#), bits(1e-22));
        assert_eq!(num("{\r\n\t\"value\" :\t21.53 \n}"), bits(21.53));
        assert_eq!(
            num(r#"{"unit": 1e999, "value": 2, "x": -0.5E-7}"#),
            bits(2.0)
        );
        assert_eq!(num(r#"{"temperature": 5, "value": 2}"#), bits(2.0));
        assert_eq!(num(r#"{}"#), Some(None));
        // Left to serde_json.
        for p in [
            r#"{"ts": 18446744073709551616, "value": 1}"#,
            r#"{"ts": -0, "value": 1}"#,
            r#"{"ts": -1, "value": 1}"#,
            r#"{"ts": 01, "value": 1}"#,
            r#"{"ts": 1.0, "value": 1}"#,
            r#"{"ts": 1e3, "value": 1}"#,
            r#"{"ts": null, "value": 1}"#,
            r#"{"ts": 1, "ts": 1, "value": 1}"#,
            r#"{"value": 1, "value": 1}"#,
            r#"{"t\u0073": 1, "value": 1}"#,
            r#"{"value": 9007199254740993}"#,
            r#"{"value": 1e23}"#,
            r#"{"value": 1e-23}"#,
            r#"{"value": 12345678901234567890}"#,
            r#"{"value": 0.12345678901234567890}"#,
            r#"{"value": 1e999}"#,
            r#"{"value": "1"}"#,
            r#"{"value": null}"#,
            r#"{"value": 1, "unit": "C"}"#,
            r#"{"value": 1, "x": [1]}"#,
            r#"{"value": 1,}"#,
            r#"{"value": 1} x"#,
            r#"{"value": 1."#,
            r#"{"value": 1.}"#,
            r#"{"value": .5}"#,
            r#"{"value": +1}"#,
            r#"{"value": 01}"#,
            r#"{"value": 1e}"#,
            "{\"value\":\u{a0}1}",
            "{\"val\tue\": 1}",
            r#"[1, 2]"#,
        ] {
            assert_eq!(value(p), None, "{p}");
            check_same(p.as_bytes()).unwrap();
        }
    }

    #[test]
    fn eight_digits_at_once() {
        let want = |b: &[u8]| {
            let d = b.get(..8)?;
            d.iter()
                .all(u8::is_ascii_digit)
                .then(|| std::str::from_utf8(d).unwrap().parse::<u64>().unwrap())
        };
        for base in [*b"12345678", *b"00000000", *b"99999999", *b"90000009"] {
            assert_eq!(fast::eight_digits(&base), want(&base));
            assert_eq!(fast::eight_digits(&base[..7]), None);
            for i in 0..8 {
                for byte in 0..=255u8 {
                    let mut b = base;
                    b[i] = byte;
                    assert_eq!(fast::eight_digits(&b), want(&b), "{b:?}");
                }
            }
        }
    }

    /// Numbers as devices might send them, and a few that are not.
    fn number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (-60.0f32..140.0).prop_map(|x| format!("{x:.2}")),
            2 => (-60.0f64..140.0).prop_map(|x| format!("{x}")),
            2 => ((-60.0f64..140.0), 0usize..24).prop_map(|(x, p)| format!("{x:.p$}")),
            1 => any::<f64>().prop_map(|x| format!("{x}")),
            1 => any::<f64>().prop_map(|x| format!("{x:e}")),
            1 => any::<f64>().prop_map(|x| format!("{x:E}")),
            1 => any::<i64>().prop_map(|x| x.to_string()),
            1 => ((1u64 << 53) - 4..(1u64 << 53) + 4).prop_map(|x| x.to_string()),
            1 => "-?[0-9]{1,22}(\\.[0-9]{0,22})?([eE][+-]?[0-9]{0,4})?",
            1 => select(&[
                "0", "-0", "-0.0", "0e999", "-0e-999", "1e22", "1e23", "1e-22",
                "1e-23", "125", "125.0", "125.00000000000001", "-40",
                "-40.000000000000001", "100", "1E2", "1e+2", "0.1", "1e308",
                "1e309", "4.9e-324", "2.2250738585072014e-308",
                "1.7976931348623157e308", "NaN", "Infinity", "null", "true",
                "false", "\"21.5\"", "[21.5]", "{}", "1.", ".5", "+1", "01", "-",
                "1e", "1e+", "0x10",
            ][..])
            .prop_map(str::to_owned),
        ]
    }

    fn ts_text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => (1_600_000_000_000_000u64..1_800_000_000_000_000).prop_map(|x| x.to_string()),
            1 => any::<u64>().prop_map(|x| x.to_string()),
            1 => any::<i64>().prop_map(|x| x.to_string()),
            1 => select(&[
                "0", "00", "01", "-0", "1.0", "1e3", "1E3", "0.0",
                "18446744073709551615", "18446744073709551616",
                "99999999999999999999999", "-1", "-9223372036854775808", "1.5",
                "null", "\"5\"", "true", "[]",
            ][..])
            .prop_map(str::to_owned),
            1 => number_text(),
        ]
    }

    /// Keys (with their quotes) that are not the shape's own, or are
    /// written so that only an escape-aware reader sees them.
    fn extra_key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => select(&[
                r#""unit""#, r#""battery""#, r#""t""#, r#""tss""#, r#""Ts""#,
                r#""value""#, r#""temperature""#, r#""humidity""#, r#""ts ""#,
                r#""""#, r#""é""#,
            ][..]),
            1 => select(&[
                r#""t\u0073""#, r#""valu\u0065""#, r#""humidit\u0079""#, r#""\"""#,
                "\"a\tb\"",
            ][..]),
        ]
        .prop_map(str::to_owned)
    }

    fn extra_value() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => number_text(),
            1 => select(&[
                r#""C""#, "null", "true", "[1, 2]", r#"{"a": 1}"#, r#""\u0041""#,
            ][..])
            .prop_map(str::to_owned),
        ]
    }

    #[derive(Debug, Clone)]
    enum Corruption {
        None,
        Truncate(Index),
        Replace(Index, u8),
        Insert(Index, u8),
        Delete(Index),
    }

    fn corruption() -> impl Strategy<Value = Corruption> {
        let byte = select(b"{}[]\":,.-+eE0123456789 \t\n\\ax\xff".to_vec());
        prop_oneof![
            12 => Just(Corruption::None),
            1 => any::<Index>().prop_map(Corruption::Truncate),
            2 => (any::<Index>(), byte.clone()).prop_map(|(i, b)| Corruption::Replace(i, b)),
            1 => (any::<Index>(), byte).prop_map(|(i, b)| Corruption::Insert(i, b)),
            1 => any::<Index>().prop_map(Corruption::Delete),
        ]
    }

    /// A JSON object for the value (`reading == false`) or the reading
    /// shape: fields present or not, extra and duplicate keys, keys
    /// shuffled, whitespace between all tokens, then maybe one
    /// corruption.
    fn payload(reading: bool) -> impl Strategy<Value = Vec<u8>> {
        let names: &'static [&'static str] = if reading {
            &["temperature", "humidity"]
        } else {
            &["value"]
        };
        // Mostly JSON whitespace; rarely whitespace that only `str::trim`
        // knows (fine around the object, not inside it).
        let ws = prop_oneof![
            100 => select(&["", "", "", "", " ", " ", "  ", "\n", "\t", "\r\n"][..]),
            1 => select(&["\u{a0}", "\x0c", "\u{2003}"][..]),
        ];
        (
            proptest::option::weighted(0.8, ts_text()),
            vec(proptest::option::weighted(0.95, number_text()), names.len()),
            vec((extra_key(), extra_value()), 0..2),
            proptest::option::weighted(0.1, (any::<Index>(), number_text())),
        )
            .prop_flat_map(move |(ts, values, extra, dup)| {
                let mut entries: Vec<(String, String)> = Vec::new();
                if let Some(ts) = ts {
                    entries.push((r#""ts""#.to_owned(), ts));
                }
                for (name, v) in names.iter().zip(values) {
                    if let Some(v) = v {
                        entries.push((format!("\"{name}\""), v));
                    }
                }
                if let Some((i, v)) = dup {
                    if !entries.is_empty() {
                        let key = entries[i.index(entries.len())].0.clone();
                        entries.push((key, v));
                    }
                }
                entries.extend(extra);
                Just(entries).prop_shuffle()
            })
            .prop_flat_map(move |entries| {
                let gaps = 4 * entries.len() + 4;
                (Just(entries), vec(ws.clone(), gaps), corruption())
            })
            .prop_map(|(entries, ws, corruption)| {
                let mut ws = ws.into_iter();
                let mut s = String::new();
                let mut gap = |s: &mut String| s.push_str(ws.next().unwrap_or(""));
                gap(&mut s);
                s.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        gap(&mut s);
                        s.push(',');
                    }
                    gap(&mut s);
                    s.push_str(k);
                    gap(&mut s);
                    s.push(':');
                    gap(&mut s);
                    s.push_str(v);
                }
                gap(&mut s);
                s.push('}');
                gap(&mut s);
                let mut p = s.into_bytes();
                match corruption {
                    Corruption::None => {}
                    Corruption::Truncate(i) => p.truncate(i.index(p.len() + 1)),
                    Corruption::Replace(i, b) => {
                        let i = i.index(p.len());
                        p[i] = b;
                    }
                    Corruption::Insert(i, b) => p.insert(i.index(p.len() + 1), b),
                    Corruption::Delete(i) => {
                        p.remove(i.index(p.len()));
                    }
                }
                p
            })
    }

    fn sim_payload() -> impl Strategy<Value = Vec<u8>> {
        let ts = 1_600_000_000_000_000u64..1_800_000_000_000_000;
        let t = -60.0f32..140.0;
        let h = -20.0f32..120.0;
        prop_oneof![
            (ts.clone(), t.clone()).prop_map(|(ts, x)| sim_value(ts, x)),
            (ts.clone(), h.clone()).prop_map(|(ts, x)| sim_value(ts, x)),
            (ts, t.clone(), h).prop_map(|(ts, t, h)| sim_reading(ts, t, h)),
            t.prop_map(|x| format!("{x:.2}")),
        ]
        .prop_map(String::into_bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn value_payloads_match_serde(p in payload(false)) {
            check_same(&p)?;
        }

        #[test]
        fn reading_payloads_match_serde(p in payload(true)) {
            check_same(&p)?;
        }

        #[test]
        fn simulator_payloads_match_serde(p in sim_payload()) {
            check_same(&p)?;
        }

        /// What the fast path computes is also the correctly rounded
        /// value (what serde_json's `float_roundtrip` would give).
        #[test]
        fn fast_numbers_are_correctly_rounded(n in number_text()) {
            let p = format!(r#"{{"value": {n}}}"#);
            if let Some(Fields { values: [Some(v)], .. }) = fast::fields(p.as_bytes(), fast::VALUE) {
                prop_assert_eq!(v.to_bits(), n.parse::<f64>().unwrap().to_bits(), "{}", n);
            }
        }

        #[test]
        fn eight_digits_match_parse(b in any::<[u8; 9]>(), digits in "[0-9]{8,9}") {
            for b in [&b[..], digits.as_bytes()] {
                let want = b[..8]
                    .iter()
                    .all(u8::is_ascii_digit)
                    .then(|| std::str::from_utf8(&b[..8]).unwrap().parse::<u64>().unwrap());
                prop_assert_eq!(fast::eight_digits(b), want);
            }
        }

        #[test]
        fn arbitrary_text_matches_serde(p in "[{}\\[\\]\":,. 0-9eE+\\-a-z\\\\]{0,40}") {
            check_same(p.as_bytes())?;
        }
    }
}
