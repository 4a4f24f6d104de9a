//! Whatever any path may write, the export of it reads back (issue 25, point 1, and the second of 60).
//!
//! Events are built as typed values, the way the DVCQG adapter and every other in-process writer builds them, not
//! as JSON: over every field the types can hold, including what the contract refuses (a due time before the
//! intake, a level on a counter dossier, a correction of nothing, a field's name without its code, over-long
//! names, rates over 1, leap seconds, years RFC 3339 cannot write). The invariant: `decide`, which every write
//! passes, accepts an event only if the sender's parser reads its JSON (as sent and as exported) back to the same
//! event; and the parser refuses exactly what the event's own rules (`domain::rules`) refuse.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use domain::event::*;
use domain::parse::{parse_envelope, parse_instant, Form};
use domain::{
    decide, AgencyCode, Context, DossierCode, Event, KnownAt, ProcedureCode, StoredEvent,
    StreamHead, Text,
};
use proptest::prelude::*;

/// Any time the types hold: ordinary seconds, leap seconds (chrono's nanoseconds past 1e9), year 1 (a .NET
/// system's "no date") and years past 9999, in three offsets.
fn instant() -> impl Strategy<Value = Instant> {
    let offset = prop_oneof![Just(0), Just(7 * 3600), Just(-5 * 3600)];
    let ordinary = (1_500_000_000i64..1_600_000_000, 0u32..3).prop_map(|(secs, frac)| {
        let nanos = [0, 500_000_000, 123_456_000][frac as usize];
        DateTime::from_timestamp(secs, nanos).unwrap().naive_utc()
    });
    let leap = (1_500_000_000i64..1_600_000_000, 0u32..999_999_999).prop_map(|(secs, n)| {
        let minute_end = secs - secs.rem_euclid(60) + 59;
        DateTime::from_timestamp(minute_end, 1_000_000_000 + n)
            .unwrap()
            .naive_utc()
    });
    let odd_years = prop_oneof![Just(1), Just(10_000), Just(0)].prop_map(|y| {
        NaiveDate::from_ymd_opt(y, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    });
    (
        prop_oneof![6 => ordinary, 1 => leap, 1 => odd_years],
        offset,
    )
        .prop_map(|(naive, offset)| {
            FixedOffset::east_opt(offset)
                .unwrap()
                .from_utc_datetime(&naive)
        })
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        4 => "[a-zA-Zà-ỹ ]{1,20}".prop_filter_map("not blank", |s| Text::parse(&s).ok()),
        1 => (490usize..520).prop_map(|n| Text::parse(&"ạ".repeat(n)).unwrap()),
    ]
}

fn level() -> impl Strategy<Value = Option<OnlineLevel>> {
    proptest::option::of(prop::sample::select(OnlineLevel::ALL))
}

fn data() -> impl Strategy<Value = EventData> {
    let channel = prop::sample::select(Channel::ALL);
    prop_oneof![
        (channel.clone(), level(), proptest::option::of(instant())).prop_map(
            |(channel, online_level, due_at)| EventData::Received(Received {
                procedure: ProcedureCode::parse("1.001234").unwrap(),
                channel,
                online_level,
                due_at,
                result_by_post: None,
                applicant: None,
            })
        ),
        (instant(), text()).prop_map(|(new_due_at, reason)| EventData::DueExtended(DueExtended {
            new_due_at,
            reason
        })),
        (
            text(),
            any::<bool>(),
            proptest::option::of(channel),
            level(),
            proptest::option::of(instant()),
            proptest::option::of(instant())
        )
            .prop_map(
                |(reason, procedure, channel, online_level, received_at, due_at)| {
                    EventData::Corrected(Corrected {
                        reason,
                        procedure: procedure.then(|| ProcedureCode::parse("1.009999").unwrap()),
                        channel,
                        online_level,
                        received_at,
                        due_at,
                        result_by_post: None,
                    })
                }
            ),
        (
            text(),
            proptest::option::of(Just(())),
            proptest::option::of(text()),
            0i32..3
        )
            .prop_map(|(name, field, field_name, year)| {
                EventData::ProcedureOffered(ProcedureOffered {
                    procedure: ProcedureCode::parse("1.001234").unwrap(),
                    name,
                    online_level: OfferLevel::Level4,
                    postal_receive: true,
                    postal_return: false,
                    effective_from: NaiveDate::from_ymd_opt([2019, 1, 10_000][year as usize], 1, 1)
                        .unwrap(),
                    field: field.map(|_| ProcedureCode::parse("LV01").unwrap()),
                    field_name,
                })
            }),
        text().prop_map(|name| EventData::AgencyRegistered(AgencyRegistered {
            name,
            level: AgencyLevel::Department,
            parent: None,
        })),
        (0.0f64..1.5, 0.0f64..1.5).prop_map(|(online, postal)| EventData::TargetSet(TargetSet {
            agency: TargetScope::parse("*").unwrap(),
            from_period: "2019-Q1".parse().unwrap(),
            online_rate_min: online,
            postal_rate_min: postal,
        })),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (any::<u128>(), instant(), data()).prop_map(|(id, occurred_at, data)| {
        let dossier_event = data.event_type().is_dossier_event();
        Event {
            id: uuid::Uuid::from_u128(id | 1),
            dossier: dossier_event
                .then(|| DossierCode::parse("000.00.12.H27-190312-0001").unwrap()),
            agency: (data.event_type() != EventType::TargetSet)
                .then(|| AgencyCode::parse("000.00.12.H27").unwrap()),
            occurred_at,
            data,
        }
    })
}

/// A head the event may follow: a dossier received before any generated time, or an empty stream for a first
/// event. (The stream's rules may still refuse it; what they accept must read back.)
fn head_for(e: &Event) -> StreamHead {
    if !e.event_type().is_dossier_event() || e.event_type() == EventType::DossierReceived {
        return StreamHead::default();
    }
    let at: Instant = DateTime::<Utc>::MIN_UTC.fixed_offset();
    let received = Event {
        id: uuid::Uuid::from_u128(7),
        dossier: e.dossier.clone(),
        agency: e.agency.clone(),
        occurred_at: at,
        data: EventData::Received(Received {
            procedure: ProcedureCode::parse("1.001234").unwrap(),
            channel: Channel::Counter,
            online_level: None,
            due_at: None,
            result_by_post: None,
            applicant: None,
        }),
    };
    domain::apply(&StreamHead::default(), &received)
}

fn far_future() -> Context {
    Context {
        now: Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap(),
        clock_skew: Duration::zero(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn what_decide_accepts_reads_back_and_the_parser_refuses_what_the_rules_refuse(e in event()) {
        let problems = e.problems();
        let json: serde_json::Value = serde_json::from_str(&e.to_json(None)).unwrap();
        let parsed = parse_envelope(&json, 0, Form::Submitted);
        // The parser refuses exactly what the rules refuse, naming the same fields.
        match (&parsed, problems.is_empty()) {
            (Ok(s), true) => prop_assert_eq!(&s.event, &e),
            (Err(_), false) => {}
            (Ok(_), false) => prop_assert!(false, "parsed, but the rules find {:?}", problems),
            (Err(errs), true) => prop_assert!(false, "the rules find nothing, but the parser refuses {:?}", errs),
        }
        if let (Err(errs), false) = (&parsed, problems.is_empty()) {
            // What the parser names, the rules name (it may stop at a field it cannot read before judging the
            // event as a whole).
            for x in errs {
                prop_assert!(problems.iter().any(|p| x.field == p.field), "{:?} not among {:?}", x, problems);
            }
        }
        // Every write passes `decide`: what it accepts is readable again, as sent and as exported.
        let decided = decide(&head_for(&e), &e, None, &far_future());
        if !problems.is_empty() {
            prop_assert_eq!(decided, Err(domain::Rejection::Invalid(problems)));
        } else if decided.is_ok() {
            {
                let stored = StoredEvent {
                    position: 1,
                    version: 1,
                    recorded_at: Utc.timestamp_micros(1_600_000_000_000_000).unwrap(),
                    source: "dvcqg".into(),
                    event: e.clone(),
                };
                let bytes: serde_json::Value = serde_json::from_slice(&stored.canonical_bytes()).unwrap();
                let back = parse_envelope(&bytes, 0, Form::Exported)
                    .map_err(|errs| TestCaseError::fail(format!("written but its export does not read: {errs:?}")))?;
                prop_assert_eq!(back.event, e);
            }
        }
    }

    /// Every reader of a business time (the sender's parser, `known_at`) takes a time exactly when it has a second
    /// below 60, and reads back what it was given.
    #[test]
    fn every_time_reader_refuses_a_second_of_60(
        day in 0u32..3650, h in 0u32..24, m in 0u32..60, s in 55u32..=60, frac in 0u32..3,
        offset in prop::sample::select(vec!["+07:00", "Z", "-05:00"]),
    ) {
        let date = NaiveDate::from_ymd_opt(2015, 1, 1).unwrap() + chrono::Days::new(day as u64);
        let frac = ["", ".5", ".123456"][frac as usize];
        let text = format!("{}T{h:02}:{m:02}:{s:02}{frac}{offset}", date.format("%Y-%m-%d"));
        let instant = parse_instant(&text);
        let known: Result<KnownAt, String> = text.parse();
        if s == 60 {
            prop_assert!(instant.as_ref().is_err_and(|e| e.contains("second 60")), "{text}: {instant:?}");
            prop_assert!(known.is_err(), "{text}: {known:?}");
        } else {
            let t = instant.map_err(TestCaseError::fail)?;
            prop_assert!(known.is_ok());
            prop_assert_eq!(parse_instant(&t.to_rfc3339()).unwrap(), t);
        }
    }
}
