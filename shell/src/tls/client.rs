//! What outgoing calls present: the peer certificate to other members'
//! peer ports (the only ports `e2d run` calls). Set once
//! `e2d run` has loaded its material; read at every new connection, so a
//! reload reaches the next one.

use std::sync::{Arc, RwLock};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::material::{Material, Role};

static MATERIAL: RwLock<Option<Arc<Material>>> = RwLock::new(None);

/// The material installed, for the listeners.
pub fn installed() -> Option<Arc<Material>> {
    crate::fail_stop::read(&MATERIAL).clone()
}

/// Outgoing calls use `material` from now on.
pub fn install(material: Option<Arc<Material>>) {
    *crate::fail_stop::write(&MATERIAL) = material;
}

/// `endpoint` with TLS as `role` when its URL is https.
pub fn secure(endpoint: Endpoint, role: Role) -> Result<Endpoint, String> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let material = installed().ok_or_else(|| {
        format!(
            "{} is https, but this node has no --ca-cert",
            endpoint.uri()
        )
    })?;
    let loaded = material.current();
    let pair = loaded.pair(role).ok_or_else(|| {
        format!(
            "{} is https, but this node has no {role:?} certificate",
            endpoint.uri()
        )
    })?;
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&loaded.ca.pem))
        .identity(Identity::from_pem(&pair.chain_pem, &pair.key_pem));
    let uri = endpoint.uri().to_string();
    endpoint
        .tls_config(config)
        .map_err(|e| format!("TLS settings for {uri}: {e}"))
}
