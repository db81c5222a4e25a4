//! The simulator's cloud: addresses registered under a tag, in memory.
//! Under `--cfg madsim` every discovery method reads it: `ec2-tags` and
//! `do-tags` by each tag (`Name=value` for EC2), `k8s-dns` by the Service
//! name, `aws-autoscaling-group` by that name. The harness registers and
//! removes machines as it starts and kills them; runs in one process use
//! tags of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;

use super::{finish, DiscoverFuture, Discovered, DiscoveryError, Method, PeerSource};

static CLOUD: Mutex<BTreeMap<String, BTreeSet<IpAddr>>> = Mutex::new(BTreeMap::new());

fn cloud() -> std::sync::MutexGuard<'static, BTreeMap<String, BTreeSet<IpAddr>>> {
    crate::fail_stop::lock(&CLOUD)
}

/// `ip` answers to `tag` from now on.
pub fn register(tag: &str, ip: IpAddr) {
    cloud().entry(tag.to_string()).or_default().insert(ip);
}

/// `ip` no longer answers to `tag`.
pub fn deregister(tag: &str, ip: IpAddr) {
    if let Some(ips) = cloud().get_mut(tag) {
        ips.remove(&ip);
    }
}

/// Forgets `tag` and its addresses (its simulated run is over).
pub fn forget(tag: &str) {
    cloud().remove(tag);
}

/// The tags `method` looks up in the simulated cloud.
fn tags_of(method: &Method) -> Vec<String> {
    match method {
        Method::AwsAutoscalingGroup => vec![method.name().to_string()],
        Method::Ec2Tags(tags) => tags.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        Method::DoTags(tags) => tags.clone(),
        Method::K8sDns { service } => vec![service.clone()],
    }
}

/// A method answered from the simulated cloud.
pub struct SimulatedSource {
    method: Method,
    own_ips: Vec<IpAddr>,
}

impl SimulatedSource {
    pub fn new(method: Method, own_ips: Vec<IpAddr>) -> Self {
        Self { method, own_ips }
    }

    fn find(&self) -> Result<Discovered, DiscoveryError> {
        let tags = tags_of(&self.method);
        if tags.is_empty() {
            return Err(DiscoveryError::new(
                self.method.name(),
                "the simulated cloud needs the tags named",
            ));
        }
        let cloud = cloud();
        // EC2 tags must all match; the other methods take any tag.
        let all = matches!(self.method, Method::Ec2Tags(_));
        let mut matching: Option<BTreeSet<IpAddr>> = None;
        for tag in &tags {
            let ips = cloud.get(tag).cloned().unwrap_or_default();
            matching = Some(match matching {
                None => ips,
                Some(so_far) if all => so_far.intersection(&ips).copied().collect(),
                Some(so_far) => so_far.union(&ips).copied().collect(),
            });
        }
        let found: Vec<IpAddr> = matching.unwrap_or_default().into_iter().collect();
        Ok(finish(
            found,
            &self.own_ips,
            "this node's own addresses".into(),
            Vec::new(),
        ))
    }
}

impl PeerSource for SimulatedSource {
    fn method(&self) -> String {
        self.method.to_string()
    }

    fn discover(&self) -> DiscoverFuture<'_> {
        let found = self.find();
        Box::pin(async move { found })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{deregister, forget, register, SimulatedSource};
    use crate::discovery::{Method, PeerSource};

    #[test]
    fn the_simulated_cloud_answers_by_tag_without_the_asking_node() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for last in 1..=3 {
            register("sim-e2d", ip(&format!("10.9.0.{last}")));
        }
        register("Role=etcd", ip("10.9.0.1"));
        register("Role=etcd", ip("10.9.0.2"));
        register("Env=test", ip("10.9.0.2"));
        deregister("sim-e2d", ip("10.9.0.3"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let found = |method: &str, own: &str| {
            let source = SimulatedSource::new(method.parse::<Method>().unwrap(), vec![ip(own)]);
            runtime.block_on(source.discover()).unwrap().peers
        };
        assert_eq!(found("do-tags:sim-e2d", "10.9.0.1"), vec![ip("10.9.0.2")]);
        assert_eq!(
            found("ec2-tags:Role=etcd", "10.9.0.9"),
            vec![ip("10.9.0.1"), ip("10.9.0.2")]
        );
        assert_eq!(
            found("ec2-tags:Role=etcd,Env=test", "10.9.0.9"),
            vec![ip("10.9.0.2")]
        );
        assert!(found("k8s-dns:nothing", "10.9.0.1").is_empty());
        for tag in ["sim-e2d", "Role=etcd", "Env=test"] {
            forget(tag);
        }
        assert!(found("do-tags:sim-e2d", "10.9.0.1").is_empty());
    }
}
