//! Heartbeats: expired instances vanish, a repeated beat is one instance, an expired
//! beat is lost for a while, a departure is gone at once.

use std::time::Duration;

use svc::service::Role;
use svc::store::{Instance, SharedStore};

pub(super) fn instance(id: &str) -> Instance {
    Instance {
        role: Role::Worker,
        id: id.into(),
        version: "1.0.0".into(),
        started_at: 1.0e9,
        address: Some("10.0.0.1:8081".into()),
        faults: Vec::new(),
        location: None,
    }
}

async fn contract(store: SharedStore) {
    let (a, b) = (instance("a"), instance("b"));
    store
        .heartbeat(&a, Duration::from_secs(30))
        .await
        .expect("beat a");
    store
        .heartbeat(&b, Duration::from_millis(150))
        .await
        .expect("beat b");
    store
        .heartbeat(&a, Duration::from_secs(30))
        .await
        .expect("beat a again");
    let mut live = store.instances().await.expect("instances");
    live.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(live, vec![a.clone(), b]);
    // The beat's own expiry is what is tested: wait past it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.instances().await.expect("instances"), vec![a.clone()]);

    let lost = store
        .lost_instances(Duration::from_secs(60))
        .await
        .expect("lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].0.id, "b");
    assert!(
        store
            .lost_instances(Duration::ZERO)
            .await
            .expect("lost")
            .is_empty()
    );
    store.depart(&a).await.expect("depart");
    assert!(store.instances().await.expect("instances").is_empty());
    let lost = store
        .lost_instances(Duration::from_secs(60))
        .await
        .expect("lost");
    assert!(lost.iter().all(|(i, _)| i.id != "a"), "{lost:?}");
}

crate::store::on_both_backends!(contract);
