//! Catalogue store tests. The same suite runs on SQLite (a temp file and `sqlite::memory:`)
//! and, when `TEST_POSTGRES_URL` is set, on PostgreSQL (`tests/pg-setup.sh` prepares one).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use as_server::store::{Backend, Channel, ChannelKind, Error, Session, Store, MIGRATIONS};

/// A prefix unique to this test run and call, so suites can share one database.
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}-{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

fn channel(id: &str, kind: ChannelKind, created_ms: i64) -> Channel {
    Channel {
        id: id.to_owned(),
        name: format!("Channel {id}"),
        kind,
        owner: (kind == ChannelKind::Personal).then(|| "sip:alice@example.com".to_owned()),
        created_ms,
        ingest_addr: None,
        relay: None,
    }
}

/// The whole suite against one store; ids carry `p` so runs do not collide.
async fn suite(store: &Store, p: &str) {
    let ch_a = format!("{p}-a");
    let ch_b = format!("{p}-b");
    let ch_c = format!("{p}-c");

    // ---- channels
    let mut a = channel(&ch_a, ChannelKind::Producer, 1_700_000_000_000);
    a.ingest_addr = Some("192.0.2.5:40000".parse().unwrap());
    a.relay = Some("relay-1".into());
    store.create_channel(&a).await.unwrap();
    store
        .create_channel(&channel(
            &ch_c,
            ChannelKind::Personalized,
            1_700_000_000_002,
        ))
        .await
        .unwrap();
    store
        .create_channel(&channel(&ch_b, ChannelKind::Personal, 1_700_000_000_001))
        .await
        .unwrap();

    assert_eq!(store.get_channel(&ch_a).await.unwrap(), a);
    let b = store.get_channel(&ch_b).await.unwrap();
    assert_eq!(b.kind, ChannelKind::Personal);
    assert_eq!(b.owner.as_deref(), Some("sip:alice@example.com"));
    assert_eq!(b.ingest_addr, None);

    let dup = store
        .create_channel(&channel(&ch_a, ChannelKind::Producer, 5))
        .await;
    assert!(matches!(dup, Err(Error::Duplicate(_))), "{dup:?}");
    // The duplicate did not overwrite the original.
    assert_eq!(
        store.get_channel(&ch_a).await.unwrap().created_ms,
        a.created_ms
    );

    let ids: Vec<String> = store
        .list_channels()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.id.starts_with(p))
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ids,
        [ch_a.clone(), ch_b.clone(), ch_c.clone()],
        "oldest first"
    );

    assert!(matches!(
        store.get_channel(&format!("{p}-nope")).await,
        Err(Error::NotFound(_))
    ));

    store
        .set_channel_ingest(
            &ch_b,
            Some("[2001:db8::5]:40002".parse().unwrap()),
            Some("relay-2"),
        )
        .await
        .unwrap();
    let b = store.get_channel(&ch_b).await.unwrap();
    assert_eq!(b.ingest_addr, Some("[2001:db8::5]:40002".parse().unwrap()));
    assert_eq!(b.relay.as_deref(), Some("relay-2"));
    assert!(matches!(
        store
            .set_channel_ingest(&format!("{p}-nope"), None, None)
            .await,
        Err(Error::NotFound(_))
    ));

    // ---- sessions
    let s1 = format!("{p}-s1");
    let s2 = format!("{p}-s2");
    let call1 = format!("{p}-call1@ue");
    let sess = Session::new(
        &s1,
        &ch_a,
        "sip:bob@example.com",
        &call1,
        Some("relay-1".into()),
        1000,
    );
    store.start_session(&sess).await.unwrap();
    assert_eq!(store.get_session(&s1).await.unwrap(), sess);
    assert!(matches!(
        store.start_session(&sess).await,
        Err(Error::Duplicate(_))
    ));
    let orphan = Session::new(
        format!("{p}-s9"),
        format!("{p}-nope"),
        "sip:x@y",
        "c",
        None,
        1,
    );
    assert!(matches!(
        store.start_session(&orphan).await,
        Err(Error::NotFound(_))
    ));
    store
        .start_session(&Session::new(
            &s2,
            &ch_a,
            "sip:carol@example.com",
            format!("{p}-call2"),
            None,
            2000,
        ))
        .await
        .unwrap();

    assert_eq!(
        store.active_session_by_call_id(&call1).await.unwrap().id,
        s1
    );

    // Zap twice.
    let z = store
        .switch_session_channel(&s1, &ch_b, 1500)
        .await
        .unwrap();
    assert_eq!(z.channel_id, ch_b);
    assert_eq!(z.switched_ms, Some(1500));
    assert_eq!(z.zaps, 1);
    let z = store
        .switch_session_channel(&s1, &ch_c, 1600)
        .await
        .unwrap();
    assert_eq!((z.channel_id.as_str(), z.zaps), (ch_c.as_str(), 2));
    assert!(matches!(
        store
            .switch_session_channel(&s1, &format!("{p}-nope"), 1700)
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store
            .switch_session_channel(&format!("{p}-nope"), &ch_a, 1700)
            .await,
        Err(Error::NotFound(_))
    ));
    // A failed zap changed nothing.
    assert_eq!(store.get_session(&s1).await.unwrap().channel_id, ch_c);

    let mut counts: Vec<(String, i64)> = store
        .viewer_counts()
        .await
        .unwrap()
        .into_iter()
        .filter(|(c, _)| c.starts_with(p))
        .collect();
    counts.sort();
    assert_eq!(counts, [(ch_a.clone(), 1), (ch_c.clone(), 1)]);

    // End.
    let ended = store.end_session(&s1, 61_000).await.unwrap();
    assert_eq!(ended.ended_ms, Some(61_000));
    assert_eq!(ended.duration_ms(), Some(60_000));
    assert!(!ended.is_active());
    assert!(matches!(
        store.end_session(&s1, 62_000).await,
        Err(Error::Ended(_))
    ));
    assert!(matches!(
        store.switch_session_channel(&s1, &ch_a, 62_000).await,
        Err(Error::Ended(_))
    ));
    assert!(matches!(
        store.end_session(&format!("{p}-nope"), 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.active_session_by_call_id(&call1).await,
        Err(Error::NotFound(_))
    ));

    let mine = |v: Vec<Session>| -> Vec<String> {
        v.into_iter()
            .filter(|s| s.id.starts_with(p))
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(
        mine(store.list_sessions(true).await.unwrap()),
        std::slice::from_ref(&s2)
    );
    assert_eq!(
        mine(store.list_sessions(false).await.unwrap()),
        [s1.clone(), s2.clone()]
    );

    // Deleting a channel keeps its sessions' history.
    store.delete_channel(&ch_a).await.unwrap();
    assert!(matches!(
        store.delete_channel(&ch_a).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.get_channel(&ch_a).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.get_session(&s2).await.unwrap().channel_id, ch_a);
    store.end_session(&s2, 3000).await.unwrap();
}

/// Many concurrent writers through the pool.
async fn concurrent_creates(store: &Store, p: &str) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let id = format!("{p}-conc-{i:02}");
        tasks.push(tokio::spawn(async move {
            store
                .create_channel(&channel(&id, ChannelKind::Producer, i))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let n = store
        .list_channels()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.id.starts_with(&format!("{p}-conc-")))
        .count();
    assert_eq!(n, 16);

    // Read-then-write transactions (start, zap, end) racing each other.
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let store = store.clone();
        let (sid, ch, next) = (
            format!("{p}-sess-{i:02}"),
            format!("{p}-conc-{i:02}"),
            format!("{p}-conc-{:02}", (i + 1) % 16),
        );
        tasks.push(tokio::spawn(async move {
            store
                .start_session(&Session::new(&sid, &ch, "sip:v@x", &sid, None, i))
                .await?;
            store.switch_session_channel(&sid, &next, i + 1).await?;
            store.end_session(&sid, i + 2).await
        }));
    }
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        assert_eq!((s.zaps, s.duration_ms()), (1, Some(2)));
    }
}

fn temp_db_url(tag: &str) -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique(tag)));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    (path, url)
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test]
async fn sqlite_file_suite() {
    let (path, url) = temp_db_url("store-file");
    assert!(!path.exists());
    let store = Store::connect(&url).await.unwrap();
    assert!(path.exists(), "file created on first run");
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(&store, &unique("f")).await;
    concurrent_creates(&store, &unique("fc")).await;
    store.close().await;
    remove_db(&path);
}

#[tokio::test]
async fn sqlite_file_persists_and_migrations_are_idempotent() {
    let (path, url) = temp_db_url("store-persist");
    let store = Store::connect(&url).await.unwrap();
    store
        .create_channel(&channel("kept", ChannelKind::Producer, 42))
        .await
        .unwrap();
    store.close().await;

    // Reopen: migrations already applied, data still there.
    let store = Store::connect(&url).await.unwrap();
    let ch = store.get_channel("kept").await.unwrap();
    assert_eq!(ch.created_ms, 42);
    store.close().await;
    remove_db(&path);
}

#[tokio::test]
async fn sqlite_memory_suite() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    suite(&store, "m").await;
    concurrent_creates(&store, "mc").await;
    // Another in-memory store is a separate database.
    let other = Store::connect("sqlite::memory:").await.unwrap();
    assert!(other.list_channels().await.unwrap().is_empty());
}

#[tokio::test]
async fn unsupported_url() {
    assert!(matches!(
        Store::connect("mysql://localhost/x").await,
        Err(Error::UnsupportedUrl(_))
    ));
}

#[tokio::test]
async fn bad_sqlite_path_is_a_db_error() {
    let r = Store::connect("sqlite:///nonexistent-dir-xyz/sub/db.sqlite?mode=rw").await;
    assert!(matches!(r, Err(Error::Db(_))), "{r:?}");
}

#[test]
fn every_migration_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    let listed: BTreeSet<String> = MIGRATIONS
        .iter()
        .map(|(v, d, _)| format!("{v}_{}.sql", d.replace(' ', "_")))
        .collect();
    assert_eq!(files, listed);
    for (v, d, sql) in MIGRATIONS {
        let on_disk =
            std::fs::read_to_string(dir.join(format!("{v}_{}.sql", d.replace(' ', "_")))).unwrap();
        assert_eq!(&on_disk, sql);
    }
    // Versions strictly increase.
    assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
}

/// Runs when `TEST_POSTGRES_URL` is set (see `tests/pg-setup.sh`); otherwise says so.
#[tokio::test]
async fn postgres_suite() {
    let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL not set; skipping the PostgreSQL suite");
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    suite(&store, &unique("pg")).await;
    concurrent_creates(&store, &unique("pgc")).await;
    // A second instance on the same database (two AS instances sharing a catalogue) sees
    // the first one's writes, and connecting again does not re-run migrations.
    let p = unique("pg2");
    store
        .create_channel(&channel(&p, ChannelKind::Producer, 7))
        .await
        .unwrap();
    let other = Store::connect(&url).await.unwrap();
    assert_eq!(other.get_channel(&p).await.unwrap().created_ms, 7);
    other.delete_channel(&p).await.unwrap();
    other.close().await;
    store.close().await;
}
