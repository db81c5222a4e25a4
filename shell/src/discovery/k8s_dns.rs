//! Kubernetes discovery (`k8s-dns:<service>`): the addresses a headless
//! Service's name resolves to, one per pod. The Service needs
//! `publishNotReadyAddresses: true`, since pods must find each other
//! before any of them is ready. Names resolve with the system's DNS
//! configuration (search domains included), or with `--dns-server`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use super::CALL_TIMEOUT;
use super::{finish, DiscoverFuture, Discovered, DiscoveryError, PeerSource, Settings};

const METHOD: &str = "k8s-dns";
/// Pods come and go; an answer is not kept longer than this.
const ANSWER_TTL_MAX: Duration = Duration::from_secs(5);
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub struct K8sDns {
    service: String,
    resolver: TokioResolver,
    own_ips: Vec<IpAddr>,
}

impl K8sDns {
    pub fn new(service: &str, settings: &Settings) -> Result<Self, DiscoveryError> {
        let mut builder = if settings.dns_servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                DiscoveryError::new(
                    METHOD,
                    format!("cannot read the system's DNS configuration: {e}; give --dns-server"),
                )
            })?
        } else {
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers(&settings.dns_servers)),
                TokioConnectionProvider::default(),
            )
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.positive_max_ttl = Some(ANSWER_TTL_MAX);
        options.negative_max_ttl = Some(ANSWER_TTL_MAX);
        options.timeout = QUERY_TIMEOUT;
        options.attempts = 2;
        Ok(Self {
            service: service.to_string(),
            resolver: builder.build(),
            own_ips: settings.own_ips.clone(),
        })
    }

    async fn find(&self) -> Result<Discovered, DiscoveryError> {
        let answer = tokio::time::timeout(CALL_TIMEOUT, self.resolver.lookup_ip(self.service.as_str()))
            .await
            .map_err(|_| DiscoveryError::new(METHOD, format!("resolving {} timed out", self.service)))?
            .map_err(|e| {
                DiscoveryError::new(
                    METHOD,
                    format!(
                        "{} does not resolve: {e} (is it a headless Service with publishNotReadyAddresses: true, in this namespace?)",
                        self.service
                    ),
                )
            })?;
        let ips: Vec<IpAddr> = answer.iter().collect();
        Ok(finish(
            ips,
            &self.own_ips,
            "this pod's own addresses".into(),
            Vec::new(),
        ))
    }
}

/// Each server over UDP, and over TCP for answers too long for UDP.
fn servers(addrs: &[SocketAddr]) -> NameServerConfigGroup {
    let configs: Vec<NameServerConfig> = addrs
        .iter()
        .flat_map(|addr| {
            [
                NameServerConfig::new(*addr, Protocol::Udp),
                NameServerConfig::new(*addr, Protocol::Tcp),
            ]
        })
        .collect();
    NameServerConfigGroup::from(configs)
}

impl PeerSource for K8sDns {
    fn method(&self) -> String {
        format!("k8s-dns:{}", self.service)
    }

    fn discover(&self) -> DiscoverFuture<'_> {
        Box::pin(self.find())
    }
}
