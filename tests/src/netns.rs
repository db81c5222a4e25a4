//! A small network of our own for partition tests: one network namespace
//! per host, each joined by a veth pair to a bridge on a private /24 that
//! the test process reaches too. Cutting a host takes its veth down;
//! healing brings it back. Everything is removed on drop. Needs root and
//! iproute2 (`ip`).

use std::net::Ipv4Addr;
use std::process::Command;

pub struct Lab {
    bridge: String,
    hosts: Vec<Host>,
}

pub struct Host {
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The veth end on the bridge side.
    link: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// `hosts` namespaces on a fresh bridge, or why that is impossible
    /// here (not root, no iproute2, no namespaces).
    pub fn create(hosts: usize) -> Result<Lab, String> {
        assert!(hosts < 250, "one /24 holds the hosts");
        let tag = std::process::id() % 100_000;
        let subnet = 16 + (std::process::id() % 200) as u8;
        let mut lab = Lab {
            bridge: format!("e2dbr{tag}"),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.213.{subnet}.254/24"),
            "dev",
            &lab.bridge,
        ])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
        for i in 0..hosts {
            let host = Host {
                netns: format!("e2dns{tag}-{i}"),
                ip: Ipv4Addr::new(10, 213, subnet, i as u8 + 1),
                link: format!("e2dv{tag}h{i}"),
            };
            let inner = format!("e2dv{tag}i{i}");
            ip(&["netns", "add", &host.netns])?;
            lab.hosts.push(host);
            let host = lab.hosts.last().expect("just pushed");
            ip(&[
                "link", "add", &host.link, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &host.netns])?;
            ip(&["link", "set", &host.link, "master", &lab.bridge])?;
            ip(&["link", "set", &host.link, "up"])?;
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &host.netns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            in_ns(&["link", "set", "lo", "up"])?;
            in_ns(&["addr", "add", &format!("{}/24", host.ip), "dev", &inner])?;
            in_ns(&["link", "set", &inner, "up"])?;
        }
        Ok(lab)
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Cuts host `i` off the network.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "down"]).expect("cannot cut a host off");
    }

    /// Connects host `i` again.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "up"]).expect("cannot reconnect a host");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &self.hosts {
            // The veth pair goes with the namespace.
            let _ = ip(&["netns", "del", &host.netns]);
            let _ = ip(&["link", "del", &host.link]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
