//! What outgoing calls present: the peer certificate to other members'
//! peer ports, the client certificate to their client ports. Set once
//! `e2d run` has loaded its material; read at every new connection, so a
//! reload reaches the next one.

use std::sync::{Arc, RwLock};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::material::{Material, Role};

static MATERIAL: RwLock<Option<Arc<Material>>> = RwLock::new(None);

/// The material installed, for the listeners.
pub fn installed() -> Option<Arc<Material>> {
    MATERIAL.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Outgoing calls use `material` from now on.
pub fn install(material: Option<Arc<Material>>) {
    *MATERIAL.write().unwrap_or_else(|p| p.into_inner()) = material;
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// `endpoint` with TLS as `role` when its URL is https.
pub fn secure(endpoint: Endpoint, role: Role) -> Result<Endpoint, String> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let material = MATERIAL
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| {
            format!(
                "{} is https, but this node has no --ca-cert",
                endpoint.uri()
            )
        })?;
    let loaded = material.current();
    let pair = loaded.pair(role);
    let chain: String = pair.chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
    let key = pem("PRIVATE KEY", pair.key.secret_der());
    let key = match &pair.key {
        rustls::pki_types::PrivateKeyDer::Pkcs1(k) => pem("RSA PRIVATE KEY", k.secret_pkcs1_der()),
        rustls::pki_types::PrivateKeyDer::Sec1(k) => pem("EC PRIVATE KEY", k.secret_sec1_der()),
        _ => key,
    };
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem("CERTIFICATE", &loaded.ca)))
        .identity(Identity::from_pem(chain, key));
    let uri = endpoint.uri().to_string();
    endpoint
        .tls_config(config)
        .map_err(|e| format!("TLS settings for {uri}: {e}"))
}
