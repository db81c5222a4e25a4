//! Reloading the certificates without a restart: on SIGHUP, and when the
//! files change (checked every few seconds). A reload that fails keeps the
//! old certificates and says why.

use std::sync::Arc;
use std::time::Duration;

use super::Material;

/// How often the files are checked for a change.
const CHANGE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

pub fn spawn(material: Arc<Material>) {
    tokio::spawn(async move {
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; certificates reload when their files change");
                None
            }
        };
        let mut modified = material.files_modified();
        let mut check = tokio::time::interval(CHANGE_CHECK_INTERVAL);
        loop {
            let why = tokio::select! {
                biased;
                Some(()) = async { match hangups.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
                _ = check.tick() => {
                    let now = material.files_modified();
                    if now == modified {
                        continue;
                    }
                    modified = now;
                    "a certificate file changed"
                }
            };
            match material.reload() {
                Ok(()) => tracing::info!("{why}: reloaded the certificates"),
                Err(e) => tracing::warn!("{why}: keeping the certificates in use: {e}"),
            }
        }
    });
}
