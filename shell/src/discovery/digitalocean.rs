//! DigitalOcean discovery (`do-tags`): droplets by tag through the API
//! (`GET /v2/droplets?tag_name=...`, every page), their private IPv4
//! addresses, without this droplet (its id from the droplet metadata
//! service, or else this node's own addresses).

use std::net::IpAddr;

use serde::Deserialize;

use super::{finish_listing, own_id_or_warn};
use super::{DiscoverFuture, Discovered, DiscoveryError, PeerSource, Settings};
use super::{CALL_TIMEOUT, PAGES_MAX};

/// Droplets per page (the API's largest).
const PER_PAGE: usize = 200;
const METHOD: &str = "do-tags";

pub struct DoTags {
    tags: Vec<String>,
    token: String,
    api_url: String,
    metadata_url: String,
    own_ips: Vec<IpAddr>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct DropletPage {
    #[serde(default)]
    droplets: Vec<Droplet>,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
struct Droplet {
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    networks: Networks,
}

#[derive(Deserialize, Default)]
struct Networks {
    #[serde(default)]
    v4: Vec<Address>,
}

#[derive(Deserialize)]
struct Address {
    ip_address: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    pages: Pages,
}

#[derive(Deserialize, Default)]
struct Pages {
    next: Option<String>,
}

fn error(reason: impl Into<String>) -> DiscoveryError {
    DiscoveryError::new(METHOD, reason)
}

impl DoTags {
    pub fn new(tags: Vec<String>, settings: &Settings) -> Result<Self, DiscoveryError> {
        let token = settings
            .do_access_token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                error("needs a DigitalOcean API token: set --do-access-token or DIGITALOCEAN_ACCESS_TOKEN")
            })?;
        let http = super::http::client_builder()
            .map_err(error)?
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| error(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            tags,
            token: token.trim().to_string(),
            api_url: settings.do_api_url.trim_end_matches('/').to_string(),
            metadata_url: settings.do_metadata_url.trim_end_matches('/').to_string(),
            own_ips: settings.own_ips.clone(),
            http,
        })
    }

    async fn find(&self) -> Result<Discovered, DiscoveryError> {
        let own_id = self.metadata("id").await.and_then(|id| {
            id.trim()
                .parse::<u64>()
                .map_err(|_| format!("the droplet metadata service gave {id:?} as the droplet id"))
        });
        let tags = if self.tags.is_empty() {
            let listed = self.metadata("tags").await.map_err(|e| {
                error(format!(
                    "without tags, do-tags matches this droplet's own tags, but {e}; name the tags instead: do-tags:<tag>,..."
                ))
            })?;
            let tags: Vec<String> = listed
                .lines()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .take(super::method::TAGS_MAX)
                .collect();
            if tags.is_empty() {
                return Err(error(
                    "this droplet has no tags to match; tag the droplets or name the tags: do-tags:<tag>",
                ));
            }
            tags
        } else {
            self.tags.clone()
        };
        let mut droplets = Vec::new();
        for tag in &tags {
            droplets.extend(self.droplets(tag).await?);
        }
        let mut warnings = Vec::new();
        let own_id = own_id_or_warn(own_id, "droplet", &mut warnings);
        let mut ips = Vec::new();
        for droplet in droplets.iter().filter(|d| Some(d.id) != own_id) {
            let private = droplet
                .networks
                .v4
                .iter()
                .filter(|a| a.kind == "private")
                .find_map(|a| a.ip_address.parse::<IpAddr>().ok());
            match private {
                Some(ip) => ips.push(ip),
                None => warnings.push(format!(
                    "droplet {} ({}) has no private IPv4 address; left out (is it in a VPC?)",
                    droplet.name, droplet.id
                )),
            }
        }
        Ok(finish_listing(
            ips,
            own_id,
            "droplet",
            &self.own_ips,
            warnings,
        ))
    }

    /// Every droplet tagged `tag`, page by page.
    async fn droplets(&self, tag: &str) -> Result<Vec<Droplet>, DiscoveryError> {
        let mut droplets = Vec::new();
        for page in 1..=PAGES_MAX {
            let response = self
                .http
                .get(format!("{}/v2/droplets", self.api_url))
                .query(&[
                    ("tag_name", tag),
                    ("page", &page.to_string()),
                    ("per_page", &PER_PAGE.to_string()),
                ])
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| {
                    error(format!(
                        "cannot reach the DigitalOcean API at {}: {e}",
                        self.api_url
                    ))
                })?;
            let status = response.status();
            if status.as_u16() == 401 || status.as_u16() == 403 {
                return Err(error(format!(
                    "the DigitalOcean API refused the token ({status}); check that it is valid and may read droplets"
                )));
            }
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(error(format!(
                    "the DigitalOcean API answered {status} listing droplets tagged {tag:?}: {}",
                    body.chars().take(200).collect::<String>()
                )));
            }
            let page: DropletPage = response.json().await.map_err(|e| {
                error(format!(
                    "the DigitalOcean API's droplet list does not parse: {e}"
                ))
            })?;
            droplets.extend(page.droplets);
            if page.links.pages.next.is_none() {
                return Ok(droplets);
            }
        }
        Err(error(format!(
            "more than {PAGES_MAX} pages of droplets tagged {tag:?}; use a narrower tag"
        )))
    }

    /// `<metadata>/<path>` of the droplet metadata service.
    async fn metadata(&self, path: &str) -> Result<String, String> {
        let url = format!("{}/{path}", self.metadata_url);
        let response = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| format!("the droplet metadata service at {url} does not answer ({e}); is this a droplet?"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the droplet metadata service answered {} for {url}",
                response.status()
            ));
        }
        response
            .text()
            .await
            .map_err(|e| format!("reading {url}: {e}"))
    }
}

impl PeerSource for DoTags {
    fn method(&self) -> String {
        super::Method::DoTags(self.tags.clone()).to_string()
    }

    fn discover(&self) -> DiscoverFuture<'_> {
        Box::pin(self.find())
    }
}
