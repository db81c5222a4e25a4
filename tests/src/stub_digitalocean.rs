//! The DigitalOcean droplets API (`GET /v2/droplets?tag_name=`, paged, with
//! bearer tokens) and each droplet's metadata service (`/metadata/v1/id`,
//! `/metadata/v1/tags`), on one loopback HTTP server. Pages hold at most
//! [`PAGE_SIZE`] droplets, so that listing a few droplets pages.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::stub_http::{StubRequest, StubResponse, StubServer};

pub const PAGE_SIZE: usize = 2;

#[derive(Debug, Clone)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub private_ip: Option<Ipv4Addr>,
    pub public_ip: Ipv4Addr,
    pub tags: Vec<String>,
}

pub struct StubDigitalOcean {
    server: StubServer,
    pub droplets: Arc<Mutex<Vec<Droplet>>>,
    /// Every droplets API request, in order.
    pub api_requests: Arc<Mutex<Vec<StubRequest>>>,
}

impl StubDigitalOcean {
    pub fn start(token: &str, droplets: Vec<Droplet>) -> StubDigitalOcean {
        let droplets = Arc::new(Mutex::new(droplets));
        let api_requests = Arc::new(Mutex::new(Vec::new()));
        let (listed, seen, bearer) = (
            droplets.clone(),
            api_requests.clone(),
            format!("Bearer {token}"),
        );
        let server = StubServer::start(Arc::new(move |request: &StubRequest| {
            if request.path == "/v2/droplets" {
                seen.lock().unwrap().push(request.clone());
                if request.headers.get("authorization") != Some(&bearer) {
                    return StubResponse::json(
                        401,
                        json!({"id": "Unauthorized", "message": "Unable to authenticate you"})
                            .to_string(),
                    );
                }
                return list(&listed.lock().unwrap(), request);
            }
            metadata(&listed.lock().unwrap(), &request.path)
        }));
        StubDigitalOcean {
            server,
            droplets,
            api_requests,
        }
    }

    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// The metadata service as droplet `id` sees it.
    pub fn metadata_url(&self, id: u64) -> String {
        format!("{}/droplet/{id}/metadata/v1", self.server.url())
    }
}

fn list(droplets: &[Droplet], request: &StubRequest) -> StubResponse {
    let tag = request.query.get("tag_name");
    let page: usize = request
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = request
        .query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .clamp(1, PAGE_SIZE);
    let matching: Vec<&Droplet> = droplets
        .iter()
        .filter(|d| tag.is_none_or(|t| d.tags.contains(t)))
        .collect();
    let shown: Vec<_> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|d| {
            let mut v4 = vec![json!({
                "ip_address": d.public_ip.to_string(),
                "netmask": "255.255.240.0",
                "gateway": "203.0.113.1",
                "type": "public",
            })];
            if let Some(ip) = d.private_ip {
                v4.push(json!({
                    "ip_address": ip.to_string(),
                    "netmask": "255.255.0.0",
                    "gateway": "10.10.0.1",
                    "type": "private",
                }));
            }
            json!({
                "id": d.id,
                "name": d.name,
                "status": "active",
                "tags": d.tags,
                "networks": {"v4": v4, "v6": []},
            })
        })
        .collect();
    let last = matching.len().div_ceil(per_page).max(1);
    let page_url = |n: usize| {
        format!(
            "https://api.digitalocean.com/v2/droplets?page={n}&per_page={per_page}&tag_name={}",
            tag.map_or("", String::as_str)
        )
    };
    let mut pages = serde_json::Map::new();
    if page < last {
        pages.insert("next".into(), page_url(page + 1).into());
        pages.insert("last".into(), page_url(last).into());
    }
    if page > 1 {
        pages.insert("first".into(), page_url(1).into());
        pages.insert("prev".into(), page_url(page - 1).into());
    }
    StubResponse::json(
        200,
        json!({
            "droplets": shown,
            "links": {"pages": pages},
            "meta": {"total": matching.len()},
        })
        .to_string(),
    )
}

fn metadata(droplets: &[Droplet], path: &str) -> StubResponse {
    let Some(rest) = path.strip_prefix("/droplet/") else {
        return StubResponse::text(404, "not found");
    };
    let Some((id, what)) = rest.split_once("/metadata/v1/") else {
        return StubResponse::text(404, "not found");
    };
    let Some(droplet) = droplets.iter().find(|d| d.id.to_string() == id) else {
        return StubResponse::text(404, "no such droplet");
    };
    match what {
        "id" => StubResponse::text(200, droplet.id.to_string()),
        "tags" => StubResponse::text(200, droplet.tags.join("\n")),
        _ => StubResponse::text(404, "not found"),
    }
}
