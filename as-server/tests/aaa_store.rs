//! The AAA's store operations (subscribers, versioned profiles, CDRs) on SQLite in memory,
//! and on PostgreSQL when `TEST_POSTGRES_URL` is set.

use std::sync::atomic::{AtomicU32, Ordering};

use as_server::aaa::digest;
use as_server::store::{Cdr, CdrInsert, Error, Profile, ProfileUpdate, Store, Subscriber};

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}x{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

fn sub(p: &str, name: &str) -> Subscriber {
    let username = format!("{name}-{p}@iptv.example");
    Subscriber {
        identity: format!("sip:{username}"),
        ha1: digest::ha1(&username, "iptv.example", "pw"),
        username,
        realm: "iptv.example".into(),
    }
}

fn cdr(session: &str, n: u32, kind: &str) -> Cdr {
    Cdr {
        session_id: session.into(),
        record_number: n,
        record_type: kind.into(),
        origin_host: "as1".into(),
        origin_realm: "iptv.example".into(),
        subscriber: Some("sip:a@x".into()),
        channel: Some("news".into()),
        called_party: None,
        user_session_id: Some("call".into()),
        charging_id: None,
        event_ms: Some(1_000),
        received_ms: 2_000 + i64::from(n),
        duration_secs: (kind == "STOP").then_some(61),
        cause_code: None,
        retransmitted: false,
    }
}

async fn suite(store: &Store) {
    let p = unique("st");
    let alice = sub(&p, "alice");
    let pk = vec!["basic".to_owned(), "sports".to_owned()];
    store.add_subscriber(&alice, &pk, 2, 12, 10).await.unwrap();
    // Same identity, or same username in the realm: Duplicate, nothing half-written.
    let again = store.add_subscriber(&alice, &[], 1, 0, 11).await;
    assert!(matches!(again, Err(Error::Duplicate(_))), "{again:?}");
    let mut other = sub(&p, "other");
    other.username.clone_from(&alice.username);
    let dup_user = store.add_subscriber(&other, &[], 1, 0, 11).await;
    assert!(matches!(dup_user, Err(Error::Duplicate(_))), "{dup_user:?}");
    assert!(matches!(
        store.get_profile(&other.identity).await,
        Err(Error::NotFound(_))
    ));
    // Parental level over 18 is refused.
    assert!(matches!(
        store.add_subscriber(&sub(&p, "kid"), &[], 1, 19, 0).await,
        Err(Error::InvalidData(_))
    ));

    assert_eq!(store.get_subscriber(&alice.identity).await.unwrap(), alice);
    assert_eq!(
        store
            .get_subscriber_by_username(&alice.username, "iptv.example")
            .await
            .unwrap(),
        alice
    );
    assert!(matches!(
        store
            .get_subscriber_by_username(&alice.username, "other.realm")
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(store
        .list_subscribers()
        .await
        .unwrap()
        .iter()
        .any(|s| s.identity == alice.identity));

    let p0 = store.get_profile(&alice.identity).await.unwrap();
    assert_eq!(
        p0,
        Profile {
            identity: alice.identity.clone(),
            packages: pk.clone(),
            max_streams: 2,
            parental_level: 12,
            version: 0,
            updated_ms: 10,
        }
    );
    // Partial updates keep the other fields and bump the version each time.
    let p1 = store
        .update_profile(
            &alice.identity,
            &ProfileUpdate {
                max_streams: Some(3),
                ..ProfileUpdate::default()
            },
            20,
        )
        .await
        .unwrap();
    assert_eq!(
        (p1.max_streams, p1.parental_level, &p1.packages, p1.version),
        (3, 12, &pk, 1)
    );
    let p2 = store
        .update_profile(
            &alice.identity,
            &ProfileUpdate {
                packages: Some(vec![]),
                parental_level: Some(0),
                ..ProfileUpdate::default()
            },
            30,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            p2.max_streams,
            p2.parental_level,
            p2.packages.len(),
            p2.version
        ),
        (3, 0, 0, 2)
    );
    assert_eq!(p2.updated_ms, 30);
    assert_eq!(store.get_profile(&alice.identity).await.unwrap(), p2);
    assert!(matches!(
        store
            .update_profile("sip:nobody@x", &ProfileUpdate::default(), 1)
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store
            .update_profile(
                &alice.identity,
                &ProfileUpdate {
                    parental_level: Some(40),
                    ..ProfileUpdate::default()
                },
                1
            )
            .await,
        Err(Error::InvalidData(_))
    ));

    store.set_ha1(&alice.identity, "0123").await.unwrap();
    assert_eq!(
        store.get_subscriber(&alice.identity).await.unwrap().ha1,
        "0123"
    );
    assert!(matches!(
        store.set_ha1("sip:nobody@x", "0").await,
        Err(Error::NotFound(_))
    ));

    // CDRs: once per (Session-Id, Accounting-Record-Number).
    let s = unique("sess;");
    assert_eq!(
        store.insert_cdr(&cdr(&s, 0, "START")).await.unwrap(),
        CdrInsert::Stored
    );
    assert_eq!(
        store.insert_cdr(&cdr(&s, 1, "STOP")).await.unwrap(),
        CdrInsert::Stored
    );
    let mut retx = cdr(&s, 1, "STOP");
    retx.retransmitted = true;
    retx.duration_secs = Some(999);
    assert_eq!(store.insert_cdr(&retx).await.unwrap(), CdrInsert::Duplicate);
    let rows = store.cdrs_of_session(&s).await.unwrap();
    assert_eq!(rows, vec![cdr(&s, 0, "START"), cdr(&s, 1, "STOP")]);
    // Concurrent copies of one record: exactly one is stored.
    let s2 = unique("sess;");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = store.clone();
        let c = cdr(&s2, 0, "EVENT");
        tasks.push(tokio::spawn(
            async move { st.insert_cdr(&c).await.unwrap() },
        ));
    }
    let mut stored = 0;
    for t in tasks {
        if t.await.unwrap() == CdrInsert::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(store.cdrs_of_session(&s2).await.unwrap().len(), 1);
    let counts = store.cdr_counts().await.unwrap();
    assert!(counts.iter().any(|(t, n)| t == "EVENT" && *n >= 1));
    // The newest records, oldest first. The PostgreSQL database is shared with the other
    // tests (and earlier runs), so only the order and the limit are checked, not which rows.
    let recent = store.recent_cdrs(3).await.unwrap();
    assert_eq!(recent.len(), 3);
    assert!(recent
        .windows(2)
        .all(|w| w[0].received_ms <= w[1].received_ms));
}

#[test]
fn sequence_numbers_wrap_to_one() {
    let mut p = Profile {
        identity: "x".into(),
        packages: vec![],
        max_streams: 1,
        parental_level: 0,
        version: 0,
        updated_ms: 0,
    };
    let mut seq = |v| {
        p.version = v;
        p.sequence_number()
    };
    assert_eq!(seq(0), 0);
    assert_eq!(seq(1), 1);
    assert_eq!(seq(65_535), 65_535);
    assert_eq!(seq(65_536), 1);
    assert_eq!(seq(131_070), 65_535);
    assert_eq!(seq(131_071), 1);
}

#[tokio::test]
async fn sqlite_memory() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    suite(&store).await;
}

#[tokio::test]
async fn postgres() {
    let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL not set; skipping the PostgreSQL run");
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    suite(&store).await;
}
