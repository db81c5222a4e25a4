//! The EC2 instance metadata service: IMDSv2 (a session token first),
//! falling back to IMDSv1 where tokens are not served. The endpoint and the
//! off switch are the AWS SDKs' own variables:
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` and `AWS_EC2_METADATA_DISABLED`.

use std::time::Duration;

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// Off EC2 nothing answers; give up quickly.
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
const TOKEN_TTL_SECONDS: &str = "300";
/// Longest metadata answer read.
const ANSWER_BYTES_MAX: usize = 64 * 1024;

pub struct Imds {
    http: reqwest::Client,
    endpoint: String,
    disabled: bool,
}

impl Imds {
    pub fn from_env() -> Result<Self, String> {
        let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let http = super::http::client_builder()?
            .timeout(IMDS_TIMEOUT)
            .connect_timeout(IMDS_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot make an HTTP client for the metadata service: {e}"))?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            disabled,
        })
    }

    /// This instance's id.
    pub async fn instance_id(&self) -> Result<String, String> {
        let id = self.get("meta-data/instance-id").await?;
        let id = id.trim();
        if id.starts_with("i-") && id.len() <= 64 {
            Ok(id.to_string())
        } else {
            Err(format!(
                "the metadata service gave {id:?} as the instance id"
            ))
        }
    }

    /// `latest/<path>` of the metadata service.
    async fn get(&self, path: &str) -> Result<String, String> {
        if self.disabled {
            return Err("AWS_EC2_METADATA_DISABLED is set".into());
        }
        let token = self.token().await?;
        let mut request = self.http.get(format!("{}/latest/{path}", self.endpoint));
        if let Some(token) = &token {
            request = request.header("X-aws-ec2-metadata-token", token);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading {path} from the metadata service: {e}"))?;
        if !status.is_success() {
            return Err(format!("the metadata service answered {status} for {path}"));
        }
        if body.len() > ANSWER_BYTES_MAX {
            return Err(format!(
                "the metadata service's answer for {path} is too long"
            ));
        }
        String::from_utf8(body.to_vec())
            .map_err(|_| format!("the metadata service's answer for {path} is not text"))
    }

    /// An IMDSv2 session token, or `None` where the service only speaks
    /// IMDSv1.
    async fn token(&self) -> Result<Option<String>, String> {
        let response = self
            .http
            .put(format!("{}/latest/api/token", self.endpoint))
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        match status.as_u16() {
            200 => {
                let token = response
                    .text()
                    .await
                    .map_err(|e| format!("reading the metadata token: {e}"))?;
                Ok(Some(token.trim().to_string()))
            }
            // No token endpoint: IMDSv1.
            404 | 405 => Ok(None),
            403 => Err("the metadata service is turned off for this instance (403)".into()),
            _ => Err(format!(
                "the metadata service answered {status} for a session token"
            )),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> String {
        format!(
            "the metadata service at {} does not answer ({error}); is this an EC2 instance?",
            self.endpoint
        )
    }
}
