//! Property tests: no input, however strange, makes a parser panic; what parses is
//! within the rules; and a valid submission or record is accepted as it is. The inputs
//! are built from the real shapes (every task type, every field, values on both sides
//! of each bound) and then bent, so each branch is reached, not only the error ones.

use super::*;
use proptest::prelude::*;
use serde_json::json;

/// A `type`: mostly the real ones (the submittable four and `notify`), sometimes
/// anything.
fn type_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TaskType::ALL.to_vec()).prop_map(|t| t.as_str().to_owned()),
        1 => Just(TaskType::Notify.as_str().to_owned()),
        1 => "[a-z_]{0,16}",
    ]
}

/// A number on either side of `0..=max`, or not a number at all.
fn bounded(max: u64) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0..=max).prop_map(Value::from),
        1 => Just(Value::from(max + 1)),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => "[a-z]{0,4}".prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

fn value_of(key: &str) -> BoxedStrategy<Value> {
    match key {
        "size" => bounded(u64::from(MAX_DATA_SIZE)).boxed(),
        "hold_ms" => bounded(u64::from(MAX_HOLD_MS)).boxed(),
        "fail" => prop_oneof![".{0,8}".prop_map(Value::from), Just(Value::Null)].boxed(),
        "url" | "key" => "[a-z:/.]{0,12}".prop_map(Value::from).boxed(),
        "attempts" => bounded(100).boxed(),
        "state" => prop_oneof![
            state().prop_map(|s| Value::from(s.as_str())),
            "[a-z]{0,8}".prop_map(Value::from),
        ]
        .boxed(),
        _ => prop_oneof![
            Just(json!({"text": "x"})),
            any::<i64>().prop_map(Value::from),
            Just(Value::Null),
        ]
        .boxed(),
    }
}

/// A submission: a type and some of the fields of the job types (the type's own
/// mostly), each with a value in or out of its range.
fn submission() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop::sample::select(vec![
        "size", "size", "hold_ms", "hold_ms", "fail", "url", "body", "key", "extra",
    ]);
    let field = key.prop_flat_map(|k| value_of(k).prop_map(move |v| (k.to_owned(), v)));
    (type_name(), prop::collection::vec(field, 0..4)).prop_map(|(kind, fields)| {
        let mut body: Map<String, Value> = fields.into_iter().collect();
        body.insert("type".into(), kind.into());
        body
    })
}

/// Whether `body` keeps every rule of a submission (the oracle the parser must
/// agree with).
fn valid_submission(body: &Map<String, Value>) -> bool {
    let Some(task) = TaskType::ALL
        .into_iter()
        .find(|t| body.get("type") == Some(&Value::from(t.as_str())))
    else {
        return false;
    };
    body.iter().all(|(k, v)| match k.as_str() {
        "type" => true,
        _ if !task.params().contains(&k.as_str()) => false,
        "size" => v
            .as_u64()
            .is_some_and(|n| (1..=u64::from(MAX_DATA_SIZE)).contains(&n)),
        "hold_ms" => v.as_u64().is_some_and(|n| n <= u64::from(MAX_HOLD_MS)),
        "fail" => v.is_string() || v.is_null(),
        _ => false,
    })
}

fn spec() -> impl Strategy<Value = JobSpec> {
    let data = (
        1..=MAX_DATA_SIZE,
        prop::option::of(".{0,8}"),
        0..=MAX_HOLD_MS,
    )
        .prop_map(|(size, fail, hold)| JobSpec::DataProcessing {
            size: DataSize(size),
            fail,
            hold_ms: HoldMs(hold),
        });
    // Both shapes of a notification: to a channel by name, and (an older record) to
    // a URL with its body rendered.
    let notify = (
        "[a-z-]{1,8}",
        "[a-z:/.]{1,12}",
        any::<bool>(),
        "[a-z0-9-]{1,8}",
    )
        .prop_map(|(channel, url, by_name, key)| JobSpec::Notify {
            channel: by_name.then_some(channel),
            url: (!by_name).then_some(url),
            body: json!({"text": "down"}),
            key,
        });
    prop_oneof![
        data,
        Just(JobSpec::Cleanup {}),
        Just(JobSpec::HealthCheck {}),
        Just(JobSpec::MetricsCollection {}),
        notify,
    ]
}

fn state() -> impl Strategy<Value = JobState> {
    prop::sample::select(vec![
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Dead,
    ])
}

/// A record as some version of svc wrote it.
fn record() -> impl Strategy<Value = JobRecord> {
    // Whole milliseconds: what the clock writes, and exact through JSON.
    let instant = || (0..2_000_000_000_000u64).prop_map(|ms| ms as f64 / 1e3);
    let time = move || prop::option::of(instant());
    (
        (spec(), state(), 0..10u32, instant(), time(), time(), time()),
        (
            prop::option::of("[a-z0-9-]{1,8}"),
            prop::option::of(".{0,8}"),
            prop::option::of(Just(json!({"checksum": "00ff"}))),
            prop::option::of("[a-z0-9-]{1,8}"),
        ),
    )
        .prop_map(
            |(
                (spec, state, attempts, created_at, scheduled_for, started_at, finished_at),
                (worker, error, result, request_id),
            )| JobRecord {
                state,
                attempts,
                scheduled_for,
                started_at,
                finished_at,
                worker,
                error,
                result,
                request_id,
                ..JobRecord::new(spec, created_at)
            },
        )
}

/// What is done to a stored record before it is read back.
#[derive(Debug, Clone)]
enum Bend {
    /// Nothing.
    Keep,
    /// A field a newer version added.
    Add(String, Value),
    /// A field lost.
    Drop(&'static str),
    /// A field overwritten with a value of any kind.
    Set(&'static str, Value),
}

const FIELDS: [&str; 8] = [
    "id",
    "type",
    "state",
    "attempts",
    "created_at",
    "size",
    "hold_ms",
    "url",
];

fn bend() -> impl Strategy<Value = Bend> {
    prop_oneof![
        2 => Just(Bend::Keep),
        2 => ("x_[a-z]{1,6}", value_of("extra")).prop_map(|(k, v)| Bend::Add(k, v)),
        1 => prop::sample::select(FIELDS.to_vec()).prop_map(Bend::Drop),
        2 => prop::sample::select(FIELDS.to_vec())
            .prop_flat_map(|k| prop_oneof![value_of(k), type_name().prop_map(Value::from)]
                .prop_map(move |v| Bend::Set(k, v))),
    ]
}

proptest! {
    #[test]
    fn submissions_parse_exactly_when_they_keep_the_rules(body in submission()) {
        let text = Value::Object(body.clone()).to_string();
        let parsed = JobSpec::parse_submission(text.as_bytes());
        prop_assert_eq!(parsed.is_ok(), valid_submission(&body), "{} -> {:?}", text, parsed);
        if let Ok(JobSpec::DataProcessing { size, hold_ms, .. }) = parsed {
            prop_assert!((1..=MAX_DATA_SIZE as usize).contains(&size.get()));
            prop_assert!(hold_ms.duration() <= Duration::from_millis(u64::from(MAX_HOLD_MS)));
        }
    }

    #[test]
    fn any_text_is_refused_without_a_panic(text in ".{0,64}") {
        let _ = JobSpec::parse_submission(text.as_bytes());
        let _ = JobRecord::decode(&text);
        let _ = mark_dead(&text, "reason", 1.0);
    }

    #[test]
    fn stored_records_read_back_as_written_and_bent_ones_never_panic(
        record in record(),
        bend in bend(),
    ) {
        let Value::Object(mut stored) = serde_json::to_value(&record).expect("a map") else {
            unreachable!("a record serializes to an object");
        };
        let mut expected = Some(record.clone());
        match &bend {
            Bend::Keep => {}
            Bend::Add(key, value) => {
                stored.insert(key.clone(), value.clone());
                if let Some(expected) = &mut expected {
                    expected.other.insert(key.clone(), value.clone());
                }
            }
            Bend::Drop(key) => {
                // Losing an optional parameter leaves a valid record: not judged.
                expected = None;
                stored.remove(*key);
            }
            Bend::Set(key, value) => {
                expected = None;
                stored.insert((*key).to_owned(), value.clone());
            }
        }
        let raw = Value::Object(stored).to_string();
        let decoded = JobRecord::decode(&raw);
        if let Some(expected) = expected {
            prop_assert_eq!(decoded.clone(), Ok(expected));
        }
        if let Ok(decoded) = decoded {
            prop_assert_eq!(JobRecord::decode(&decoded.encode()), Ok(decoded));
        }
        let marked = mark_dead(&raw, "reason", 1.0).expect("an object is marked");
        let marked: Value = serde_json::from_str(&marked).expect("json");
        prop_assert_eq!(&marked["state"], "dead");
    }
}
