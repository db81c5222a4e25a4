//! The CORRUPT alarm as etcd applies it: while raised, every member refuses
//! puts, deletes, txns that reach the log, compactions, lease grants and
//! revokes with "etcdserver: corrupt cluster"; reads go on; disarming it
//! lets writes through again, and a restart keeps it.

use e2d_core::storage::{Backend, MemBackend};
use e2d_core::{Error, StateMachine};
use e2d_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op::Request, AlarmRequest, AlarmType, CompactionRequest,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

const NOW_MS: u64 = 0;
const BAD_MEMBER: u64 = 0x2a;

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn alarm(action: AlarmAction) -> AlarmRequest {
    AlarmRequest {
        action: action as i32,
        member_id: BAD_MEMBER,
        alarm: AlarmType::Corrupt as i32,
    }
}

fn get(sm: &StateMachine<MemBackend>, key: &str) -> Vec<u8> {
    let resp = sm
        .range(&RangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .expect("reads go on");
    resp.kvs
        .first()
        .map(|kv| kv.value.to_vec())
        .unwrap_or_default()
}

#[test]
fn corrupt_alarm_refuses_writes_and_keeps_reads() {
    let mut sm = StateMachine::open(MemBackend::default(), NOW_MS).expect("open");
    sm.put(&put("a", "1")).expect("put before the alarm");
    sm.lease_grant(7, 60, NOW_MS)
        .expect("grant before the alarm");
    let raised = sm.alarm(&alarm(AlarmAction::Activate));
    assert_eq!(raised.alarms.len(), 1);
    assert_eq!(sm.alarms_of(AlarmType::Corrupt), vec![BAD_MEMBER]);

    let write_txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestPut(put("b", "2"))),
        }],
        ..Default::default()
    };
    assert_eq!(sm.put(&put("a", "2")), Err(Error::Corrupt));
    assert_eq!(
        sm.delete_range(&DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        }),
        Err(Error::Corrupt)
    );
    assert_eq!(sm.txn(&write_txn).map(|_| ()), Err(Error::Corrupt));
    assert_eq!(
        sm.compact(&CompactionRequest {
            revision: 1,
            physical: false
        })
        .map(|_| ()),
        Err(Error::Corrupt)
    );
    assert_eq!(
        sm.lease_grant(8, 60, NOW_MS).map(|_| ()),
        Err(Error::Corrupt)
    );
    assert_eq!(sm.lease_revoke(7).map(|_| ()), Err(Error::Corrupt));
    assert_eq!(get(&sm, "a"), b"1");
    let read_txn = TxnRequest::default();
    assert!(sm.txn_read_only(&read_txn).is_ok());

    // The alarm outlives a restart.
    sm.backend_mut().commit(true).expect("commit");
    let mut sm = StateMachine::open(sm.into_backend(), NOW_MS).expect("reopen");
    assert_eq!(sm.put(&put("a", "2")), Err(Error::Corrupt));

    let disarmed = sm.alarm(&alarm(AlarmAction::Deactivate));
    assert_eq!(disarmed.alarms.len(), 1);
    sm.put(&put("a", "3")).expect("writes after the disarm");
    assert_eq!(get(&sm, "a"), b"3");
}
