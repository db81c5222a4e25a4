//! `e2d status`: the cluster as one node sees it, fetched from that node's
//! `/e2d/status` endpoint on its client port and shown as a table or JSON.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The path a node serves its status on.
pub const STATUS_PATH: &str = "/e2d/status";
/// Largest status answer read.
const STATUS_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// What a node reports at [`STATUS_PATH`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub name: String,
    /// The e2d version the node runs.
    #[serde(default)]
    pub version: String,
    pub required_cluster_size: usize,
    /// The size the cluster is moving to or has: replicated (`e2d cluster
    /// resize`), else the size it was founded with; 0 before the server
    /// runs.
    #[serde(default)]
    pub cluster_size: usize,
    /// The version the cluster runs at (the lowest its members run, once
    /// recorded); empty before the server runs.
    #[serde(default)]
    pub cluster_version: String,
    /// `pending`, `running` or `removed`.
    pub state: String,
    /// What the node waits for; empty when nothing.
    pub waiting_for: String,
    /// Hex ids; empty before the server runs.
    pub cluster_id: String,
    /// The cluster this one was recovered from (`e2d cluster recover`),
    /// hex; empty if it was not.
    #[serde(default)]
    pub recovered_from: String,
    pub member_id: String,
    pub leader_id: String,
    pub raft_term: u64,
    pub raft_index: u64,
    pub revision: i64,
    pub members: Vec<MemberReport>,
    pub gossip: Vec<GossipReport>,
    /// The newest snapshot taken, when a snapshot store is configured.
    pub last_snapshot: Option<String>,
    /// The newest backup delta this member shipped.
    #[serde(default)]
    pub last_delta: Option<String>,
    /// What the backup store lacks now (on the member shipping backups,
    /// the leader): committed revisions, and seconds since the oldest of
    /// them.
    #[serde(default)]
    pub backup_at_risk: Option<BackupRisk>,
    /// Gossip messages dropped because they failed authentication.
    #[serde(default)]
    pub gossip_unauthenticated_dropped: u64,
    /// The cluster's raised alarms (NOSPACE, CORRUPT), each with the
    /// member it was raised for.
    #[serde(default)]
    pub alarms: Vec<AlarmReport>,
    /// The node's certificates, when it serves TLS.
    #[serde(default)]
    pub certificates: Vec<CertificateReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupRisk {
    pub revisions: i64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificateReport {
    /// `ca`, `server`, `peer` or `client`.
    pub certificate: String,
    /// When it ends, RFC 3339 in UTC.
    pub not_after: String,
    /// Whether the node renews it (it has the CA key).
    pub renewed_here: bool,
}

impl CertificateReport {
    /// The installed TLS material's certificates; none without TLS (and
    /// in the simulator, which runs without).
    #[cfg(madsim)]
    pub fn of_installed() -> Vec<Self> {
        Vec::new()
    }

    /// The installed TLS material's certificates; none without TLS.
    #[cfg(not(madsim))]
    pub fn of_installed() -> Vec<Self> {
        let Some(material) = crate::tls::client::installed() else {
            return Vec::new();
        };
        material
            .certificates()
            .into_iter()
            .map(|c| CertificateReport {
                certificate: c.name.into(),
                not_after: c.not_after_text(),
                renewed_here: c.renewed_here,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmReport {
    /// Hex id; `0` for the whole cluster.
    pub member_id: String,
    /// etcd's name of the alarm: `NOSPACE` or `CORRUPT`.
    pub alarm: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub id: String,
    pub name: String,
    pub peer_url: String,
    pub client_url: String,
    pub is_learner: bool,
    pub is_leader: bool,
    /// The member's liveness in this node's gossip view (`alive`,
    /// `suspect`, `dead`, `left`), `self`, or `unknown`.
    pub gossip: String,
    /// The e2d version the member runs, as gossip says; empty if unknown.
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GossipReport {
    pub name: String,
    pub addr: String,
    pub liveness: String,
    /// `unknown`, `pending` or `running`.
    pub status: String,
    pub cluster_id: String,
    /// The e2d version the node runs; empty if it does not say.
    #[serde(default)]
    pub version: String,
}

/// The client certificate `e2d status` presents to an https endpoint.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca_cert: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Fetches the status of the node whose client API is at `endpoint`
/// (`host:port`, `http://host:port`, or `https://host:port` with `tls`).
pub fn fetch(
    endpoint: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<StatusReport, String> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let (authority, secure) = match trimmed.strip_prefix("https://") {
        Some(authority) => (authority, true),
        None => (trimmed.trim_start_matches("http://"), false),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{endpoint}: not a host:port address ({e})"))?
        .next()
        .ok_or_else(|| format!("{endpoint}: the name resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach {endpoint}: {e} (is e2d running there?)"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let answer = if secure {
        let tls =
            tls.ok_or_else(|| format!("{endpoint} is https: pass --cacert, --cert and --key"))?;
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        let connection = tls_connection(tls, host).map_err(|e| format!("{endpoint}: {e}"))?;
        ask(rustls::StreamOwned::new(connection, stream), authority)
    } else {
        ask(stream, authority)
    }
    .map_err(|e| format!("{endpoint}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{endpoint}: not an HTTP answer"))?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        return Err(format!(
            "{endpoint} answered {status_line:?}: is it an e2d client port?"
        ));
    }
    serde_json::from_str(body)
        .map_err(|e| format!("{endpoint}: the status is not what e2d reports ({e})"))
}

/// Sends the status request over `stream` and reads the whole answer.
fn ask(mut stream: impl Read + Write, authority: &str) -> Result<Vec<u8>, String> {
    let request = format!(
        "GET {STATUS_PATH} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // A TLS peer that closes without close_notify still sent the answer.
    match stream.take(STATUS_BYTES_MAX).read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(answer),
        Err(e) => Err(format!("no complete answer: {e}")),
    }
}

fn tls_connection(tls: &ClientTls, host: &str) -> Result<rustls::ClientConnection, String> {
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    let ca = crate::pki::check::load_certs(&tls.ca_cert).map_err(|e| e.to_string())?;
    let chain = crate::pki::check::load_certs(&tls.cert).map_err(|e| e.to_string())?;
    let key_text = std::fs::read_to_string(&tls.key)
        .map_err(|e| format!("cannot read {}: {e}", tls.key.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|e| format!("{} is not a PEM private key: {e}", tls.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the client certificate cannot be used: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| format!("{host} is not a server name: {e}"))?;
    rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())
}

/// The report as the table `e2d status` prints.
pub fn render_table(report: &StatusReport) -> String {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<14}{value}\n"));
    line("name", report.name.clone());
    line("version", dash(&report.version));
    line("state", report.state.clone());
    line("waiting for", dash(&report.waiting_for));
    line(
        "cluster size",
        if report.cluster_size == 0 || report.cluster_size == report.required_cluster_size {
            report.required_cluster_size.to_string()
        } else {
            format!(
                "{} (-n {})",
                report.cluster_size, report.required_cluster_size
            )
        },
    );
    line("cluster ver.", dash(&report.cluster_version));
    line(
        "cluster id",
        if report.recovered_from.is_empty() {
            dash(&report.cluster_id)
        } else {
            format!(
                "{} (recovered from {})",
                report.cluster_id, report.recovered_from
            )
        },
    );
    line("member id", dash(&report.member_id));
    line("leader", dash(&report.leader_id));
    line(
        "revision",
        format!(
            "{} (raft term {}, index {})",
            report.revision, report.raft_term, report.raft_index
        ),
    );
    let alarms: Vec<String> = report
        .alarms
        .iter()
        .map(|a| format!("{} (member {})", a.alarm, a.member_id))
        .collect();
    line(
        "alarms",
        if alarms.is_empty() {
            "none".into()
        } else {
            alarms.join(", ")
        },
    );
    if !report.certificates.is_empty() {
        let certificates: Vec<String> = report
            .certificates
            .iter()
            .map(|c| {
                let renewal = if c.renewed_here { ", renewed" } else { "" };
                format!("{} until {}{renewal}", c.certificate, c.not_after)
            })
            .collect();
        line("certificates", certificates.join("; "));
    }
    line(
        "last snapshot",
        report
            .last_snapshot
            .clone()
            .unwrap_or_else(|| "none".into()),
    );
    if let Some(delta) = &report.last_delta {
        line("last delta", delta.clone());
    }
    if let Some(risk) = &report.backup_at_risk {
        line(
            "data at risk",
            format!(
                "{} revisions, {:.1} s since the oldest (not yet in the backup store)",
                risk.revisions, risk.seconds
            ),
        );
    }
    let members: Vec<Vec<String>> = report
        .members
        .iter()
        .map(|m| {
            let role = match (m.is_leader, m.is_learner) {
                (true, _) => "leader",
                (false, true) => "learner",
                (false, false) => "voter",
            };
            vec![
                m.id.clone(),
                dash(&m.name),
                m.peer_url.clone(),
                dash(&m.client_url),
                role.into(),
                m.gossip.clone(),
                dash(&m.version),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&columns(
        &[
            "MEMBER",
            "NAME",
            "PEER URL",
            "CLIENT URL",
            "ROLE",
            "GOSSIP",
            "VERSION",
        ],
        &members,
    ));
    let gossip: Vec<Vec<String>> = report
        .gossip
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.addr.clone(),
                g.liveness.clone(),
                g.status.clone(),
                dash(&g.cluster_id),
                dash(&g.version),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&columns(
        &[
            "GOSSIP NODE",
            "ADDRESS",
            "LIVENESS",
            "STATUS",
            "CLUSTER",
            "VERSION",
        ],
        &gossip,
    ));
    out
}

/// Left-aligned columns, two spaces apart.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_members_and_gossip() {
        let report = StatusReport {
            name: "a".into(),
            required_cluster_size: 3,
            state: "running".into(),
            cluster_id: "c1".into(),
            member_id: "m1".into(),
            leader_id: "m1".into(),
            revision: 7,
            members: vec![MemberReport {
                id: "m1".into(),
                name: "a".into(),
                peer_url: "http://127.0.0.1:2380".into(),
                client_url: "http://127.0.0.1:2379".into(),
                is_leader: true,
                gossip: "self".into(),
                version: "0.1.0".into(),
                ..Default::default()
            }],
            cluster_version: "0.1.0".into(),
            ..Default::default()
        };
        let table = render_table(&report);
        assert!(table.contains("cluster ver.  0.1.0"), "{table}");
        assert!(table.contains("cluster id    c1\n"), "{table}");
        let recovered = StatusReport {
            recovered_from: "c0".into(),
            ..report.clone()
        };
        assert!(
            render_table(&recovered).contains("cluster id    c1 (recovered from c0)"),
            "{table}"
        );
        assert!(table.contains("leader  self    0.1.0"), "{table}");
        assert!(table.contains("waiting for   -"), "{table}");
        assert!(table.contains("alarms        none"), "{table}");
        assert!(
            table.contains("m1      a     http://127.0.0.1:2380"),
            "{table}"
        );
        assert!(table.contains("GOSSIP NODE"), "{table}");
        assert!(table.contains("(none)"), "{table}");
    }

    #[test]
    fn the_table_shows_raised_alarms() {
        let report = StatusReport {
            alarms: vec![AlarmReport {
                member_id: "8e9e05c52164694d".into(),
                alarm: "CORRUPT".into(),
            }],
            ..Default::default()
        };
        let table = render_table(&report);
        assert!(
            table.contains("alarms        CORRUPT (member 8e9e05c52164694d)"),
            "{table}"
        );
    }

    #[test]
    fn unreachable_endpoints_say_so() {
        let error = fetch("127.0.0.1:1", Duration::from_secs(1), None).unwrap_err();
        assert!(error.contains("cannot reach 127.0.0.1:1"), "{error}");
        let error = fetch("no port", Duration::from_secs(1), None).unwrap_err();
        assert!(error.contains("not a host:port"), "{error}");
    }
}
