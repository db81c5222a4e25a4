//! The HTTP client of the discovery methods that speak HTTP: the
//! DigitalOcean API and droplet metadata service, and the EC2 instance
//! metadata service.

use std::sync::Arc;

/// A client builder whose TLS is rustls on aws-lc-rs, the provider of every
/// other TLS connection e2d makes, trusting the web's roots (webpki-roots).
/// reqwest is built without a crypto provider of its own, so a client made
/// without this configuration has no TLS to speak.
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot make an HTTP client: TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder().use_preconfigured_tls(config))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use super::client_builder;

    /// A loopback TLS server whose certificate no web root signed: the
    /// client must speak TLS to it and then refuse it, telling the server
    /// why with an alert.
    #[tokio::test]
    async fn the_client_speaks_tls_and_trusts_only_the_web_roots() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            acceptor.accept(stream).await.map(|_| ())
        });

        let client = client_builder().unwrap().build().unwrap();
        let answer = client
            .get(format!("https://localhost:{port}/"))
            .send()
            .await;

        assert!(answer.is_err(), "a self-signed certificate was trusted");
        let refused = accepted.await.unwrap().unwrap_err().to_string();
        assert!(refused.contains("UnknownCA"), "the server saw: {refused}");
    }
}
