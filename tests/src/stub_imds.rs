//! The EC2 instance metadata service as one instance sees it: IMDSv2
//! (session tokens) or IMDSv1 only, serving the instance id.

use std::sync::Arc;

use crate::stub_http::{StubRequest, StubResponse, StubServer};

const TOKEN: &str = "stub-imds-session-token";

pub struct StubImds {
    server: StubServer,
}

impl StubImds {
    /// Serves `instance_id`; `v2` asks for a session token first, as
    /// IMDSv2 does; otherwise the token endpoint is absent (IMDSv1).
    pub fn start(instance_id: &str, v2: bool) -> StubImds {
        let id = instance_id.to_string();
        let server = StubServer::start(Arc::new(move |request: &StubRequest| {
            match (request.method.as_str(), request.path.as_str()) {
                ("PUT", "/latest/api/token") if v2 => {
                    if request
                        .headers
                        .contains_key("x-aws-ec2-metadata-token-ttl-seconds")
                    {
                        StubResponse::text(200, TOKEN)
                    } else {
                        StubResponse::text(400, "missing ttl")
                    }
                }
                ("GET", "/latest/meta-data/instance-id") => {
                    let token = request.headers.get("x-aws-ec2-metadata-token");
                    if v2 && token.map(String::as_str) != Some(TOKEN) {
                        StubResponse::text(401, "")
                    } else {
                        StubResponse::text(200, id.clone())
                    }
                }
                _ => StubResponse::text(404, "not found"),
            }
        }));
        StubImds { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}
