//! The behaviour every backend must have. Each backend's test binary runs all of it through
//! [`conformance_tests!`](crate::conformance_tests), so SQLite and PostgreSQL are held to
//! exactly the same checks. Every check works in brands of its own, so checks can share a
//! database and run in parallel.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use huiyuan_domain::access::Role;
use huiyuan_domain::ids::{ApiKeyId, AuditEventId, BrandId, MemberId, OperatorId, StoreId};
use huiyuan_domain::loyalty::purchase::PurchaseStatus;
use huiyuan_domain::member::MemberStatus;
use time::{Duration, OffsetDateTime};

use crate::records::*;
use crate::{Storage, StoreError};

/// Generates one `#[tokio::test]` per conformance check, given an async fn that opens a store.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@each $open;
            brands_round_trip, stores_are_scoped_by_brand, members_round_trip_with_optimistic_updates,
            identities_are_unique_per_brand, concurrent_identity_claims_leave_one_owner, member_search_filters,
            tags_add_remove_and_move, member_codes_are_used_once, audit_is_listed_newest_first,
            idempotency_keys_claim_complete_release, sessions_and_api_keys, uncommitted_writes_vanish,
            a_read_is_one_snapshot,
            operator_usernames_are_unique, health_reports_current_migrations,
            bulk_writes_and_lists_span_statements, purchase_facts_page_by_member_then_time,
            analytics_readers_filter_sum_and_count, outbox_keeps_every_event_once,
            posting_writes_land_together, postings_written_ahead_commit_or_vanish_together);
    };
    (@each $open:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let storage: std::sync::Arc<dyn $crate::Storage> = $open().await;
                $crate::conformance::$name(storage).await;
            }
        )*
    };
}

fn random() -> u128 {
    let a = RandomState::new().build_hasher().finish();
    let b = RandomState::new().build_hasher().finish();
    (u128::from(a) << 64) | u128::from(b)
}

/// Now, to the millisecond: the precision both backends keep.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .expect("valid nanosecond")
}

/// Milliseconds for test IDs, strictly increasing so that creation order is ID order (ULIDs
/// made within one millisecond are not ordered).
fn ms() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = (now().unix_timestamp_nanos() / 1_000_000) as u64;
    let next = |last: u64| last.max(now) + 1;
    let ordering = std::sync::atomic::Ordering::SeqCst;
    LAST.fetch_update(ordering, ordering, |last| Some(next(last)))
        .map_or(now, next)
}

pub async fn new_brand(s: &dyn Storage) -> BrandRecord {
    let id = BrandId::generate(ms(), random());
    let b = BrandRecord {
        slug: format!("b{}", id.as_str()[4..].to_lowercase()),
        id,
        name: "測試品牌".into(),
        currency: "CNY".into(),
        timezone: "Asia/Shanghai".into(),
        code_key_ciphertext: vec![1, 2, 3],
        created_at: now(),
    };
    let mut tx = s.write().await.unwrap();
    tx.insert_brand(&b).await.unwrap();
    tx.commit().await.unwrap();
    b
}

pub fn member(brand: &BrandId) -> MemberRecord {
    MemberRecord {
        id: MemberId::generate(ms(), random()),
        brand_id: brand.clone(),
        status: MemberStatus::Active,
        merged_into: None,
        pii_ciphertext: Some(vec![9, 9, 9]),
        birth_month: Some(5),
        gender: Some("female".into()),
        city: Some("上海".into()),
        household_size: Some(3),
        channel: "app".into(),
        store_id: None,
        consents: r#"{"sms":true,"email":false,"push":false}"#.into(),
        attributes: "{}".into(),
        enrolled_at: now(),
        updated_at: now(),
        erased_at: None,
        version: 1,
    }
}

async fn insert_member(s: &dyn Storage, m: &MemberRecord) {
    let mut tx = s.write().await.unwrap();
    tx.insert_member(m).await.unwrap();
    tx.commit().await.unwrap();
}

fn identity(brand: &BrandId, member: &MemberId, hash: &[u8]) -> IdentityRecord {
    IdentityRecord {
        brand_id: brand.clone(),
        kind: "phone".into(),
        hash: hash.to_vec(),
        member_id: member.clone(),
        value_ciphertext: vec![0xAA; 8],
    }
}

pub async fn brands_round_trip(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.get_brand(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(tx.get_brand_by_slug(&b.slug).await.unwrap(), Some(b.clone()));
    assert!(tx.list_brands().await.unwrap().contains(&b));
    drop(tx);
    let mut dup = b.clone();
    dup.id = BrandId::generate(ms(), random());
    let mut tx = s.write().await.unwrap();
    assert!(matches!(
        tx.insert_brand(&dup).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn stores_are_scoped_by_brand(s: Arc<dyn Storage>) {
    let a = new_brand(&*s).await;
    let b = new_brand(&*s).await;
    let mut ids = Vec::new();
    let mut tx = s.write().await.unwrap();
    for (i, brand) in [&a, &a, &a, &b].into_iter().enumerate() {
        let st = StoreRecord {
            id: StoreId::generate(ms(), random()),
            brand_id: brand.id.clone(),
            code: format!("S{i}"),
            name: format!("門店 {i}"),
            city: Some("杭州".into()),
            region: None,
            active: true,
            created_at: now(),
        };
        tx.insert_store(&st).await.unwrap();
        ids.push(st);
    }
    tx.commit().await.unwrap();

    let mut tx = s.read().await.unwrap();
    let listed = tx.list_stores(&a.id, &Page::first(10)).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|st| st.brand_id == a.id));
    assert_eq!(
        tx.get_store(&a.id, &ids[3].id).await.unwrap(),
        None,
        "brand A must not see brand B's store"
    );
    assert_eq!(
        tx.get_store(&b.id, &ids[3].id).await.unwrap(),
        Some(ids[3].clone())
    );

    let first = tx.list_stores(&a.id, &Page::first(2)).await.unwrap();
    let rest = tx
        .list_stores(
            &a.id,
            &Page {
                limit: 2,
                starting_after: Some(first[1].id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(rest.len(), 1);
    assert!(rest[0].id < first[1].id, "pages go newest first without overlap");
    drop(tx);

    let mut tx = s.write().await.unwrap();
    let mut dup = ids[0].clone();
    dup.id = StoreId::generate(ms(), random());
    assert!(
        matches!(tx.insert_store(&dup).await, Err(StoreError::Conflict(_))),
        "store codes are unique per brand"
    );
}

pub async fn members_round_trip_with_optimistic_updates(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let other = new_brand(&*s).await;
    let m = member(&b.id);
    insert_member(&*s, &m).await;
    let mut tx = s.write().await.unwrap();
    assert_eq!(tx.get_member(&b.id, &m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(tx.get_member(&other.id, &m.id).await.unwrap(), None);
    let mut changed = tx.lock_member(&b.id, &m.id).await.unwrap().unwrap();
    changed.city = None;
    changed.version += 1;
    tx.update_member(&changed).await.unwrap();
    // A writer that read version 1 loses.
    let mut stale = m.clone();
    stale.version = 2;
    stale.city = Some("北京".into());
    assert!(matches!(tx.update_member(&stale).await, Err(StoreError::Stale)));
    tx.commit().await.unwrap();
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.get_member(&b.id, &m.id).await.unwrap(), Some(changed));
    assert_eq!(tx.count_members(&b.id).await.unwrap(), 1);
}

pub async fn identities_are_unique_per_brand(s: Arc<dyn Storage>) {
    let a = new_brand(&*s).await;
    let b = new_brand(&*s).await;
    let (m1, m2, mb) = (member(&a.id), member(&a.id), member(&b.id));
    for m in [&m1, &m2, &mb] {
        insert_member(&*s, m).await;
    }
    let mut tx = s.write().await.unwrap();
    tx.insert_identity(&identity(&a.id, &m1.id, b"h1")).await.unwrap();
    assert!(matches!(
        tx.insert_identity(&identity(&a.id, &m2.id, b"h1")).await,
        Err(StoreError::Conflict(_))
    ));
    tx.commit().await.unwrap();
    let mut tx = s.write().await.unwrap();
    tx.insert_identity(&identity(&b.id, &mb.id, b"h1")).await.unwrap();
    assert_eq!(
        tx.find_identity(&a.id, "phone", b"h1").await.unwrap(),
        Some(m1.id.clone())
    );
    assert_eq!(
        tx.find_identity(&b.id, "phone", b"h1").await.unwrap(),
        Some(mb.id.clone())
    );
    assert_eq!(tx.find_identity(&a.id, "email", b"h1").await.unwrap(), None);
    assert_eq!(tx.move_identities(&a.id, &m1.id, &m2.id).await.unwrap(), 1);
    assert_eq!(
        tx.list_identities(&a.id, &m2.id).await.unwrap(),
        vec![identity(&a.id, &m2.id, b"h1")]
    );
    assert!(tx.delete_identity(&a.id, "phone", b"h1").await.unwrap());
    assert_eq!(tx.find_identity(&a.id, "phone", b"h1").await.unwrap(), None);
    assert_eq!(tx.delete_identities_of(&b.id, &mb.id).await.unwrap(), 1);
    tx.commit().await.unwrap();
}

/// Two tills enrolling the same phone at the same moment: one member, one conflict.
pub async fn concurrent_identity_claims_leave_one_owner(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        let brand = b.id.clone();
        tasks.push(tokio::spawn(async move {
            let m = member(&brand);
            let mut tx = s.write().await.unwrap();
            tx.insert_member(&m).await.unwrap();
            match tx.insert_identity(&identity(&brand, &m.id, b"same-phone")).await {
                Ok(()) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    tx.commit().await.map(|_| m.id).ok()
                }
                Err(StoreError::Conflict(_)) => None,
                Err(e) => panic!("unexpected error {e}"),
            }
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim may win");
    let mut tx = s.read().await.unwrap();
    assert_eq!(
        tx.find_identity(&b.id, "phone", b"same-phone").await.unwrap(),
        Some(winners[0].clone())
    );
    assert_eq!(
        tx.count_members(&b.id).await.unwrap(),
        1,
        "losers' members were rolled back"
    );
}

pub async fn member_search_filters(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let members: Vec<_> = (0..5).map(|_| member(&b.id)).collect();
    let mut tx = s.write().await.unwrap();
    for (i, m) in members.iter().enumerate() {
        tx.insert_member(m).await.unwrap();
        tx.insert_identity(&identity(&b.id, &m.id, format!("phone{i}").as_bytes()))
            .await
            .unwrap();
        let prefixes = if i < 2 {
            vec![b"wang".to_vec(), b"wangx".to_vec()]
        } else {
            vec![b"li".to_vec()]
        };
        tx.replace_name_prefixes(&b.id, &m.id, &prefixes).await.unwrap();
        if i % 2 == 0 {
            tx.add_tags(&b.id, &m.id, &["vip".into()]).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let mut tx = s.read().await.unwrap();
    let f = |identity: Option<(String, Vec<u8>)>, prefix: Option<&[u8]>, tag: Option<&str>| MemberFilter {
        identity,
        name_prefix_hash: prefix.map(<[u8]>::to_vec),
        tag: tag.map(str::to_owned),
        status: None,
        merged_into: None,
    };
    let by_phone = tx
        .list_members(
            &b.id,
            &f(Some(("phone".into(), b"phone3".to_vec())), None, None),
            &Page::first(10),
        )
        .await
        .unwrap();
    assert_eq!(
        by_phone.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&members[3].id]
    );
    let by_prefix = tx
        .list_members(&b.id, &f(None, Some(b"wang"), None), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(by_prefix.len(), 2);
    let by_tag = tx
        .list_members(&b.id, &f(None, None, Some("vip")), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(by_tag.len(), 3);
    let both = tx
        .list_members(&b.id, &f(None, Some(b"wang"), Some("vip")), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(
        both.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&members[0].id]
    );
    let page1 = tx
        .list_members(&b.id, &MemberFilter::default(), &Page::first(3))
        .await
        .unwrap();
    let page2 = tx
        .list_members(
            &b.id,
            &MemberFilter::default(),
            &Page {
                limit: 3,
                starting_after: Some(page1[2].id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 5);
    assert_eq!(page1[0].id, members[4].id, "newest first");
    // Replacing prefixes drops the old ones.
    drop(tx);
    let mut tx = s.write().await.unwrap();
    tx.replace_name_prefixes(&b.id, &members[0].id, &[b"zhao".to_vec()])
        .await
        .unwrap();
    let by_prefix = tx
        .list_members(&b.id, &f(None, Some(b"wang"), None), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(by_prefix.len(), 1);
}

pub async fn tags_add_remove_and_move(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let (m1, m2) = (member(&b.id), member(&b.id));
    insert_member(&*s, &m1).await;
    insert_member(&*s, &m2).await;
    let mut tx = s.write().await.unwrap();
    tx.add_tags(&b.id, &m1.id, &["b".into(), "a".into(), "a".into()])
        .await
        .unwrap();
    tx.add_tags(&b.id, &m2.id, &["a".into(), "c".into()])
        .await
        .unwrap();
    tx.remove_tags(&b.id, &m2.id, &["c".into()]).await.unwrap();
    assert_eq!(tx.list_tags(&b.id, &m1.id).await.unwrap(), vec!["a", "b"]);
    tx.move_tags(&b.id, &m1.id, &m2.id).await.unwrap();
    assert_eq!(tx.list_tags(&b.id, &m2.id).await.unwrap(), vec!["a", "b"]);
    assert!(tx.list_tags(&b.id, &m1.id).await.unwrap().is_empty());
}

pub async fn member_codes_are_used_once(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let m = member(&b.id);
    insert_member(&*s, &m).await;
    let code = MemberCodeRecord {
        brand_id: b.id.clone(),
        nonce: format!("n{}", random()),
        code_hash: random().to_be_bytes().to_vec(),
        member_id: m.id.clone(),
        expires_at: now() + Duration::seconds(60),
        used_at: None,
        used_by: None,
    };
    let other = new_brand(&*s).await;
    let mut tx = s.write().await.unwrap();
    tx.insert_member_code(&code).await.unwrap();
    tx.commit().await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..10 {
        let (s, brand, nonce) = (s.clone(), b.id.clone(), code.nonce.clone());
        tasks.push(tokio::spawn(async move {
            let mut tx = s.write().await.unwrap();
            let won = tx
                .use_member_code(&brand, &nonce, now(), &format!("till-{i}"))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            won
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "a code is used exactly once");
    let mut tx = s.write().await.unwrap();
    let stored = tx
        .find_member_code_by_hash(&b.id, &code.code_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.used_at.is_some() && stored.used_by.is_some());
    assert_eq!(
        tx.find_member_code_by_nonce(&b.id, &code.nonce)
            .await
            .unwrap()
            .unwrap()
            .member_id,
        m.id
    );
    assert_eq!(
        tx.find_member_code_by_nonce(&other.id, &code.nonce)
            .await
            .unwrap(),
        None
    );
    assert!(tx.purge_member_codes(now() + Duration::minutes(5)).await.unwrap() >= 1);
    assert_eq!(
        tx.find_member_code_by_nonce(&b.id, &code.nonce).await.unwrap(),
        None
    );
}

pub async fn audit_is_listed_newest_first(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let mut tx = s.write().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4u64 {
        let a = AuditRecord {
            id: AuditEventId::generate(ms() + i, random()),
            brand_id: b.id.clone(),
            actor_kind: "operator".into(),
            actor_id: if i == 0 { "opr_a".into() } else { "opr_b".into() },
            action: if i % 2 == 0 {
                "member.enrolled".into()
            } else {
                "member.updated".into()
            },
            target_kind: "member".into(),
            target_id: format!("mem_{}", i % 2),
            diff: "{}".into(),
            request_id: Some("req-1".into()),
            created_at: now(),
        };
        tx.insert_audit(&a).await.unwrap();
        ids.push(a);
    }
    tx.commit().await.unwrap();
    let mut tx = s.read().await.unwrap();
    let all = tx
        .list_audit(&b.id, &AuditFilter::default(), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(all.first(), ids.last());
    assert_eq!(all.len(), 4);
    let f = AuditFilter {
        target_id: Some("mem_1".into()),
        ..Default::default()
    };
    assert_eq!(tx.list_audit(&b.id, &f, &Page::first(10)).await.unwrap().len(), 2);
    let f = AuditFilter {
        actor_id: Some("opr_a".into()),
        action: Some("member.enrolled".into()),
        ..Default::default()
    };
    assert_eq!(
        tx.list_audit(&b.id, &f, &Page::first(10)).await.unwrap(),
        vec![ids[0].clone()]
    );
}

pub async fn idempotency_keys_claim_complete_release(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let claim = IdempotencyRecord {
        brand_id: b.id.clone(),
        scope: "key_x".into(),
        key: "k1".into(),
        request_hash: vec![1; 32],
        status: None,
        body: None,
        created_at: now(),
    };
    let mut tx = s.write().await.unwrap();
    let unseen = tx.get_idempotency_key(&b.id, "key_x", "k1").await.unwrap();
    assert_eq!(unseen, None);
    assert_eq!(tx.claim_idempotency_key(&claim).await.unwrap(), None);
    let seen = tx.get_idempotency_key(&b.id, "key_x", "k1").await.unwrap();
    assert_eq!(seen.map(|r| r.request_hash), Some(vec![1; 32]));
    let again = tx.claim_idempotency_key(&claim).await.unwrap().unwrap();
    assert_eq!(again.status, None, "still in progress");
    tx.complete_idempotency_key(&b.id, "key_x", "k1", 201, b"{\"id\":1}")
        .await
        .unwrap();
    let done = tx.claim_idempotency_key(&claim).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.body.as_deref()),
        (Some(201), Some(&b"{\"id\":1}"[..]))
    );
    // A completed key is never released.
    tx.release_idempotency_key(&b.id, "key_x", "k1").await.unwrap();
    assert!(tx.claim_idempotency_key(&claim).await.unwrap().is_some());
    // Another scope has its own key space.
    let other = IdempotencyRecord {
        scope: "key_y".into(),
        ..claim.clone()
    };
    assert_eq!(tx.claim_idempotency_key(&other).await.unwrap(), None);
    tx.release_idempotency_key(&b.id, "key_y", "k1").await.unwrap();
    assert_eq!(
        tx.claim_idempotency_key(&other).await.unwrap(),
        None,
        "a released key can be claimed again"
    );
    assert!(
        tx.purge_idempotency_keys(now() + Duration::hours(25))
            .await
            .unwrap()
            >= 2
    );
    assert_eq!(tx.claim_idempotency_key(&claim).await.unwrap(), None);
}

pub async fn sessions_and_api_keys(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let other = new_brand(&*s).await;
    let op = operator(&b.id);
    let mut tx = s.write().await.unwrap();
    tx.insert_operator(&op).await.unwrap();
    let session = SessionRecord {
        token_hash: random().to_be_bytes().to_vec(),
        operator_id: op.id.clone(),
        brand_id: b.id.clone(),
        created_at: now(),
        expires_at: now() + Duration::hours(8),
    };
    tx.insert_session(&session).await.unwrap();
    assert_eq!(
        tx.find_session(&session.token_hash).await.unwrap(),
        Some(session.clone())
    );
    assert!(tx.delete_session(&session.token_hash).await.unwrap());
    assert_eq!(tx.find_session(&session.token_hash).await.unwrap(), None);
    tx.insert_session(&session).await.unwrap();
    assert_eq!(tx.delete_sessions_of(&op.id).await.unwrap(), 1);

    let key = ApiKeyRecord {
        id: ApiKeyId::generate(ms(), random()),
        brand_id: b.id.clone(),
        name: "POS".into(),
        role: Role::Clerk,
        prefix: format!("hy_{}", random() % 1_000_000_000),
        secret_hash: vec![7; 32],
        created_by: op.id.to_string(),
        created_at: now(),
        revoked_at: None,
    };
    tx.insert_api_key(&key).await.unwrap();
    assert_eq!(
        tx.find_api_key_by_prefix(&key.prefix).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        tx.list_api_keys(&b.id, &Page::first(10)).await.unwrap(),
        vec![key.clone()]
    );
    assert!(
        !tx.revoke_api_key(&other.id, &key.id, now()).await.unwrap(),
        "another brand cannot revoke it"
    );
    assert!(tx.revoke_api_key(&b.id, &key.id, now()).await.unwrap());
    assert!(
        !tx.revoke_api_key(&b.id, &key.id, now()).await.unwrap(),
        "revoking twice changes nothing"
    );
    assert!(tx
        .get_api_key(&b.id, &key.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
}

fn operator(brand: &BrandId) -> OperatorRecord {
    OperatorRecord {
        id: OperatorId::generate(ms(), random()),
        brand_id: brand.clone(),
        username: format!("op{}", random()),
        display_name: "店長".into(),
        role: Role::Admin,
        password_hash: "$argon2id$test".into(),
        disabled: false,
        created_at: now(),
    }
}

pub async fn uncommitted_writes_vanish(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let m = member(&b.id);
    {
        let mut tx = s.write().await.unwrap();
        tx.insert_member(&m).await.unwrap();
        // dropped without commit
    }
    let mut tx = s.read().await.unwrap();
    assert_eq!(tx.get_member(&b.id, &m.id).await.unwrap(), None);
}

/// A read transaction sees the database as of its first statement: a write committed after
/// that is invisible to it (the verifier and statements read several queries as one).
pub async fn a_read_is_one_snapshot(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let first = member(&b.id);
    insert_member(&*s, &first).await;
    let mut read = s.read().await.unwrap();
    assert!(read.get_member(&b.id, &first.id).await.unwrap().is_some());
    let later = member(&b.id);
    insert_member(&*s, &later).await;
    assert_eq!(read.get_member(&b.id, &later.id).await.unwrap(), None);
    drop(read);
    let mut fresh = s.read().await.unwrap();
    assert!(fresh.get_member(&b.id, &later.id).await.unwrap().is_some());
}

/// Bulk writes too large for one statement are split, and a list of keys of any length is one
/// parameter; re-sending the same rows writes nothing.
pub async fn bulk_writes_and_lists_span_statements(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let events: Vec<OutboxRecord> = (0..5_000)
        .map(|i| OutboxRecord {
            id: format!("evt_bulk_{i:05}_{}", random()),
            brand_id: b.id.clone(),
            event_type: "bulk.test".into(),
            subject: format!("s{i}"),
            payload: "{}".into(),
            dedupe_key: (i % 2 == 0).then(|| format!("bulk-{i}")),
            created_at: now(),
        })
        .collect();
    let mut tx = s.write().await.unwrap();
    assert_eq!(
        tx.insert_events(&events).await.unwrap(),
        5_000,
        "7 values a row: two statements"
    );
    assert_eq!(tx.insert_events(&events).await.unwrap(), 0);
    let members: Vec<MemberRecord> = (0..3).map(|_| member(&b.id)).collect();
    for m in &members {
        tx.insert_member(m).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = s.read().await.unwrap();
    let mut ids: Vec<MemberId> = members.iter().map(|m| m.id.clone()).collect();
    // Unknown keys are simply absent.
    let mut asked = ids.clone();
    asked.extend((0..2_000).map(|_| MemberId::generate(ms(), random())));
    let mut found: Vec<MemberId> = tx
        .get_members(&b.id, &asked)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
}

/// [`crate::Tx::write_postings`] writes every kind of row at once (on PostgreSQL in one
/// statement, where a column of NULLs only must still take its column's type), updates the
/// changed lots and the account, and counts only the purchases it wrote.
pub async fn posting_writes_land_together(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let m = member(&b.id);
    let at = now();
    let account = AccountRecord {
        brand_id: b.id.clone(),
        member_id: m.id.clone(),
        available: 0,
        pending: 0,
        debt: 0,
        last_seq: 0,
        last_hash: vec![0; 32],
        tier_code: None,
        tier_since: None,
        tier_review_at: None,
        tier_grace_until: None,
        updated_at: at,
    };
    let lot = |n: u32, remaining: i64| LotRecord {
        id: format!("lot_{n}_{}", random()),
        brand_id: b.id.clone(),
        member_id: m.id.clone(),
        status: huiyuan_domain::loyalty::ledger::LotStatus::Active,
        source: "earn".into(),
        reference: None,
        amount: 100,
        remaining,
        earned_at: at,
        matures_at: None,
        expires_at: None,
        expiry_notified: false,
    };
    let old_lot = lot(0, 100);
    let mut tx = s.write().await.unwrap();
    tx.insert_member(&m).await.unwrap();
    tx.ensure_accounts(std::slice::from_ref(&account)).await.unwrap();
    tx.insert_lots(std::slice::from_ref(&old_lot)).await.unwrap();
    tx.commit().await.unwrap();

    let purchases = [sale(&m, 1, at), sale(&m, 2, at)];
    let new_lot = lot(1, 100);
    let changed = LotRecord {
        remaining: 40,
        ..old_lot.clone()
    };
    let entry = LedgerEntryRecord {
        id: format!("ent_{}", random()),
        brand_id: b.id.clone(),
        member_id: m.id.clone(),
        seq: 1,
        kind: "earn".into(),
        available_delta: 100,
        pending_delta: 0,
        debt_delta: 0,
        lot_id: Some(new_lot.id.clone()),
        reference: None,
        programme_version: None,
        detail: "{}".into(),
        actor: "test".into(),
        created_at: at,
        prev_hash: vec![0; 32],
        hash: vec![1; 32],
    };
    let saved = AccountRecord {
        available: 140,
        last_seq: 1,
        last_hash: vec![1; 32],
        tier_code: Some("silver".into()),
        ..account.clone()
    };
    let events: Vec<OutboxRecord> = (0..2).map(|i| posting_event(&m, i, at)).collect();
    let upgrade = TierChangeRecord {
        id: format!("tch_{}", random()),
        brand_id: b.id.clone(),
        member_id: m.id.clone(),
        from_tier: None,
        to_tier: "silver".into(),
        reason: "purchase W-1".into(),
        created_at: at,
    };
    let mut tx = s.write().await.unwrap();
    let writes = crate::PostingWrites {
        purchases: &purchases,
        new_lots: std::slice::from_ref(&new_lot),
        changed_lots: std::slice::from_ref(&changed),
        entries: std::slice::from_ref(&entry),
        accounts: std::slice::from_ref(&saved),
        tier_changes: std::slice::from_ref(&upgrade),
        events: &events,
    };
    assert_eq!(tx.write_postings(&writes).await.unwrap(), 2);
    assert_eq!(
        tx.write_postings(&crate::PostingWrites::default()).await.unwrap(),
        0,
        "nothing to write"
    );
    tx.commit().await.unwrap();

    let mut tx = s.write().await.unwrap();
    let again = crate::PostingWrites {
        purchases: &purchases[..1],
        ..crate::PostingWrites::default()
    };
    assert_eq!(
        tx.write_postings(&again).await.unwrap(),
        0,
        "an order the brand has is skipped"
    );
    drop(tx);

    let mut read = s.read().await.unwrap();
    let orders: Vec<String> = purchases.iter().map(|p| p.order_id.clone()).collect();
    let mut stored = read.get_purchases(&b.id, &orders).await.unwrap();
    stored.sort_by(|x, y| x.order_id.cmp(&y.order_id));
    let mut want = purchases.to_vec();
    want.sort_by(|x, y| x.order_id.cmp(&y.order_id));
    assert_eq!(stored, want);
    let mut lots = read
        .get_lots(&b.id, &[old_lot.id.clone(), new_lot.id.clone()])
        .await
        .unwrap();
    lots.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![changed, new_lot];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(lots, want);
    assert_eq!(read.chain(&b.id, &m.id).await.unwrap(), vec![entry]);
    assert_eq!(read.get_account(&b.id, &m.id).await.unwrap(), Some(saved));
    assert_eq!(read.list_tier_changes(&b.id, &m.id).await.unwrap(), vec![upgrade]);
    assert_eq!(read.list_events(&b.id, None, 10).await.unwrap(), events);
}

/// A sale of 50 yuan by `m`, with a fresh order ID.
fn sale(m: &MemberRecord, n: u32, at: OffsetDateTime) -> PurchaseRecord {
    PurchaseRecord {
        brand_id: m.brand_id.clone(),
        order_id: format!("W-{n}-{}", random()),
        id: format!("pur_{}", random()),
        member_id: m.id.clone(),
        store_id: None,
        channel: "pos".into(),
        occurred_at: at,
        paid_amount: 5_000,
        eligible_amount: 5_000,
        points: 50,
        points_reversed: 0,
        refunded_amount: 0,
        status: PurchaseStatus::Completed,
        lines: "[]".into(),
        earning: "{}".into(),
        programme_version: 1,
        created_at: at,
    }
}

/// An event about `m` with a fresh ID and no dedupe key.
fn posting_event(m: &MemberRecord, i: u32, at: OffsetDateTime) -> OutboxRecord {
    OutboxRecord {
        id: format!("evt_{:020}_{i}_{}", ms(), random()),
        brand_id: m.brand_id.clone(),
        event_type: "posting.test".into(),
        subject: m.id.to_string(),
        payload: "{}".into(),
        dedupe_key: None,
        created_at: at,
    }
}

/// Rows written ahead ([`crate::Tx::write_postings_ahead`]) are seen by the transaction's next
/// read and committed with it. A purchase skipped because its order is already stored
/// ([`StoreError::Stale`]) or a row the database refuses fails the transaction at the latest
/// by its next call, and nothing it wrote ahead is kept.
pub async fn postings_written_ahead_commit_or_vanish_together(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let m = member(&b.id);
    let at = now();
    insert_member(&*s, &m).await;
    let orders = |sales: &[&PurchaseRecord]| sales.iter().map(|p| p.order_id.clone()).collect::<Vec<_>>();

    let (first, second) = (sale(&m, 1, at), sale(&m, 2, at));
    let event = posting_event(&m, 0, at);
    let mut tx = s.write().await.unwrap();
    let ahead = |purchases, events| crate::PostingWrites {
        purchases,
        events,
        ..crate::PostingWrites::default()
    };
    tx.write_postings_ahead(&ahead(std::slice::from_ref(&first), std::slice::from_ref(&event)))
        .await
        .unwrap();
    tx.write_postings_ahead(&ahead(std::slice::from_ref(&second), &[]))
        .await
        .unwrap();
    let seen = tx
        .get_purchases(&b.id, &orders(&[&first, &second]))
        .await
        .unwrap();
    assert_eq!(seen.len(), 2, "the transaction reads what it wrote ahead");
    tx.commit().await.unwrap();

    // The first sale again, beside a new one: the whole transaction is refused as stale.
    let third = sale(&m, 3, at);
    let mut tx = s.write().await.unwrap();
    let again = [third.clone(), first.clone()];
    let outcome = match tx.write_postings_ahead(&ahead(&again, &[])).await {
        Ok(()) => tx.commit().await,
        Err(e) => Err(e),
    };
    assert!(matches!(outcome, Err(StoreError::Stale)), "{outcome:?}");

    // An event ID already stored is refused, by the call or by the next one.
    let fourth = sale(&m, 4, at);
    let mut tx = s.write().await.unwrap();
    let refused = async {
        tx.write_postings_ahead(&ahead(
            std::slice::from_ref(&fourth),
            std::slice::from_ref(&event),
        ))
        .await?;
        tx.get_purchases(&b.id, &orders(&[&fourth])).await
    }
    .await;
    assert!(refused.is_err(), "{refused:?}");
    drop(tx);

    let mut read = s.read().await.unwrap();
    let mut stored: Vec<String> = read
        .get_purchases(&b.id, &orders(&[&first, &second, &third, &fourth]))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.order_id)
        .collect();
    stored.sort();
    assert_eq!(stored, orders(&[&first, &second]));
    assert_eq!(read.list_events(&b.id, None, 10).await.unwrap(), vec![event]);
}

/// Every event without a dedupe key is kept; one with a key is kept once per brand (another
/// brand may use the same key); the same event sent twice lands once; each brand lists its
/// own events in ID order. Planner statistics can be refreshed at any time.
pub async fn outbox_keeps_every_event_once(s: Arc<dyn Storage>) {
    let a = new_brand(&*s).await;
    let b = new_brand(&*s).await;
    let event = |brand: &BrandRecord, key: Option<&str>| OutboxRecord {
        id: format!("evt_{:020}_{}", ms(), random()),
        brand_id: brand.id.clone(),
        event_type: "outbox.test".into(),
        subject: brand.id.to_string(),
        payload: "{}".into(),
        dedupe_key: key.map(str::to_owned),
        created_at: now(),
    };
    let plain = [event(&a, None), event(&a, None)];
    let keyed = event(&a, Some("reminder-1"));
    let mut tx = s.write().await.unwrap();
    assert_eq!(tx.insert_events(&plain).await.unwrap(), 2, "no key: both kept");
    assert!(tx.insert_event(&keyed).await.unwrap());
    assert!(
        !tx.insert_event(&event(&a, Some("reminder-1"))).await.unwrap(),
        "the same key again in the same brand is dropped"
    );
    assert!(
        !tx.insert_event(&plain[0]).await.unwrap(),
        "the same event again is dropped"
    );
    assert!(
        tx.insert_event(&event(&b, Some("reminder-1"))).await.unwrap(),
        "another brand's key is its own"
    );
    tx.commit().await.unwrap();
    s.refresh_statistics().await.unwrap();
    let mut read = s.read().await.unwrap();
    let listed: Vec<String> = read
        .list_events(&a.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        listed,
        [plain[0].id.clone(), plain[1].id.clone(), keyed.id.clone()]
    );
    let after_first = read.list_events(&a.id, Some(&plain[0].id), 100).await.unwrap();
    assert_eq!(after_first.len(), 2);
    assert_eq!(read.list_events(&b.id, None, 100).await.unwrap().len(), 1);
}

pub async fn operator_usernames_are_unique(s: Arc<dyn Storage>) {
    let a = new_brand(&*s).await;
    let b = new_brand(&*s).await;
    let op = operator(&a.id);
    let mut tx = s.write().await.unwrap();
    tx.insert_operator(&op).await.unwrap();
    let mut clash = operator(&b.id);
    clash.username = op.username.clone();
    assert!(matches!(
        tx.insert_operator(&clash).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    let mut tx = s.write().await.unwrap();
    tx.insert_operator(&op).await.unwrap();
    let mut changed = op.clone();
    changed.disabled = true;
    changed.role = Role::Auditor;
    tx.update_operator(&changed).await.unwrap();
    assert_eq!(
        tx.find_operator_by_username(&op.username).await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(tx.get_operator(&b.id, &op.id).await.unwrap(), None);
    assert_eq!(
        tx.list_operators(&a.id, &Page::first(5)).await.unwrap(),
        vec![changed]
    );
}

pub async fn health_reports_current_migrations(s: Arc<dyn Storage>) {
    let h = s.health().await.unwrap();
    assert!(h.reachable && h.migrations_current, "{h:?}");
}

/// The analytics' reader: one brand's purchases, by member then time, resumable after a member;
/// net amounts and full refunds as stored.
pub async fn purchase_facts_page_by_member_then_time(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let other = new_brand(&*s).await;
    let mut tx = s.write().await.unwrap();
    let mut members: Vec<MemberRecord> = (0..3).map(|_| member(&b.id)).collect();
    let outsider = member(&other.id);
    for m in members.iter().chain([&outsider]) {
        tx.insert_member(m).await.unwrap();
    }
    members.sort_by(|x, y| x.id.cmp(&y.id));
    let purchase = |brand: &BrandId, m: &MemberId, n: i64, refunded: i64| PurchaseRecord {
        brand_id: brand.clone(),
        order_id: format!("F-{}-{n}", random()),
        id: format!("pur_{}", random()),
        member_id: m.clone(),
        store_id: None,
        channel: "pos".into(),
        occurred_at: now() - time::Duration::days(n),
        paid_amount: 1_000 * n,
        eligible_amount: 1_000 * n,
        points: 10 * n,
        points_reversed: 0,
        refunded_amount: refunded,
        status: if refunded == 1_000 * n {
            PurchaseStatus::Refunded
        } else {
            PurchaseStatus::Completed
        },
        lines: "[]".into(),
        earning: "{}".into(),
        programme_version: 1,
        created_at: now(),
    };
    let mut rows = vec![purchase(&other.id, &outsider.id, 1, 0)];
    for (i, m) in members.iter().enumerate() {
        for n in 1..=3 {
            let refunded = match (i, n) {
                (0, 2) => 2_000,
                (1, 3) => 500,
                _ => 0,
            };
            rows.push(purchase(&b.id, &m.id, n, refunded));
        }
    }
    let writes = crate::PostingWrites {
        purchases: &rows,
        ..crate::PostingWrites::default()
    };
    assert_eq!(tx.write_postings(&writes).await.unwrap(), 10);
    tx.commit().await.unwrap();
    let mut tx = s.read().await.unwrap();
    let all = tx
        .purchase_facts(&b.id, &PurchaseFilter::default(), None, 100)
        .await
        .unwrap();
    let seen: Vec<(MemberId, i64, bool)> = all
        .iter()
        .map(|f| (f.member_id.clone(), f.net_amount, f.refunded))
        .collect();
    let mut want = Vec::new();
    for (i, m) in members.iter().enumerate() {
        // Oldest first: 3 days ago, 2, 1.
        for n in [3, 2, 1] {
            let net = 1_000 * n
                - match (i, n) {
                    (0, 2) => 2_000,
                    (1, 3) => 500,
                    _ => 0,
                };
            want.push((m.id.clone(), net, i == 0 && n == 2));
        }
    }
    assert_eq!(seen, want);
    // A page of four ends inside the second member; resuming after the first continues there.
    let page = tx
        .purchase_facts(&b.id, &PurchaseFilter::default(), None, 4)
        .await
        .unwrap();
    assert_eq!(page.len(), 4);
    let rest = tx
        .purchase_facts(&b.id, &PurchaseFilter::default(), Some(&members[0].id), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].member_id, members[1].id);

    // Exports walk the brand's rows in ID order, page after page, and nothing of another brand.
    let mut want: Vec<String> = rows[1..].iter().map(|p| p.id.clone()).collect();
    want.sort();
    let first = tx.purchases_in_order(&b.id, None, 4).await.unwrap();
    let next = tx
        .purchases_in_order(&b.id, Some(&first[3].id), 100)
        .await
        .unwrap();
    let walked: Vec<String> = first.iter().chain(&next).map(|p| p.id.clone()).collect();
    assert_eq!(walked, want);
    let listed: Vec<MemberId> = tx
        .members_in_order(&b.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, members.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
    let after_first = tx
        .members_in_order(&b.id, Some(members[0].id.as_str()), 100)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 2);
    assert!(tx.entries_in_order(&b.id, None, 10).await.unwrap().is_empty());
    assert!(tx.coupons_in_order(&b.id, None, 10).await.unwrap().is_empty());

    // Totals since a few instants (summed by the database) and since many (an import's: summed
    // from the rows) agree, and match what the purchases say.
    let ids: Vec<MemberId> = members.iter().map(|m| m.id.clone()).collect();
    let few: Vec<OffsetDateTime> = [4, 2]
        .iter()
        .map(|d| now() - time::Duration::days(*d) - time::Duration::hours(1))
        .collect();
    let mut many: Vec<OffsetDateTime> = (0..40).map(|h| now() - time::Duration::hours(h * 3)).collect();
    many.extend(&few);
    let by_member =
        |v: Vec<(MemberId, Vec<PurchaseTotals>)>| v.into_iter().collect::<std::collections::HashMap<_, _>>();
    let all = |at: &[OffsetDateTime]| at.iter().map(|t| (*t, Sums::ALL)).collect::<Vec<_>>();
    let summed = by_member(tx.purchase_totals_since(&b.id, &ids, &all(&few)).await.unwrap());
    let walked = by_member(tx.purchase_totals_since(&b.id, &ids, &all(&many)).await.unwrap());
    // Asking for some sums only: those asked are the same, the others 0.
    let some = [
        (few[0], Sums::VISITS),
        (
            few[1],
            Sums {
                points: true,
                spend: true,
                visits: false,
            },
        ),
    ];
    let partial = by_member(tx.purchase_totals_since(&b.id, &ids, &some).await.unwrap());
    assert_eq!(summed.len(), 3);
    assert_eq!(walked.len(), 3);
    assert_eq!(partial.len(), 3);
    for (i, m) in ids.iter().enumerate() {
        assert_eq!(&walked[m][40..], &summed[m][..], "member {i}");
        let (older, newer) = (summed[m][0], summed[m][1]);
        assert_eq!(
            partial[m],
            vec![
                PurchaseTotals {
                    visits: older.visits,
                    ..Default::default()
                },
                PurchaseTotals { visits: 0, ..newer }
            ],
            "member {i}"
        );
        // Since 2 days and an hour ago: the purchases of 1 and 2 days ago.
        let want = |n: i64| {
            let refunded = match (i, n) {
                (0, 2) => 2_000,
                (1, 3) => 500,
                _ => 0,
            };
            (10 * n, 1_000 * n - refunded, i64::from(refunded != 1_000 * n))
        };
        let (p1, s1, v1) = want(1);
        let (p2, s2, v2) = want(2);
        let (p3, s3, v3) = want(3);
        assert_eq!(
            summed[m][1],
            PurchaseTotals {
                points: p1 + p2,
                spend: s1 + s2,
                visits: v1 + v2
            }
        );
        assert_eq!(
            summed[m][0],
            PurchaseTotals {
                points: p1 + p2 + p3,
                spend: s1 + s2 + s3,
                visits: v1 + v2 + v3
            }
        );
        // Since now: nothing; since 3 hours ago: nothing either (the newest was a day ago).
        assert_eq!(walked[m][0], PurchaseTotals::default());
        assert_eq!(walked[m][1], PurchaseTotals::default());
    }
}

/// The dashboard's readers: purchases by store and channel, baskets with their lines, enrolments
/// without merged duplicates, ledger movements summed per kind and hour, accounts per tier.
pub async fn analytics_readers_filter_sum_and_count(s: Arc<dyn Storage>) {
    let b = new_brand(&*s).await;
    let other = new_brand(&*s).await;
    let store = StoreRecord {
        id: StoreId::generate(ms(), random()),
        brand_id: b.id.clone(),
        code: "SH01".into(),
        name: "上海店".into(),
        city: None,
        region: None,
        active: true,
        created_at: now(),
    };
    let mut members: Vec<MemberRecord> = (0..3).map(|_| member(&b.id)).collect();
    members[1].channel = "pos".into();
    members[1].store_id = Some(store.id.clone());
    members[2].status = MemberStatus::Merged;
    let outsider = member(&other.id);
    let hour = now().unix_timestamp().div_euclid(3_600) * 3_600;
    let t1 = OffsetDateTime::from_unix_timestamp(hour - 7_200 + 60).unwrap();
    let t2 = t1 + Duration::hours(1);
    let mut tx = s.write().await.unwrap();
    tx.insert_store(&store).await.unwrap();
    for m in members.iter().chain([&outsider]) {
        tx.insert_member(m).await.unwrap();
    }
    let purchase =
        |m: &MemberRecord, store: Option<&StoreId>, channel: &str, status: PurchaseStatus| PurchaseRecord {
            brand_id: m.brand_id.clone(),
            order_id: format!("A-{}", random()),
            id: format!("pur_{}", random()),
            member_id: m.id.clone(),
            store_id: store.cloned(),
            channel: channel.into(),
            occurred_at: t1,
            paid_amount: 1_000,
            eligible_amount: 1_000,
            points: 10,
            points_reversed: 0,
            refunded_amount: 0,
            status,
            lines: r#"[{"sku":"TEE-001","category":"apparel","quantity":1,"amount":1000,"reward":false}]"#
                .into(),
            earning: "{}".into(),
            programme_version: 1,
            created_at: now(),
        };
    let rows = vec![
        purchase(&members[0], Some(&store.id), "pos", PurchaseStatus::Completed),
        purchase(&members[0], None, "app", PurchaseStatus::Completed),
        purchase(&members[1], Some(&store.id), "pos", PurchaseStatus::Refunded),
        purchase(&outsider, None, "app", PurchaseStatus::Completed),
    ];
    let writes = crate::PostingWrites {
        purchases: &rows,
        ..crate::PostingWrites::default()
    };
    tx.write_postings(&writes).await.unwrap();
    let entry = |m: &MemberRecord, seq: i64, kind: &str, at: OffsetDateTime, avail: i64, pending: i64| {
        LedgerEntryRecord {
            id: format!("ent_{}", random()),
            brand_id: m.brand_id.clone(),
            member_id: m.id.clone(),
            seq,
            kind: kind.into(),
            available_delta: avail,
            pending_delta: pending,
            debt_delta: 0,
            lot_id: None,
            reference: None,
            programme_version: None,
            detail: "{}".into(),
            actor: "system".into(),
            created_at: at,
            prev_hash: vec![0; 32],
            hash: vec![1; 32],
        }
    };
    let entries = [
        entry(&members[0], 1, "earn", t1, 0, 100),
        entry(&members[0], 2, "activate", t1 + Duration::minutes(5), 100, -100),
        entry(&members[1], 1, "earn", t1 + Duration::minutes(58), 40, 0),
        entry(&members[0], 3, "redeem", t2, -30, 0),
        entry(&outsider, 1, "earn", t1, 999, 0),
    ];
    let writes = crate::PostingWrites {
        entries: &entries,
        ..crate::PostingWrites::default()
    };
    tx.write_postings(&writes).await.unwrap();
    let account = |m: &MemberRecord, tier: Option<&str>| AccountRecord {
        brand_id: m.brand_id.clone(),
        member_id: m.id.clone(),
        available: if m.id == outsider.id { 999 } else { 100 },
        pending: 10,
        debt: 0,
        last_seq: 0,
        last_hash: vec![0; 32],
        tier_code: tier.map(str::to_owned),
        tier_since: None,
        tier_review_at: None,
        tier_grace_until: None,
        updated_at: now(),
    };
    tx.ensure_accounts(&[
        account(&members[0], Some("gold")),
        account(&members[1], None),
        account(&members[2], Some("gold")),
        account(&outsider, Some("gold")),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut tx = s.read().await.unwrap();
    let at_store = Some(store.id.clone());
    let app = Some("app".to_owned());
    for (store_id, channel, want) in [
        (None, None, 3),
        (at_store.clone(), None, 2),
        (None, app.clone(), 1),
        (at_store, app, 0),
    ] {
        let filter = PurchaseFilter { store_id, channel };
        let got = tx.purchase_facts(&b.id, &filter, None, 100).await.unwrap();
        assert_eq!(got.len(), want, "{filter:?}");
    }

    let baskets = tx.purchase_baskets(&b.id, None, 100).await.unwrap();
    assert_eq!(baskets.len(), 3);
    assert!(baskets
        .iter()
        .all(|p| p.lines.contains("TEE-001") && p.occurred_at == t1));
    assert_eq!(baskets.iter().filter(|p| p.refunded).count(), 1);

    let mut live: Vec<&MemberRecord> = members[..2].iter().collect();
    live.sort_by(|x, y| x.id.cmp(&y.id));
    let joined = tx.member_enrolments(&b.id, None, 100).await.unwrap();
    assert_eq!(
        joined.iter().map(|e| &e.member_id).collect::<Vec<_>>(),
        live.iter().map(|m| &m.id).collect::<Vec<_>>()
    );
    let pos = joined.iter().find(|e| e.member_id == members[1].id).unwrap();
    assert_eq!(
        (pos.channel.as_str(), pos.store_id.as_ref()),
        ("pos", Some(&store.id))
    );
    assert_eq!(pos.enrolled_at, members[1].enrolled_at);
    let rest = tx.member_enrolments(&b.id, Some(&live[0].id), 100).await.unwrap();
    assert_eq!(rest.len(), 1);

    let since = tx
        .ledger_flows(
            &b.id,
            3_600,
            Some(OffsetDateTime::from_unix_timestamp(hour - 3_600).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        since.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        vec!["redeem"]
    );
    // Three accounts of the brand, 110 points each; the other brand's are not counted.
    assert_eq!(tx.points_outstanding(&b.id).await.unwrap(), 330);
    let flows = tx.ledger_flows(&b.id, 3_600, None).await.unwrap();
    let slot1 = OffsetDateTime::from_unix_timestamp(hour - 7_200).unwrap();
    let seen: Vec<(&str, OffsetDateTime, i64, i64)> = flows
        .iter()
        .map(|f| (f.kind.as_str(), f.slot, f.points, f.entries))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("activate", slot1, 0, 1),
            ("earn", slot1, 140, 2),
            ("redeem", slot1 + Duration::hours(1), -30, 1),
        ]
    );

    let mut tiers = tx.tier_counts(&b.id).await.unwrap();
    tiers.sort();
    assert_eq!(tiers, vec![(None, 1), (Some("gold".to_owned()), 1)]);
}
