//! `e2d discover`: what a node would find, printed for the operator.

use std::net::SocketAddr;

use serde::Serialize;

use crate::cli::DiscoverArgs;

#[derive(Debug, Serialize)]
struct Report {
    method: String,
    /// Gossip addresses of the peers.
    peers: Vec<SocketAddr>,
    self_excluded_by: String,
    warnings: Vec<String>,
}

/// Runs the discovery once; the text (or JSON) to print, or the error.
pub fn run(args: &DiscoverArgs) -> Result<String, String> {
    let method = args.discovery.peer_discovery.as_ref().ok_or_else(|| {
        format!(
            "give the method to try with --peer-discovery: {}",
            super::method::USAGE
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let found = runtime.block_on(async {
        let source = super::open(method, &args.discovery.settings(&args.host))?;
        source.discover().await
    });
    let found = found.map_err(|e| e.to_string())?;
    let report = Report {
        method: method.to_string(),
        peers: found
            .peers
            .iter()
            .map(|ip| SocketAddr::new(*ip, args.gossip_addr.port()))
            .collect(),
        self_excluded_by: found.self_excluded_by,
        warnings: found.warnings,
    };
    if args.json {
        return serde_json::to_string_pretty(&report).map_err(|e| e.to_string());
    }
    let mut text = format!("method: {}\n", report.method);
    text += &format!("this node left out by: {}\n", report.self_excluded_by);
    if report.peers.is_empty() {
        text += "peers: none found\n";
    } else {
        text += &format!("peers ({}):\n", report.peers.len());
        for peer in &report.peers {
            text += &format!("  {peer}\n");
        }
    }
    for warning in &report.warnings {
        text += &format!("warning: {warning}\n");
    }
    Ok(text)
}
