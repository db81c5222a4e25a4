//! The auth store's changes with etcd's errors, its persistence, and the
//! permission decision against a naive model.

use e2d_proto::authpb::permission::Type as PermissionType;
use e2d_proto::authpb::Permission;
use e2d_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserDeleteRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, PutRequest,
};
use e2d_proto::peer::auth_change::Change;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{AssignToken, AuthChange, Proposal, Requester, UserAdd, UserChangePassword};
use proptest::prelude::*;

use super::*;
use crate::error::Error;
use crate::storage::MemBackend;
use crate::StateMachine;

fn change(change: Change) -> AuthChange {
    AuthChange {
        change: Some(change),
    }
}

fn user_add(name: &str) -> AuthChange {
    change(Change::UserAdd(UserAdd {
        name: name.into(),
        password_hash: b"hash".to_vec(),
        no_password: false,
    }))
}

fn role_add(name: &str) -> AuthChange {
    change(Change::RoleAdd(AuthRoleAddRequest { name: name.into() }))
}

fn grant_role(user: &str, role: &str) -> AuthChange {
    change(Change::UserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    }))
}

fn grant(role: &str, perm_type: PermissionType, key: &[u8], range_end: &[u8]) -> AuthChange {
    change(Change::RoleGrantPermission(
        AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission {
                perm_type: perm_type as i32,
                key: key.to_vec(),
                range_end: range_end.to_vec(),
            }),
        },
    ))
}

fn enable() -> AuthChange {
    change(Change::Enable(AuthEnableRequest {}))
}

struct Fixture {
    store: AuthStore,
    backend: MemBackend,
}

impl Fixture {
    fn new() -> Self {
        Self {
            store: AuthStore::default(),
            backend: MemBackend::default(),
        }
    }

    fn apply(&mut self, change: AuthChange) -> Result<Changed, Error> {
        self.store.apply_change(&change, &mut self.backend, 0)
    }

    fn ok(&mut self, change: AuthChange) {
        self.apply(change).expect("change applies");
    }
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let mut f = Fixture::new();
    assert_eq!(f.apply(enable()), Err(Error::RootUserNotExist));
    f.ok(user_add(ROOT));
    assert_eq!(f.apply(enable()), Err(Error::RootRoleNotExist));
    f.ok(grant_role(ROOT, ROOT));
    let before = f.store.revision();
    f.ok(enable());
    assert!(f.store.is_enabled());
    assert_eq!(f.store.revision(), before, "enabling does not raise it");
    f.ok(enable());
}

#[test]
fn user_changes_answer_with_etcds_errors() {
    let mut f = Fixture::new();
    assert_eq!(f.apply(user_add("")), Err(Error::UserEmpty));
    f.ok(user_add("alice"));
    assert_eq!(f.apply(user_add("alice")), Err(Error::UserAlreadyExist));
    assert_eq!(f.apply(grant_role("bob", "r")), Err(Error::UserNotFound));
    assert_eq!(f.apply(grant_role("alice", "r")), Err(Error::RoleNotFound));
    f.ok(role_add("r"));
    f.ok(grant_role("alice", "r"));
    let revision = f.store.revision();
    f.ok(grant_role("alice", "r"));
    assert_eq!(
        f.store.revision(),
        revision,
        "a repeated grant changes nothing"
    );
    let revoke = |role: &str| {
        change(Change::UserRevokeRole(AuthUserRevokeRoleRequest {
            name: "alice".into(),
            role: role.into(),
        }))
    };
    assert_eq!(f.apply(revoke("other")), Err(Error::RoleNotGranted));
    f.ok(revoke("r"));
    let delete = |name: &str| {
        change(Change::UserDelete(AuthUserDeleteRequest {
            name: name.into(),
        }))
    };
    f.ok(delete("alice"));
    assert_eq!(f.apply(delete("alice")), Err(Error::UserNotFound));
}

#[test]
fn role_changes_answer_with_etcds_errors() {
    let mut f = Fixture::new();
    assert_eq!(f.apply(role_add("")), Err(Error::RoleEmpty));
    f.ok(role_add("r"));
    assert_eq!(f.apply(role_add("r")), Err(Error::RoleAlreadyExist));
    assert_eq!(
        f.apply(grant("x", PermissionType::Read, b"a", b"")),
        Err(Error::RoleNotFound)
    );
    assert_eq!(
        f.apply(grant("r", PermissionType::Read, b"b", b"a")),
        Err(Error::InvalidAuthMgmt)
    );
    assert_eq!(
        f.apply(change(Change::RoleGrantPermission(
            AuthRoleGrantPermissionRequest {
                name: "r".into(),
                perm: None,
            }
        ))),
        Err(Error::PermissionNotGiven)
    );
    f.ok(grant("r", PermissionType::Read, b"b", b"c"));
    f.ok(grant("r", PermissionType::Write, b"a", b""));
    f.ok(grant("r", PermissionType::Readwrite, b"b", b"c"));
    let perms = f.store.role_permissions("r").unwrap();
    let keys: Vec<_> = perms.iter().map(|p| (p.key.clone(), p.perm_type)).collect();
    assert_eq!(
        keys,
        vec![
            (b"a".to_vec(), PermissionType::Write as i32),
            (b"b".to_vec(), PermissionType::Readwrite as i32)
        ],
        "sorted by key, a grant on the same range replaces its type"
    );
    let revoke = |key: &[u8], range_end: &[u8]| {
        change(Change::RoleRevokePermission(
            AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: key.to_vec(),
                range_end: range_end.to_vec(),
            },
        ))
    };
    assert_eq!(f.apply(revoke(b"b", b"")), Err(Error::PermissionNotGranted));
    f.ok(revoke(b"b", b"c"));
    f.ok(user_add("alice"));
    f.ok(grant_role("alice", "r"));
    f.ok(change(Change::RoleDelete(AuthRoleDeleteRequest {
        role: "r".into(),
    })));
    assert!(
        f.store.user("alice").unwrap().roles.is_empty(),
        "holders lose it"
    );
    assert_eq!(
        f.apply(change(Change::RoleDelete(AuthRoleDeleteRequest {
            role: "r".into()
        }))),
        Err(Error::RoleNotFound)
    );
}

#[test]
fn root_stays_while_auth_is_enabled() {
    let mut f = Fixture::new();
    f.ok(user_add(ROOT));
    f.ok(role_add(ROOT));
    f.ok(grant_role(ROOT, ROOT));
    f.ok(enable());
    assert_eq!(
        f.apply(change(Change::UserDelete(AuthUserDeleteRequest {
            name: ROOT.into()
        }))),
        Err(Error::InvalidAuthMgmt)
    );
    assert_eq!(
        f.apply(change(Change::RoleDelete(AuthRoleDeleteRequest {
            role: ROOT.into()
        }))),
        Err(Error::InvalidAuthMgmt)
    );
    assert_eq!(
        f.apply(change(Change::UserRevokeRole(AuthUserRevokeRoleRequest {
            name: ROOT.into(),
            role: ROOT.into(),
        }))),
        Err(Error::InvalidAuthMgmt)
    );
    let root_perms = f.store.role_permissions(ROOT).unwrap();
    assert_eq!(root_perms[0].range_end, vec![0]);
    f.ok(change(Change::Disable(AuthDisableRequest {})));
    assert!(!f.store.is_enabled());
}

#[test]
fn every_change_raises_the_revision_and_persists() {
    let mut f = Fixture::new();
    assert_eq!(f.store.revision(), FIRST_REVISION);
    f.ok(user_add("alice"));
    f.ok(role_add("r"));
    f.ok(grant("r", PermissionType::Read, b"k", b""));
    f.ok(grant_role("alice", "r"));
    assert_eq!(f.store.revision(), FIRST_REVISION + 4);
    let loaded = AuthStore::load(&f.backend, SimpleTokens::default()).unwrap();
    assert_eq!(loaded.revision(), f.store.revision());
    assert_eq!(loaded.user("alice"), f.store.user("alice"));
    assert_eq!(loaded.role("r"), f.store.role("r"));
    assert_eq!(loaded.permissions, f.store.permissions);
}

#[test]
fn tokens_need_auth_a_user_with_a_password_and_go_with_its_password() {
    let mut f = Fixture::new();
    let assign = |user: &str, token: &str| {
        change(Change::AssignToken(AssignToken {
            user: user.into(),
            token: token.into(),
        }))
    };
    assert_eq!(f.apply(assign("alice", "t.1")), Err(Error::AuthNotEnabled));
    f.ok(user_add(ROOT));
    f.ok(grant_role(ROOT, ROOT));
    f.ok(enable());
    assert_eq!(f.apply(assign("alice", "t.1")), Err(Error::AuthFailed));
    f.ok(change(Change::UserAdd(UserAdd {
        name: "cert-only".into(),
        password_hash: Vec::new(),
        no_password: true,
    })));
    assert_eq!(f.apply(assign("cert-only", "t.1")), Err(Error::AuthFailed));
    assert_eq!(
        f.apply(assign(ROOT, "t.1")),
        Ok(Changed::Token("t.1".into()))
    );
    assert_eq!(f.store.tokens().user_of("t.1", 1), Some(ROOT));
    f.ok(change(Change::UserChangePassword(UserChangePassword {
        name: ROOT.into(),
        password_hash: b"new".to_vec(),
    })));
    assert_eq!(f.store.tokens().user_of("t.1", 1), None);
}

/// A state machine with auth enabled, root and `alice` who may write
/// under `a`.
fn enabled_state_machine() -> StateMachine<MemBackend> {
    let mut state = StateMachine::open(MemBackend::default(), 0).unwrap();
    for c in [
        user_add(ROOT),
        grant_role(ROOT, ROOT),
        user_add("alice"),
        role_add("w"),
        grant("w", PermissionType::Write, b"a", b"b"),
        grant_role("alice", "w"),
        enable(),
    ] {
        state.apply_auth_change(&c, 0).unwrap();
    }
    state
}

fn put(key: &[u8], requester: Option<(&str, u64)>) -> Proposal {
    Proposal {
        op: Some(Op::Put(PutRequest {
            key: key.to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
        requester: requester.map(|(user, auth_revision)| Requester {
            user: user.into(),
            auth_revision,
        }),
    }
}

#[test]
fn applying_checks_the_requester_again() {
    let mut state = enabled_state_machine();
    let revision = state.auth().revision();
    assert!(state
        .apply(&put(b"a1", Some(("alice", revision))), 0)
        .is_ok());
    assert_eq!(
        state.apply(&put(b"c", Some(("alice", revision))), 0),
        Err(Error::PermissionDenied)
    );
    assert_eq!(
        state.apply(&put(b"a1", Some(("alice", revision - 1))), 0),
        Err(Error::AuthOldRevision)
    );
    assert_eq!(
        state.apply(&put(b"a1", Some(("", 0))), 0),
        Err(Error::UserEmpty)
    );
    assert!(
        state.apply(&put(b"c", None), 0).is_ok(),
        "the cluster's own proposals are not checked"
    );
    let add = Proposal {
        op: Some(Op::Auth(user_add("bob"))),
        requester: Some(Requester {
            user: "alice".into(),
            auth_revision: revision,
        }),
    };
    assert_eq!(state.apply(&add, 0), Err(Error::PermissionDenied));
    assert!(state.auth().user("bob").is_none());
}

#[test]
fn the_auth_store_survives_a_reload() {
    let mut state = enabled_state_machine();
    state.backend_mut().commit(true).unwrap();
    let revision = state.auth().revision();
    state.reload(0).unwrap();
    assert!(state.auth().is_enabled());
    assert_eq!(state.auth().revision(), revision);
    assert!(state.auth().user("alice").is_some());
}

// ---- the permission decision against a naive model ----

const USERS: [&str; 3] = ["root", "u1", "u2"];
const ROLES: [&str; 4] = ["root", "r1", "r2", "r3"];

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b']), 1..3)
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), Just(vec![0]), small_key(),]
}

fn perm_type() -> impl Strategy<Value = PermissionType> {
    prop::sample::select(vec![
        PermissionType::Read,
        PermissionType::Write,
        PermissionType::Readwrite,
    ])
}

fn any_change() -> impl Strategy<Value = AuthChange> {
    let user = prop::sample::select(USERS.to_vec());
    let role = prop::sample::select(ROLES.to_vec());
    prop_oneof![
        1 => user.clone().prop_map(user_add),
        1 => role.clone().prop_map(role_add),
        4 => (user.clone(), role.clone()).prop_map(|(u, r)| grant_role(u, r)),
        8 => (role.clone(), perm_type(), small_key(), range_end())
            .prop_map(|(r, t, k, e)| grant(r, t, &k, &e)),
        1 => (user, role.clone()).prop_map(|(u, r)| change(Change::UserRevokeRole(
            AuthUserRevokeRoleRequest {
                name: u.into(),
                role: r.into()
            }
        ))),
        1 => role.prop_map(|r| change(Change::RoleDelete(AuthRoleDeleteRequest { role: r.into() }))),
        1 => Just(change(Change::Disable(AuthDisableRequest {}))),
        1 => Just(enable()),
    ]
}

/// Does `key` fall in the keys `key..range_end` names (etcd's rules; a
/// range end at or before the key names the key alone)?
fn names(key: &[u8], range_end: &[u8], probe: &[u8]) -> bool {
    match range_end {
        [] => probe == key,
        [0] => probe >= key,
        end if end <= key => probe == key,
        end => key <= probe && probe < end,
    }
}

/// The first key after a range's keys, or `None` when it has no end.
fn first_after(key: &[u8], range_end: &[u8]) -> Option<Vec<u8>> {
    match range_end {
        [0] => None,
        end if end.is_empty() || end <= key => {
            let mut after = key.to_vec();
            after.push(0);
            Some(after)
        }
        end => Some(end.to_vec()),
    }
}

/// The naive model: straight from the users and roles, every candidate
/// key of the range must be in a permission of one of the user's roles. A
/// key the permissions miss, if any, is the range's first key or the first
/// key after some permission, so those and the probes are the candidates.
fn model(
    store: &AuthStore,
    who: &AuthInfo,
    key: &[u8],
    range_end: &[u8],
    access: Access,
    probes: &[Vec<u8>],
) -> Result<(), Error> {
    if !store.is_enabled() {
        return Ok(());
    }
    if who.revision == 0 {
        return Err(Error::UserEmpty);
    }
    if who.revision < store.revision() {
        return Err(Error::AuthOldRevision);
    }
    let Some(user) = store.user(&who.user) else {
        return Err(Error::PermissionDenied);
    };
    if user.roles.iter().any(|r| r == ROOT) {
        return Ok(());
    }
    let perms: Vec<&Permission> = user
        .roles
        .iter()
        .filter_map(|r| store.role(r))
        .flat_map(|r| &r.key_permission)
        .filter(|p| match access {
            Access::Read => p.perm_type() != PermissionType::Write,
            Access::Write => p.perm_type() != PermissionType::Read,
        })
        .collect();
    let mut candidates = vec![key.to_vec()];
    candidates.extend(
        perms
            .iter()
            .filter_map(|p| first_after(&p.key, &p.range_end)),
    );
    candidates.extend(probes.iter().cloned());
    let uncovered = candidates
        .iter()
        .filter(|c| names(key, range_end, c))
        .any(|c| !perms.iter().any(|p| names(&p.key, &p.range_end, c)));
    if uncovered {
        Err(Error::PermissionDenied)
    } else {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_decision_agrees_with_the_naive_model(
        changes in prop::collection::vec(any_change(), 0..24),
        queries in prop::collection::vec(
            (
                prop::sample::select(vec!["root", "u1", "u1", "u2", "u2", "nobody", ""]),
                0u64..4,
                small_key(),
                range_end(),
                prop::bool::ANY,
            ),
            1..32,
        ),
        probes in prop::collection::vec(small_key(), 0..8),
    ) {
        let mut f = Fixture::new();
        // Mostly enabled, with users and roles to grant.
        let setup = [
            user_add(ROOT), grant_role(ROOT, ROOT), enable(),
            user_add("u1"), user_add("u2"), role_add("r1"), role_add("r2"), role_add("r3"),
        ];
        for c in setup.iter().chain(&changes) {
            let _ = f.apply(c.clone());
        }
        for (user, behind, key, range_end, write) in queries {
            let behind = behind.saturating_sub(1);
            let revision = if user.is_empty() { 0 } else { f.store.revision().saturating_sub(behind) };
            let who = AuthInfo::new(user, revision);
            let access = if write { Access::Write } else { Access::Read };
            prop_assert_eq!(
                f.store.check_range(&who, &key, &range_end, access),
                model(&f.store, &who, &key, &range_end, access, &probes),
                "{:?} {:?} {:?}..{:?}", who, access, key, range_end
            );
        }
    }

    /// The merged permissions survive persistence: a store loaded from
    /// the backend decides as the one that wrote it.
    #[test]
    fn a_loaded_store_decides_the_same(changes in prop::collection::vec(any_change(), 0..24)) {
        let mut f = Fixture::new();
        for c in &changes {
            let _ = f.apply(c.clone());
        }
        let loaded = AuthStore::load(&f.backend, SimpleTokens::default()).unwrap();
        prop_assert_eq!(loaded.is_enabled(), f.store.is_enabled());
        prop_assert_eq!(loaded.revision(), f.store.revision());
        prop_assert_eq!(&loaded.permissions, &f.store.permissions);
        prop_assert_eq!(&loaded.users, &f.store.users);
    }
}
