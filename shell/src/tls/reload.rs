//! Keeping the certificates current without a restart: reloaded on SIGHUP
//! and when their files change (checked every few seconds); renewed with
//! the CA key when a third of their span is left; warned about from 30
//! days before they end when this node cannot renew them. A reload or a
//! renewal that fails keeps the certificates in use and says why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Material;
use crate::pki::check::now_unix_s;

/// How often the files are checked for a change, and the certificates for
/// their renewal.
const CHANGE_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// After a failed renewal, the next try waits this long.
const RENEWAL_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// A certificate that will end and cannot be renewed here is warned about
/// this often.
const EXPIRY_WARNING_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

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
        let mut renewal_after = tokio::time::Instant::now();
        let mut warned_at = BTreeMap::new();
        loop {
            let why = tokio::select! {
                biased;
                Some(()) = async { match hangups.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
                _ = check.tick() => {
                    if tokio::time::Instant::now() >= renewal_after {
                        match material.renew_due(now_unix_s()) {
                            Ok(renewed) => {
                                if !renewed.is_empty() {
                                    // Loaded already.
                                    modified = material.files_modified();
                                }
                                for role in renewed {
                                    tracing::info!(certificate = role.file_stem(), "renewed the {} certificate", role.file_stem());
                                }
                            }
                            Err(e) => {
                                tracing::warn!("cannot renew the certificates, retrying in {RENEWAL_RETRY_INTERVAL:?}: {e}");
                                renewal_after = tokio::time::Instant::now() + RENEWAL_RETRY_INTERVAL;
                            }
                        }
                    }
                    warn_of_expiry(&material, &mut warned_at);
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

/// Warns, once a day each, of certificates that end within 30 days and
/// that this node does not renew.
fn warn_of_expiry(
    material: &Material,
    warned_at: &mut BTreeMap<&'static str, tokio::time::Instant>,
) {
    let now_s = now_unix_s();
    for certificate in material.certificates() {
        if !certificate.expiring(now_s) {
            continue;
        }
        let now = tokio::time::Instant::now();
        if warned_at
            .get(certificate.name)
            .is_some_and(|at| now.duration_since(*at) < EXPIRY_WARNING_INTERVAL)
        {
            continue;
        }
        warned_at.insert(certificate.name, now);
        let ends = certificate.not_after_text();
        let how = if certificate.name == "ca" {
            "make a new CA and certificates (e2d pki init, e2d pki gencerts)"
        } else {
            "start e2d with --ca-key to renew it, or make a new one (e2d pki gencerts)"
        };
        tracing::warn!(
            certificate = certificate.name,
            "the {} certificate ends at {ends}: {how}",
            certificate.name
        );
    }
}
