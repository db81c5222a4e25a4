//! `--peer-discovery`: which method, with its arguments.

use std::fmt;
use std::str::FromStr;

/// Longest list of tags a method takes.
pub const TAGS_MAX: usize = 32;

/// How a node finds the gossip addresses of its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// The InService instances of this EC2 instance's Auto Scaling group.
    AwsAutoscalingGroup,
    /// Running EC2 instances carrying every one of these tags; none given
    /// means this instance's own tags.
    Ec2Tags(Vec<(String, String)>),
    /// Droplets carrying any of these tags; none given means this
    /// droplet's own tags.
    DoTags(Vec<String>),
    /// The addresses a Kubernetes headless Service's name resolves to.
    K8sDns { service: String },
}

pub const USAGE: &str = "use aws-autoscaling-group, ec2-tags[:<name>=<value>,...], \
                         do-tags[:<tag>,...] or k8s-dns:<headless-service>";

impl Method {
    /// The method's name, as the flag spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Method::AwsAutoscalingGroup => "aws-autoscaling-group",
            Method::Ec2Tags(_) => "ec2-tags",
            Method::DoTags(_) => "do-tags",
            Method::K8sDns { .. } => "k8s-dns",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::AwsAutoscalingGroup => f.write_str(self.name()),
            Method::Ec2Tags(tags) if tags.is_empty() => f.write_str(self.name()),
            Method::Ec2Tags(tags) => {
                let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "ec2-tags:{}", pairs.join(","))
            }
            Method::DoTags(tags) if tags.is_empty() => f.write_str(self.name()),
            Method::DoTags(tags) => write!(f, "do-tags:{}", tags.join(",")),
            Method::K8sDns { service } => write!(f, "k8s-dns:{service}"),
        }
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, argument) = match text.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (text, None),
        };
        let method = match (name, argument) {
            ("aws-autoscaling-group", None) => Method::AwsAutoscalingGroup,
            ("aws-autoscaling-group", Some(_)) => return Err(
                "aws-autoscaling-group takes no argument: the group is the one this instance is in"
                    .into(),
            ),
            ("ec2-tags", argument) => Method::Ec2Tags(ec2_tags(argument.unwrap_or(""))?),
            ("do-tags", argument) => Method::DoTags(do_tags(argument.unwrap_or(""))?),
            ("k8s-dns", Some(service)) if valid_dns_name(service) => Method::K8sDns {
                service: service.to_string(),
            },
            ("k8s-dns", Some(service)) => {
                return Err(format!(
                    "k8s-dns: {service:?} is not a DNS name: give the headless Service's name, \
                     e.g. k8s-dns:e2d or k8s-dns:e2d.default.svc.cluster.local"
                ))
            }
            ("k8s-dns", None) => return Err(
                "k8s-dns needs the headless Service's name: k8s-dns:<service>, e.g. k8s-dns:e2d"
                    .into(),
            ),
            (other, _) => return Err(format!("unknown peer discovery method {other:?}: {USAGE}")),
        };
        Ok(method)
    }
}

fn ec2_tags(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "ec2-tags: tag {item:?} has no value: write <name>=<value>, e.g. ec2-tags:Name=my-cluster"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(format!("ec2-tags: {item:?} has an empty tag name"));
        }
        if tags.iter().any(|(k, _)| k == key) {
            return Err(format!(
                "ec2-tags: tag {key:?} is given twice; an instance has one value per tag"
            ));
        }
        tags.push((key.to_string(), value.to_string()));
    }
    if tags.len() > TAGS_MAX {
        return Err(format!("ec2-tags: more than {TAGS_MAX} tags"));
    }
    Ok(tags)
}

fn do_tags(list: &str) -> Result<Vec<String>, String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // DigitalOcean tags: letters, digits, ':', '-' and '_', up to 255.
        let valid = tag.len() <= 255
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'));
        if !valid {
            return Err(format!(
                "do-tags: {tag:?} is not a DigitalOcean tag (letters, digits, ':', '-' and '_', at most 255)"
            ));
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    if tags.len() > TAGS_MAX {
        return Err(format!("do-tags: more than {TAGS_MAX} tags"));
    }
    Ok(tags)
}

fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::Method;

    #[test]
    fn methods_parse_with_their_arguments() {
        let cases: [(&str, Method); 7] = [
            ("aws-autoscaling-group", Method::AwsAutoscalingGroup),
            ("ec2-tags", Method::Ec2Tags(vec![])),
            (
                "ec2-tags:Name=my-cluster,Email=admin@example.com",
                Method::Ec2Tags(vec![
                    ("Name".into(), "my-cluster".into()),
                    ("Email".into(), "admin@example.com".into()),
                ]),
            ),
            (
                "ec2-tags:Role=",
                Method::Ec2Tags(vec![("Role".into(), "".into())]),
            ),
            ("do-tags", Method::DoTags(vec![])),
            (
                "do-tags:e2d,k8s:etcd,e2d",
                Method::DoTags(vec!["e2d".into(), "k8s:etcd".into()]),
            ),
            (
                "k8s-dns:e2d.default.svc.cluster.local",
                Method::K8sDns {
                    service: "e2d.default.svc.cluster.local".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            let method: Method = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(method, expected, "{text}");
            // What is shown parses back to the same method.
            assert_eq!(method.to_string().parse::<Method>(), Ok(method), "{text}");
        }
    }

    #[test]
    fn bad_methods_say_what_is_wrong() {
        for (text, says) in [
            ("gce-tags", "unknown peer discovery method \"gce-tags\""),
            ("aws-autoscaling-group:x", "takes no argument"),
            ("ec2-tags:Name", "has no value"),
            ("ec2-tags:=x", "empty tag name"),
            ("ec2-tags:a=1,a=2", "given twice"),
            ("do-tags:a b", "is not a DigitalOcean tag"),
            ("k8s-dns", "needs the headless Service's name"),
            ("k8s-dns:", "is not a DNS name"),
            ("k8s-dns:a/b", "is not a DNS name"),
        ] {
            let error = text.parse::<Method>().expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
