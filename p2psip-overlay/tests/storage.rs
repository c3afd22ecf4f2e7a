//! RFC 6940 section 7 storage: data models, lifetimes and expiry, generation
//! counters, access policies (7.3) and the kind registry (RFC 7904 kind 1 and
//! the project's private kinds).

use std::time::{Duration, Instant};

use p2psip_overlay::sim::base_instant;
use p2psip_overlay::storage::{
    AccessPolicy, DataModel, FetchSpec, KindData, KindDef, KindId, KindRegistry, Select, Signer,
    Storage, StoreError, StoredValue, ValueKey, APPEND,
};
use p2psip_overlay::topology::{hash_to_id, Id};

const SINGLE: KindId = KindId(0xf000_0101);
const ARRAY: KindId = KindId(0xf000_0102);
const NODE_MULTI: KindId = KindId(0xf000_0103);
const NODE_MATCH: KindId = KindId(0xf000_0104);

fn registry() -> KindRegistry {
    let mut r = KindRegistry::default();
    r.register(KindDef {
        id: SINGLE,
        name: "test-single",
        model: DataModel::Single,
        policy: AccessPolicy::UserMatch,
        max_count: 1,
        max_size: 16,
    });
    r.register(KindDef {
        id: ARRAY,
        name: "test-array",
        model: DataModel::Array,
        policy: AccessPolicy::UserMatch,
        max_count: 3,
        max_size: 64,
    });
    r.register(KindDef {
        id: NODE_MULTI,
        name: "test-node-multiple",
        model: DataModel::Single,
        policy: AccessPolicy::NodeMultiple { max: 4 },
        max_count: 1,
        max_size: 64,
    });
    r.register(KindDef {
        id: NODE_MATCH,
        name: "test-node-match",
        model: DataModel::Single,
        policy: AccessPolicy::NodeMatch,
        max_count: 1,
        max_size: 64,
    });
    r
}

fn alice() -> Signer {
    Signer {
        node_id: Id(0x1111),
        user_name: "alice@iptv.example".into(),
    }
}

fn value(key: ValueKey, t: u64, lifetime: u32, data: &[u8], signer: &Signer) -> StoredValue {
    StoredValue {
        key,
        storage_time: t,
        lifetime,
        exists: true,
        data: data.to_vec(),
        signer: signer.clone(),
    }
}

fn kd(kind: KindId, generation: u64, values: Vec<StoredValue>) -> Vec<KindData> {
    vec![KindData {
        kind,
        generation,
        values,
    }]
}

fn fetch_one(s: &Storage, now: Instant, r: Id, kind: KindId, select: Select) -> KindData {
    let spec = FetchSpec {
        kind,
        generation: 0,
        select,
    };
    s.fetch(now, r, &[spec]).unwrap().remove(0)
}

#[test]
fn single_value_user_match_generation_and_expiry() {
    let now = base_instant();
    let mut s = Storage::new(registry());
    let a = alice();
    let r = hash_to_id(a.user_name.as_bytes());
    let g = s
        .store(
            now,
            r,
            false,
            &kd(SINGLE, 0, vec![value(ValueKey::Single, 1, 60, b"v1", &a)]),
            &a,
        )
        .unwrap();
    assert_eq!(g[0].generation, 1);
    // a store naming the current generation succeeds and bumps it
    let g = s
        .store(
            now,
            r,
            false,
            &kd(SINGLE, 1, vec![value(ValueKey::Single, 2, 60, b"v2", &a)]),
            &a,
        )
        .unwrap();
    assert_eq!(g[0].generation, 2);
    // a stale generation is refused, data unchanged
    let e = s
        .store(
            now,
            r,
            false,
            &kd(SINGLE, 1, vec![value(ValueKey::Single, 3, 60, b"v3", &a)]),
            &a,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::GenerationCounterTooLow { stored: 2, got: 1 });
    assert_eq!(e.code(), 5);
    let got = fetch_one(&s, now, r, SINGLE, Select::Single);
    assert_eq!(got.values[0].data, b"v2");
    // an older storage_time is refused (Error_Data_Too_Old)
    let e = s
        .store(
            now,
            r,
            false,
            &kd(SINGLE, 0, vec![value(ValueKey::Single, 1, 60, b"old", &a)]),
            &a,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::DataTooOld);
    // too big
    let e = s
        .store(
            now,
            r,
            false,
            &kd(
                SINGLE,
                0,
                vec![value(ValueKey::Single, 9, 60, &[0; 17], &a)],
            ),
            &a,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::DataTooLarge);
    // expiry against the virtual clock
    assert_eq!(
        s.fetch(
            now + Duration::from_secs(59),
            r,
            &[FetchSpec {
                kind: SINGLE,
                generation: 0,
                select: Select::Single
            }]
        )
        .unwrap()[0]
            .values
            .len(),
        1
    );
    let later = now + Duration::from_secs(61);
    assert!(fetch_one(&s, later, r, SINGLE, Select::Single)
        .values
        .is_empty());
    assert_eq!(s.expire(later), 1);
    assert!(s.is_empty());
}

#[test]
fn fetch_with_current_generation_returns_no_values() {
    let now = base_instant();
    let mut s = Storage::new(registry());
    let a = alice();
    let r = hash_to_id(a.user_name.as_bytes());
    s.store(
        now,
        r,
        false,
        &kd(SINGLE, 0, vec![value(ValueKey::Single, 1, 60, b"v", &a)]),
        &a,
    )
    .unwrap();
    let spec = FetchSpec {
        kind: SINGLE,
        generation: 1,
        select: Select::Single,
    };
    let got = s.fetch(now, r, &[spec]).unwrap();
    assert_eq!(got[0].generation, 1);
    assert!(got[0].values.is_empty());
}

#[test]
fn user_match_refuses_other_users_and_models() {
    let now = base_instant();
    let mut s = Storage::new(registry());
    let a = alice();
    let mallory = Signer {
        node_id: Id(0x6666),
        user_name: "mallory@iptv.example".into(),
    };
    let r = hash_to_id(a.user_name.as_bytes());
    let e = s
        .store(
            now,
            r,
            false,
            &kd(
                SINGLE,
                0,
                vec![value(ValueKey::Single, 1, 60, b"x", &mallory)],
            ),
            &mallory,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::Forbidden(AccessPolicy::UserMatch));
    assert_eq!(e.code(), 2);
    // value signed by alice but request signed by mallory: also refused (7.3)
    let e = s
        .store(
            now,
            r,
            false,
            &kd(SINGLE, 0, vec![value(ValueKey::Single, 1, 60, b"x", &a)]),
            &mallory,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Forbidden(_)));
    // wrong data model
    let e = s
        .store(
            now,
            r,
            false,
            &kd(SINGLE, 0, vec![value(ValueKey::Index(0), 1, 60, b"x", &a)]),
            &a,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::InvalidMessage);
    // unknown kind
    let e = s
        .store(now, r, false, &kd(KindId(0xdead), 0, vec![]), &a)
        .unwrap_err();
    assert_eq!(e, StoreError::UnknownKind(KindId(0xdead)));
    assert!(s.is_empty(), "nothing stored by refused requests");
}

#[test]
fn array_append_ranges_and_max_count() {
    let now = base_instant();
    let mut s = Storage::new(registry());
    let a = alice();
    let r = hash_to_id(a.user_name.as_bytes());
    for (t, d) in [(1u64, b"a"), (2, b"b")] {
        s.store(
            now,
            r,
            false,
            &kd(ARRAY, 0, vec![value(ValueKey::Index(APPEND), t, 60, d, &a)]),
            &a,
        )
        .unwrap();
    }
    s.store(
        now,
        r,
        false,
        &kd(ARRAY, 0, vec![value(ValueKey::Index(7), 3, 60, b"h", &a)]),
        &a,
    )
    .unwrap();
    let got = fetch_one(&s, now, r, ARRAY, Select::Indices(vec![(0, 1)]));
    let keys: Vec<_> = got.values.iter().map(|v| v.key.clone()).collect();
    assert_eq!(keys, vec![ValueKey::Index(0), ValueKey::Index(1)]);
    let got = fetch_one(&s, now, r, ARRAY, Select::Indices(vec![(5, 10)]));
    assert_eq!(got.values[0].data, b"h");
    // a fourth entry exceeds max-count 3
    let e = s
        .store(
            now,
            r,
            false,
            &kd(
                ARRAY,
                0,
                vec![value(ValueKey::Index(APPEND), 4, 60, b"d", &a)],
            ),
            &a,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::DataTooLarge);
}

#[test]
fn sip_registration_user_node_match() {
    // RFC 7904: dictionary at hash(AoR), key = the registering peer's Node-ID.
    let now = base_instant();
    let mut s = Storage::default();
    let a = alice();
    let r = hash_to_id(a.user_name.as_bytes());
    let mine = ValueKey::Key(a.node_id.to_be_bytes().to_vec());
    s.store(
        now,
        r,
        false,
        &kd(
            KindId::SIP_REGISTRATION,
            0,
            vec![value(mine, 1, 3600, b"sip:alice@192.0.2.7", &a)],
        ),
        &a,
    )
    .unwrap();
    // alice's user name but another node's key: refused
    let other = ValueKey::Key(Id(0x2222).to_be_bytes().to_vec());
    let e = s
        .store(
            now,
            r,
            false,
            &kd(
                KindId::SIP_REGISTRATION,
                0,
                vec![value(other, 2, 3600, b"x", &a)],
            ),
            &a,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::Forbidden(AccessPolicy::UserNodeMatch));
    let got = fetch_one(&s, now, r, KindId::SIP_REGISTRATION, Select::Keys(vec![]));
    assert_eq!(got.values.len(), 1);
}

#[test]
fn node_match_and_node_multiple() {
    let now = base_instant();
    let mut s = Storage::new(registry());
    let n = Signer {
        node_id: Id(0xabcdef),
        user_name: String::new(),
    };
    // NODE-MATCH: Resource-ID = hash(Node-ID)
    let r = hash_to_id(&n.node_id.to_be_bytes());
    s.store(
        now,
        r,
        false,
        &kd(
            NODE_MATCH,
            0,
            vec![value(ValueKey::Single, 1, 60, b"x", &n)],
        ),
        &n,
    )
    .unwrap();
    let e = s
        .store(
            now,
            Id(r.0 ^ 1),
            false,
            &kd(
                NODE_MATCH,
                0,
                vec![value(ValueKey::Single, 1, 60, b"x", &n)],
            ),
            &n,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::Forbidden(AccessPolicy::NodeMatch));
    // NODE-MULTIPLE: Resource-ID = hash(Node-ID || i), 1 <= i <= max (4)
    let at = |i: u32| {
        let mut b = n.node_id.to_be_bytes().to_vec();
        b.extend_from_slice(&i.to_be_bytes());
        hash_to_id(&b)
    };
    s.store(
        now,
        at(4),
        false,
        &kd(
            NODE_MULTI,
            0,
            vec![value(ValueKey::Single, 1, 60, b"x", &n)],
        ),
        &n,
    )
    .unwrap();
    let e = s
        .store(
            now,
            at(5),
            false,
            &kd(
                NODE_MULTI,
                0,
                vec![value(ValueKey::Single, 1, 60, b"x", &n)],
            ),
            &n,
        )
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::Forbidden(AccessPolicy::NodeMultiple { max: 4 })
    );
}

#[test]
fn channel_kinds_policies() {
    let now = base_instant();
    let mut s = Storage::default();
    let relay = Signer {
        node_id: Id(0x77),
        user_name: String::new(),
    };
    let other = Signer {
        node_id: Id(0x88),
        user_name: String::new(),
    };
    let ch = hash_to_id(b"channel:news");
    // channel -> relays: a relay writes only under its own Node-ID
    let own = ValueKey::Key(relay.node_id.to_be_bytes().to_vec());
    s.store(
        now,
        ch,
        false,
        &kd(
            KindId::CHANNEL_RELAYS,
            0,
            vec![value(own.clone(), 1, 60, b"192.0.2.1:5004", &relay)],
        ),
        &relay,
    )
    .unwrap();
    let e = s
        .store(
            now,
            ch,
            false,
            &kd(
                KindId::CHANNEL_RELAYS,
                0,
                vec![value(own, 2, 60, b"evil", &other)],
            ),
            &other,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::Forbidden(AccessPolicy::NodeKeyMatch));
    // directory: the first writer owns an entry
    let dir = hash_to_id(b"directory");
    let key = ValueKey::Key(b"news".to_vec());
    s.store(
        now,
        dir,
        false,
        &kd(
            KindId::CHANNEL_DIRECTORY,
            0,
            vec![value(key.clone(), 1, 60, b"v1", &relay)],
        ),
        &relay,
    )
    .unwrap();
    let e = s
        .store(
            now,
            dir,
            false,
            &kd(
                KindId::CHANNEL_DIRECTORY,
                0,
                vec![value(key.clone(), 2, 60, b"v2", &other)],
            ),
            &other,
        )
        .unwrap_err();
    assert_eq!(e, StoreError::Forbidden(AccessPolicy::FirstWriterOwns));
    s.store(
        now,
        dir,
        false,
        &kd(
            KindId::CHANNEL_DIRECTORY,
            0,
            vec![value(key, 3, 60, b"v3", &relay)],
        ),
        &relay,
    )
    .unwrap();
}

#[test]
fn replica_store_keeps_the_responsible_generation_and_export_round_trips() {
    let now = base_instant();
    let mut primary = Storage::default();
    let relay = Signer {
        node_id: Id(0x77),
        user_name: String::new(),
    };
    let ch = hash_to_id(b"channel:sport");
    let own = ValueKey::Key(relay.node_id.to_be_bytes().to_vec());
    for t in 1..=3 {
        primary
            .store(
                now,
                ch,
                false,
                &kd(
                    KindId::CHANNEL_RELAYS,
                    0,
                    vec![value(own.clone(), t, 100, b"r", &relay)],
                ),
                &relay,
            )
            .unwrap();
    }
    let later = now + Duration::from_secs(40);
    let exported = primary.export(later, ch);
    assert_eq!(exported[0].generation, 3);
    assert_eq!(exported[0].values[0].lifetime, 60, "remaining lifetime");
    // the replica peer stores it as a replica: generation kept, not bumped
    let mut replica = Storage::default();
    let peer = Signer {
        node_id: Id(0x99),
        user_name: String::new(),
    };
    let g = replica.store(later, ch, true, &exported, &peer).unwrap();
    assert_eq!(g[0].generation, 3);
    let got = fetch_one(
        &replica,
        later,
        ch,
        KindId::CHANNEL_RELAYS,
        Select::Keys(vec![]),
    );
    assert_eq!(got.values.len(), 1);
    // and it expires when the original would
    assert_eq!(replica.expire(now + Duration::from_secs(101)), 1);
}
