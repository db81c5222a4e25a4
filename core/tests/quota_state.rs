//! What a write's quota check reads from the state machine: the backend's
//! size and whether NOSPACE is raised; and the check itself, at its edge.

use e2d_core::state_machine::QuotaState;
use e2d_core::storage::{Backend, MemBackend};
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType, PutRequest};

const NOW_MS: u64 = 0;
const MEMBER: u64 = 0x2a;

fn nospace(action: AlarmAction) -> AlarmRequest {
    AlarmRequest {
        action: action as i32,
        member_id: MEMBER,
        alarm: AlarmType::Nospace as i32,
    }
}

#[test]
fn the_quota_state_follows_the_backend_and_the_nospace_alarm() {
    let mut sm = StateMachine::open(MemBackend::default(), NOW_MS).expect("open");
    let empty = sm.quota_state();
    assert!(!empty.nospace);
    sm.put(&PutRequest {
        key: b"key".to_vec(),
        value: vec![7; 4096],
        ..Default::default()
    })
    .expect("put");
    sm.backend_mut().commit(false).expect("commit");
    let grown = sm.quota_state();
    assert_eq!(grown.size_bytes, sm.mvcc().backend().size_bytes());
    assert!(
        grown.size_bytes >= empty.size_bytes + 4096,
        "{empty:?} then {grown:?}"
    );

    sm.alarm(&nospace(AlarmAction::Activate));
    assert!(sm.quota_state().nospace);
    // Another alarm raised or lowered leaves NOSPACE as it is.
    sm.alarm(&AlarmRequest {
        alarm: AlarmType::Corrupt as i32,
        ..nospace(AlarmAction::Activate)
    });
    sm.alarm(&AlarmRequest {
        alarm: AlarmType::Corrupt as i32,
        ..nospace(AlarmAction::Deactivate)
    });
    assert!(sm.quota_state().nospace);
    sm.alarm(&nospace(AlarmAction::Deactivate));
    assert!(!sm.quota_state().nospace);
}

#[test]
fn a_write_exceeds_the_quota_only_past_it() {
    let state = QuotaState {
        size_bytes: 1000,
        nospace: false,
    };
    assert!(!state.exceeded_by(24, 1024), "up to the quota is within it");
    assert!(state.exceeded_by(25, 1024));
    let full = QuotaState {
        size_bytes: u64::MAX,
        nospace: false,
    };
    assert!(
        full.exceeded_by(1, u64::MAX - 1),
        "no overflow past u64::MAX"
    );
    assert!(!full.exceeded_by(0, u64::MAX));
}
