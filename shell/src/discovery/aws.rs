//! EC2 discovery: the InService instances of this instance's Auto Scaling
//! group (`aws-autoscaling-group`), or the running instances carrying a set
//! of tags (`ec2-tags`). Region, credentials and endpoints come from the
//! AWS SDK's standard chain (`AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`, profiles, instance roles).

use std::net::IpAddr;

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ec2::error::SdkError;
use aws_sdk_ec2::types::Filter;
use tokio::sync::OnceCell;

use super::imds::Imds;
use super::{finish_listing, own_id_or_warn};
use super::{DiscoverFuture, Discovered, DiscoveryError, PeerSource, Settings};
use super::{CALL_TIMEOUT, PAGES_MAX};

/// Instance ids asked about in one DescribeInstances call.
const IDS_PER_CALL_MAX: usize = 500;

/// The clients, made on first use (loading the chain may ask the metadata
/// service for the region).
struct Clients {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

struct Aws {
    method: &'static str,
    clients: OnceCell<Clients>,
    imds: Imds,
    own_ips: Vec<IpAddr>,
}

impl Aws {
    fn new(method: &'static str, settings: &Settings) -> Result<Self, DiscoveryError> {
        let imds = Imds::from_env().map_err(|e| DiscoveryError::new(method, e))?;
        Ok(Self {
            method,
            clients: OnceCell::new(),
            imds,
            own_ips: settings.own_ips.clone(),
        })
    }

    fn error(&self, reason: impl Into<String>) -> DiscoveryError {
        DiscoveryError::new(self.method, reason)
    }

    async fn clients(&self) -> Result<&Clients, DiscoveryError> {
        self.clients
            .get_or_try_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                if config.region().is_none() {
                    return Err(self.error(
                        "no AWS region: set AWS_REGION (off EC2 the metadata service cannot tell it)",
                    ));
                }
                Ok(Clients {
                    ec2: aws_sdk_ec2::Client::new(&config),
                    autoscaling: aws_sdk_autoscaling::Client::new(&config),
                })
            })
            .await
    }

    /// One call that needs `permission`, bounded in time.
    async fn call<T, E, R>(
        &self,
        permission: &str,
        call: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, DiscoveryError>
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(self.error(format!("{permission} timed out"))),
            Ok(result) => result.map_err(|e| self.error(failure(permission, &e))),
        }
    }

    /// Instances matching `filters` (or with `ids`), paged: (id, private
    /// IP, tags) of each.
    async fn instances(
        &self,
        filters: Vec<Filter>,
        ids: Vec<String>,
    ) -> Result<Vec<Instance>, DiscoveryError> {
        let ec2 = &self.clients().await?.ec2;
        let mut pages = ec2
            .describe_instances()
            .set_filters(Some(filters))
            .set_instance_ids((!ids.is_empty()).then_some(ids))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        for _ in 0..PAGES_MAX {
            let page = match tokio::time::timeout(CALL_TIMEOUT, pages.next()).await {
                Err(_) => return Err(self.error("EC2 DescribeInstances timed out")),
                Ok(None) => return Ok(found),
                Ok(Some(page)) => {
                    page.map_err(|e| self.error(failure("ec2:DescribeInstances", &e)))?
                }
            };
            for reservation in page.reservations() {
                for instance in reservation.instances() {
                    found.push(Instance {
                        id: instance.instance_id().unwrap_or_default().to_string(),
                        private_ip: instance.private_ip_address().and_then(|ip| ip.parse().ok()),
                        tags: instance
                            .tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                            .collect(),
                    });
                }
            }
        }
        Err(self.error(format!(
            "EC2 DescribeInstances returned more than {PAGES_MAX} pages; narrow the tags"
        )))
    }

    /// The peers among `instances`, without this one: by instance id when
    /// the metadata service told it, else by this node's addresses.
    fn peers(
        &self,
        instances: Vec<Instance>,
        own_id: Option<&str>,
        mut warnings: Vec<String>,
    ) -> Discovered {
        let mut ips = Vec::new();
        for instance in &instances {
            if own_id == Some(instance.id.as_str()) {
                continue;
            }
            match instance.private_ip {
                Some(ip) => ips.push(ip),
                None => warnings.push(format!(
                    "instance {} has no private IPv4 address; left out",
                    instance.id
                )),
            }
        }
        finish_listing(ips, own_id, "instance", &self.own_ips, warnings)
    }
}

/// Why a call failed; a refusal by the service names the permission the
/// call needs.
fn failure<E, R>(permission: &str, error: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let context = aws_sdk_ec2::error::DisplayErrorContext(error);
    match error {
        SdkError::ServiceError(_) => format!(
            "{permission} was refused: {context} (does the instance role allow {permission}?)"
        ),
        _ => format!("{permission} failed: {context}"),
    }
}

struct Instance {
    id: String,
    private_ip: Option<IpAddr>,
    tags: Vec<(String, String)>,
}

/// `aws-autoscaling-group`.
pub struct AutoScalingGroup(Aws);

impl AutoScalingGroup {
    pub fn new(settings: &Settings) -> Result<Self, DiscoveryError> {
        Ok(Self(Aws::new("aws-autoscaling-group", settings)?))
    }

    async fn find(&self) -> Result<Discovered, DiscoveryError> {
        let aws = &self.0;
        let own_id = aws.imds.instance_id().await.map_err(|e| {
            aws.error(format!(
                "cannot tell this instance's id: {e} (aws-autoscaling-group works on an EC2 instance of an Auto Scaling group)"
            ))
        })?;
        let autoscaling = &aws.clients().await?.autoscaling;
        let described = aws
            .call(
                "autoscaling:DescribeAutoScalingInstances",
                autoscaling
                    .describe_auto_scaling_instances()
                    .instance_ids(&own_id)
                    .send(),
            )
            .await?;
        let group = described
            .auto_scaling_instances()
            .iter()
            .find_map(|i| i.auto_scaling_group_name())
            .ok_or_else(|| aws.error(format!("instance {own_id} is not in an Auto Scaling group")))?
            .to_string();
        let groups = aws
            .call(
                "autoscaling:DescribeAutoScalingGroups",
                autoscaling
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&group)
                    .send(),
            )
            .await?;
        let mut ids: Vec<String> = groups
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .filter(|id| *id != own_id)
            .collect();
        ids.sort();
        ids.dedup();
        let mut instances = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL_MAX) {
            instances.extend(aws.instances(Vec::new(), chunk.to_vec()).await?);
        }
        let mut found = aws.peers(instances, Some(&own_id), Vec::new());
        found.self_excluded_by = format!("{} in group {group}", found.self_excluded_by);
        Ok(found)
    }
}

impl PeerSource for AutoScalingGroup {
    fn method(&self) -> String {
        "aws-autoscaling-group".into()
    }

    fn discover(&self) -> DiscoverFuture<'_> {
        Box::pin(self.find())
    }
}

/// `ec2-tags[:<name>=<value>,...]`.
pub struct Ec2Tags {
    aws: Aws,
    tags: Vec<(String, String)>,
}

impl Ec2Tags {
    pub fn new(tags: Vec<(String, String)>, settings: &Settings) -> Result<Self, DiscoveryError> {
        Ok(Self {
            aws: Aws::new("ec2-tags", settings)?,
            tags,
        })
    }

    async fn find(&self) -> Result<Discovered, DiscoveryError> {
        let aws = &self.aws;
        let own_id = aws.imds.instance_id().await;
        let mut warnings = Vec::new();
        let tags = if self.tags.is_empty() {
            let own_id = own_id.as_ref().map_err(|e| {
                aws.error(format!(
                    "without tags, ec2-tags matches this instance's own tags, but {e}; \
                     name the tags instead: ec2-tags:<name>=<value>,..."
                ))
            })?;
            let own = aws.instances(Vec::new(), vec![own_id.clone()]).await?;
            let tags: Vec<(String, String)> = own.into_iter().flat_map(|i| i.tags).collect();
            if tags.is_empty() {
                return Err(aws.error(format!(
                    "instance {own_id} has no tags to match; tag the instances or name the tags: ec2-tags:<name>=<value>"
                )));
            }
            tags
        } else {
            self.tags.clone()
        };
        let mut filters: Vec<Filter> = tags
            .iter()
            .map(|(key, value)| {
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build()
            })
            .collect();
        filters.push(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        );
        let instances = aws.instances(filters, Vec::new()).await?;
        let own_id = own_id_or_warn(own_id, "instance", &mut warnings);
        Ok(aws.peers(instances, own_id.as_deref(), warnings))
    }
}

impl PeerSource for Ec2Tags {
    fn method(&self) -> String {
        super::Method::Ec2Tags(self.tags.clone()).to_string()
    }

    fn discover(&self) -> DiscoverFuture<'_> {
        Box::pin(self.find())
    }
}
