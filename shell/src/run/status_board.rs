//! What this node knows for `e2d status`: kept up to date by `run`, read at
//! `/e2d/status` on the client port.

// Under madsim nothing serves `/e2d/status`; the board is kept all the same.
#![cfg_attr(madsim, allow(dead_code))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use e2d_core::swim::{Liveness, MemberView, NodeStatus};

use crate::server::Node;
use crate::status::{AlarmReport, GossipReport, MemberReport, StatusReport};

/// Most gossip nodes the board keeps (as the manager's view).
const GOSSIP_NODES_MAX: usize = e2d_core::manager::VIEW_MEMBERS_MAX;

pub struct StatusBoard {
    /// This member's metrics, from before its server starts (gossip and
    /// the cluster manager count there too).
    pub metrics: Arc<crate::metrics::Metrics>,
    name: String,
    required_cluster_size: usize,
    inner: Mutex<Board>,
}

#[derive(Default)]
struct Board {
    state: &'static str,
    waiting: String,
    node: Option<Arc<Node>>,
    gossip: BTreeMap<String, MemberView>,
    last_snapshot: Option<String>,
    last_delta: Option<String>,
    seal: Option<crate::gossip::Seal>,
}

fn hex(id: u64) -> String {
    if id == 0 {
        String::new()
    } else {
        format!("{id:x}")
    }
}

fn liveness_name(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Suspect => "suspect",
        Liveness::Dead => "dead",
        Liveness::Left => "left",
    }
}

fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Unknown => "unknown",
        NodeStatus::Pending => "pending",
        NodeStatus::Running => "running",
    }
}

impl StatusBoard {
    pub fn new(name: String, required_cluster_size: usize) -> Arc<Self> {
        Arc::new(Self {
            metrics: Arc::default(),
            name,
            required_cluster_size,
            inner: Mutex::new(Board {
                state: "pending",
                ..Board::default()
            }),
        })
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        crate::fail_stop::lock(&self.inner)
    }

    /// Gossip runs with `seal`, whose dropped messages the report counts.
    pub fn set_gossip_seal(&self, seal: crate::gossip::Seal) {
        self.board().seal = Some(seal);
    }

    /// This member uploaded a backup.
    pub fn set_uploaded(&self, uploaded: crate::backup::Uploaded<'_>) {
        let mut board = self.board();
        match uploaded {
            crate::backup::Uploaded::Snapshot(name) => board.last_snapshot = Some(name.into()),
            crate::backup::Uploaded::Delta(name) => board.last_delta = Some(name.into()),
        }
    }

    pub fn set_waiting(&self, waiting: &str) {
        waiting.clone_into(&mut self.board().waiting);
    }

    /// The server runs as `node`, or (with `None`) no longer runs.
    pub fn set_node(&self, node: Option<Arc<Node>>, state: &'static str) {
        let mut board = self.board();
        board.node = node;
        board.state = state;
    }

    /// Another node's gossip state changed.
    pub fn gossip_changed(&self, member: MemberView) {
        let mut board = self.board();
        if member.name == self.name {
            return;
        }
        if board.gossip.len() < GOSSIP_NODES_MAX || board.gossip.contains_key(&member.name) {
            board.gossip.insert(member.name.clone(), member);
        }
        let mut counts = [0; crate::metrics::GOSSIP_STATES.len()];
        for member in board.gossip.values() {
            let state = match member.liveness {
                Liveness::Alive => 0,
                Liveness::Suspect => 1,
                Liveness::Dead => 2,
                Liveness::Left => 3,
            };
            counts[state] += 1;
        }
        self.metrics.set_gossip_members(counts);
    }

    /// Gossip nodes Alive in view, other than this one.
    pub fn alive_peers(&self) -> usize {
        self.board()
            .gossip
            .values()
            .filter(|m| m.liveness == Liveness::Alive)
            .count()
    }

    /// Peer URLs of the other nodes gossip shows alive and running
    /// cluster `cluster_id`.
    pub fn running_peer_urls(&self, cluster_id: u64) -> Vec<String> {
        self.board()
            .gossip
            .values()
            .filter(|m| {
                m.liveness == Liveness::Alive
                    && m.meta.status == NodeStatus::Running
                    && m.meta.cluster_id == cluster_id
            })
            .map(|m| m.meta.peer_url.clone())
            .collect()
    }

    pub fn report(&self) -> StatusReport {
        let board = self.board();
        let mut report = StatusReport {
            name: self.name.clone(),
            required_cluster_size: self.required_cluster_size,
            state: board.state.to_string(),
            waiting_for: board.waiting.clone(),
            last_snapshot: board.last_snapshot.clone(),
            last_delta: board.last_delta.clone(),
            gossip_unauthenticated_dropped: board.seal.as_ref().map_or(0, |s| s.failures()),
            certificates: crate::status::CertificateReport::of_installed(),
            version: crate::server::cluster_version::own().to_string(),
            gossip: board
                .gossip
                .values()
                .map(|m| GossipReport {
                    name: m.name.clone(),
                    addr: m.addr.to_string(),
                    liveness: liveness_name(m.liveness).into(),
                    status: status_name(m.meta.status).into(),
                    cluster_id: hex(m.meta.cluster_id),
                    version: m.meta.version.clone(),
                })
                .collect(),
            ..StatusReport::default()
        };
        let Some(node) = &board.node else {
            return report;
        };
        let raft = node.raft_status();
        report.cluster_id = hex(node.identity.cluster_id);
        report.member_id = hex(node.identity.member_id);
        report.leader_id = hex(raft.leader_id);
        report.raft_term = raft.term;
        report.raft_index = raft.commit_index;
        report.cluster_size = crate::server::cluster_size::effective(node);
        report.cluster_version = crate::server::cluster_version::effective(node).to_string();
        let state = node.read();
        report.revision = state.current_revision();
        report.backup_at_risk = node
            .metrics
            .at_risk(report.revision, crate::backup::wall_clock_ms())
            .map(|(revisions, seconds)| crate::status::BackupRisk { revisions, seconds });
        report.recovered_from = crate::server::Identity::recovered_from(state.mvcc().backend())
            .ok()
            .flatten()
            .map(hex)
            .unwrap_or_default();
        report.alarms = state
            .all_alarms()
            .into_iter()
            .map(|a| AlarmReport {
                member_id: format!("{:x}", a.member_id),
                alarm: e2d_proto::etcdserverpb::AlarmType::try_from(a.alarm)
                    .map_or("UNKNOWN", |t| t.as_str_name())
                    .into(),
            })
            .collect();
        report.members = state
            .members()
            .unwrap_or_default()
            .into_iter()
            .map(|m| MemberReport {
                version: if m.member_id == node.identity.member_id {
                    report.version.clone()
                } else {
                    board
                        .gossip
                        .get(&m.name)
                        .map(|g| g.meta.version.clone())
                        .unwrap_or_default()
                },
                id: hex(m.member_id),
                gossip: if m.member_id == node.identity.member_id {
                    "self".into()
                } else {
                    board
                        .gossip
                        .get(&m.name)
                        .map_or("unknown", |g| liveness_name(g.liveness))
                        .into()
                },
                is_leader: m.member_id == raft.leader_id,
                name: m.name,
                peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
                client_url: m.client_urls.first().cloned().unwrap_or_default(),
                is_learner: m.is_learner,
            })
            .collect();
        report
    }

    /// The `/e2d/status` route.
    #[cfg(not(madsim))]
    pub fn routes(self: &Arc<Self>) -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route(crate::status::STATUS_PATH, get(serve_status))
            .with_state(self.clone())
    }
}

#[cfg(not(madsim))]
async fn serve_status(
    axum::extract::State(board): axum::extract::State<Arc<StatusBoard>>,
) -> impl axum::response::IntoResponse {
    let body = serde_json::to_string(&board.report()).unwrap_or_default();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}
