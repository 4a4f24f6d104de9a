use super::received;
use domain::parse::*;
use serde_json::{json, Value};

/// Parses one envelope and returns its errors as (field, message) pairs.
fn errors(v: Value) -> Vec<(String, String)> {
    match parse_envelope(&v, 0, Form::Submitted) {
        Ok(_) => vec![],
        Err(e) => e.into_iter().map(|e| (e.field, e.message)).collect(),
    }
}

fn check(mutate: impl FnOnce(&mut Value), expect_fields: &[&str]) {
    let mut v = received("000.00.12.H27-190312-0001", "2019-03-12T08:30:00+07:00");
    mutate(&mut v);
    let got: Vec<String> = errors(v).into_iter().map(|(f, _)| f).collect();
    assert_eq!(got, expect_fields, "fields with errors");
}

#[test]
fn the_letters_example_envelope_parses() {
    check(|_| {}, &[]);
}

#[test]
fn unknown_fields_are_refused_in_the_envelope_and_in_data() {
    check(|v| v["colour"] = json!("blue"), &["colour"]);
    check(|v| v["data"]["chanel"] = json!("online"), &["data.chanel"]);
}

#[test]
fn a_time_without_offset_is_refused() {
    check(
        |v| v["occurred_at"] = json!("2019-03-12T08:30:00"),
        &["occurred_at"],
    );
    check(
        |v| v["data"]["due_at"] = json!("2019-03-19 17:00"),
        &["data.due_at"],
    );
}

#[test]
fn oversize_texts_are_refused() {
    let note = "x".repeat(2_001);
    let mut v = received("D1", "2019-03-12T08:30:00+07:00");
    v["type"] = json!("dossier.transferred");
    v["data"] = json!({ "to_agency": "000.00.13.H27", "note": note });
    assert_eq!(errors(v.clone()).len(), 1);
    assert!(
        errors(v.clone())[0].1.contains("at most 2000"),
        "{:?}",
        errors(v.clone())
    );
    v["data"]["note"] = json!("ư".repeat(2_000)); // 2,000 characters, 4,000 bytes: fine
    assert!(errors(v).is_empty());
}

#[test]
fn online_level_goes_with_the_online_channel_only() {
    check(
        |v| {
            v["data"]
                .as_object_mut()
                .unwrap()
                .remove("online_level")
                .map(|_| ())
                .unwrap()
        },
        &["data.online_level"],
    );
    check(
        |v| v["data"]["channel"] = json!("counter"),
        &["data.online_level"],
    );
}

#[test]
fn every_bad_field_is_reported_at_once() {
    check(
        |v| {
            v["id"] = json!("not-a-uuid");
            v["dossier"] = json!("has/slash");
            v["agency"] = json!("");
            v["data"]["channel"] = json!("fax");
            v["data"]["applicant"] = json!("alien");
        },
        &["id", "dossier", "agency", "data.channel", "data.applicant"],
    );
}

#[test]
fn codes_are_checked_for_length_and_characters() {
    check(|v| v["dossier"] = json!("x".repeat(65)), &["dossier"]);
    check(|v| v["dossier"] = json!("a b"), &["dossier"]);
    check(|v| v["agency"] = json!("000-00"), &["agency"]);
    check(|v| v["agency"] = json!("A".repeat(33)), &["agency"]);
    check(
        |v| v["data"]["procedure"] = json!("1/2"),
        &["data.procedure"],
    );
    check(|v| v["dossier"] = json!("x".repeat(64)), &[]);
}

#[test]
fn stored_fields_are_refused_from_senders() {
    check(|v| v["position"] = json!(5), &["position"]);
    check(|v| v["source"] = json!("me"), &["source"]);
}

#[test]
fn a_correction_must_correct_something() {
    let mut v = received("D1", "2019-03-12T08:30:00+07:00");
    v["type"] = json!("dossier.corrected");
    v["data"] = json!({ "reason": "typo" });
    assert_eq!(
        errors(v.clone())
            .into_iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        vec!["data"]
    );
    v["data"]["due_at"] = json!("2019-03-20T17:00:00+07:00");
    assert!(errors(v).is_empty());
}

#[test]
fn reference_events_do_not_carry_a_dossier() {
    let v = json!({ "id": super::uuid_for("a", "b", "c"), "type": "agency.registered", "dossier": "D1",
                    "agency": "000.00.12.H27", "occurred_at": "2019-01-01T00:00:00Z",
                    "data": { "name": "Sở Tư pháp", "level": "department", "parent": "000.00.00.H27" } });
    assert_eq!(
        errors(v).into_iter().map(|e| e.0).collect::<Vec<_>>(),
        vec!["dossier"]
    );
}

#[test]
fn targets_default_to_the_letters_rates() {
    let v = json!({ "id": super::uuid_for("t", "b", "c"), "type": "target.set", "occurred_at": "2019-01-01T00:00:00Z",
                    "data": { "agency": "*", "from_period": "2019-Q2" } });
    let s = parse_envelope(&v, 0, Form::Submitted).unwrap();
    match s.event.data {
        domain::EventData::TargetSet(t) => {
            assert_eq!((t.online_rate_min, t.postal_rate_min), (0.20, 0.10))
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn submissions_are_one_event_or_a_batch_of_at_most_1000() {
    let one = received("D1", "2019-03-12T08:30:00+07:00");
    assert_eq!(parse_submission(&one).unwrap().len(), 1);
    assert_eq!(parse_submission(&json!([])), Err(SubmissionError::Empty));
    assert!(matches!(
        parse_submission(&json!("x")),
        Err(SubmissionError::NotAnEvent(_))
    ));
    let many: Vec<Value> = (0..1001)
        .map(|i| received(&format!("D{i}"), "2019-03-12T08:30:00+07:00"))
        .collect();
    assert_eq!(
        parse_submission(&Value::Array(many)),
        Err(SubmissionError::TooMany(1001))
    );
}

#[test]
fn batch_errors_name_the_index_and_id_of_each_failing_event() {
    let good = received("D1", "2019-03-12T08:30:00+07:00");
    let mut bad = received("D2", "2019-03-12T08:30:00+07:00");
    bad["data"]["channel"] = json!("fax");
    let dup = good.clone();
    let Err(SubmissionError::Invalid(errors)) = parse_submission(&json!([good, bad.clone(), dup]))
    else {
        panic!("accepted")
    };
    let seen: Vec<(usize, Option<String>, String)> = errors
        .into_iter()
        .map(|e| (e.index, e.id, e.field))
        .collect();
    assert_eq!(
        seen[0],
        (
            1,
            bad["id"].as_str().map(str::to_owned),
            "data.channel".to_string()
        )
    );
    assert_eq!(
        (seen[1].0, seen[1].2.as_str()),
        (2, "id"),
        "a repeated id within a batch"
    );
    assert_eq!(seen.len(), 2);
}

#[test]
fn a_dossier_named_like_a_reference_stream_has_a_stream_of_its_own() {
    let mut v = received("targets", "2019-03-12T08:30:00+07:00");
    v["dossier"] = json!("targets");
    let dossier = parse_envelope(&v, 0, Form::Submitted).unwrap().event;
    let t = json!({ "id": super::uuid_for("t", "x", "y"), "type": "target.set", "occurred_at": "2019-01-01T00:00:00Z",
                    "data": { "agency": "*", "from_period": "2019-Q2" } });
    let target = parse_envelope(&t, 0, Form::Submitted).unwrap().event;
    assert_ne!(dossier.stream().key(), target.stream().key());
    assert!(
        target.stream().key().contains('/'),
        "every reference stream key has a slash"
    );
}

/// A procedure's field is optional on `procedure.offered`; its name needs its code; an offer without one is stored
/// as before (the field is not written as null).
#[test]
fn an_offer_may_name_its_procedures_field() {
    let offer = |data: Value| {
        json!({ "id": "01935c3e-8f4a-7b21-9c55-3f2d8e6a1b07", "type": "procedure.offered", "agency": "000.00.12.H27",
                "occurred_at": "2019-01-02T08:00:00+07:00", "data": data })
    };
    let base = json!({ "procedure": "1.001234", "name": "Chứng thực", "online_level": "level3",
                       "postal_receive": true, "postal_return": false, "effective_from": "2019-01-01" });
    let mut named = base.clone();
    named["field"] = json!("G09-CT");
    named["field_name"] = json!("Chứng thực");
    assert!(errors(offer(named.clone())).is_empty());
    let mut nameless_code = named.clone();
    nameless_code.as_object_mut().unwrap().remove("field");
    let refused: Vec<String> = errors(offer(nameless_code))
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(refused, ["data.field_name"]);
    let mut bad = named;
    bad["field"] = json!("G09/CT");
    let refused: Vec<String> = errors(offer(bad)).into_iter().map(|(f, _)| f).collect();
    assert_eq!(refused, ["data.field"]);
    let plain = parse_envelope(&offer(base), 0, Form::Submitted).unwrap();
    assert!(!plain.event.to_json(None).contains("field"));
}
