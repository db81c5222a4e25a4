//! Where snapshots are kept: `--snapshot-backup-url`.

use std::path::PathBuf;

/// A snapshot store's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory.
    File { dir: PathBuf },
    /// An S3 bucket, under `prefix` (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
    /// A DigitalOcean Spaces bucket in `region`.
    Spaces {
        region: String,
        bucket: String,
        prefix: String,
    },
    /// A Google Cloud Storage bucket.
    Gcs { bucket: String, prefix: String },
    /// An Azure Blob Storage container of `account`.
    Azure {
        account: String,
        container: String,
        prefix: String,
    },
}

const SPACES_HOST_SUFFIX: &str = ".digitaloceanspaces.com";

const FORMS: &str = "file://<dir>, s3://<bucket>[/prefix], https://<region>.digitaloceanspaces.com/<bucket>[/prefix], gs://<bucket>[/prefix] or azblob://<account>/<container>[/prefix]";

impl Location {
    /// Parses a store URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid snapshot URL {url:?}: {why}; expected {FORMS}");
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(bad("the path is empty"));
            }
            return Ok(Location::File {
                dir: PathBuf::from(path),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = bucket_and_prefix(rest).map_err(|why| bad(&why))?;
            return Ok(Location::S3 { bucket, prefix });
        }
        if let Some(rest) = url.strip_prefix("gs://") {
            let (bucket, prefix) = bucket_and_prefix(rest).map_err(|why| bad(&why))?;
            return Ok(Location::Gcs { bucket, prefix });
        }
        if let Some(rest) = url.strip_prefix("azblob://") {
            let (account, rest) = rest.split_once('/').unwrap_or((rest, ""));
            let account_ok = (3..=24).contains(&account.len())
                && account
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !account_ok {
                return Err(bad(&format!(
                    "{account:?} is not a storage account name (3 to 24 lowercase letters and digits)"
                )));
            }
            let (container, prefix) = bucket_and_prefix(rest).map_err(|why| bad(&why))?;
            return Ok(Location::Azure {
                account: account.to_string(),
                container,
                prefix,
            });
        }
        if let Some(rest) = url.strip_prefix("https://") {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let region = host
                .strip_suffix(SPACES_HOST_SUFFIX)
                .filter(|region| is_label(region))
                .ok_or_else(|| bad("an https URL must name a DigitalOcean Spaces region"))?;
            let (bucket, prefix) = bucket_and_prefix(path).map_err(|why| bad(&why))?;
            return Ok(Location::Spaces {
                region: region.to_string(),
                bucket,
                prefix,
            });
        }
        Err(bad("unknown scheme"))
    }

    /// A store URL, or a path to a single snapshot file.
    pub fn parse_or_file(text: &str) -> Target {
        if text.contains("://") {
            Target::Store(Self::parse(text))
        } else {
            Target::File(PathBuf::from(text))
        }
    }
}

/// What a command line argument names.
#[derive(Debug)]
pub enum Target {
    Store(Result<Location, String>),
    File(PathBuf),
}

fn is_label(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn bucket_and_prefix(rest: &str) -> Result<(String, String), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c));
    if !bucket_ok {
        return Err(format!(
            "bucket {bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-', '.' or '_')"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == "..") {
        return Err("the prefix may not contain \"..\"".into());
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with_prefix = |prefix: &str| {
            if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            }
        };
        match self {
            Location::File { dir } => write!(f, "file://{}", dir.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}{}", with_prefix(prefix)),
            Location::Spaces {
                region,
                bucket,
                prefix,
            } => write!(
                f,
                "https://{region}{SPACES_HOST_SUFFIX}/{bucket}{}",
                with_prefix(prefix)
            ),
            Location::Gcs { bucket, prefix } => write!(f, "gs://{bucket}{}", with_prefix(prefix)),
            Location::Azure {
                account,
                container,
                prefix,
            } => write!(f, "azblob://{account}/{container}{}", with_prefix(prefix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_parse() {
        assert_eq!(
            Location::parse("file:///var/lib/e2d-snapshots"),
            Ok(Location::File {
                dir: "/var/lib/e2d-snapshots".into()
            })
        );
        assert_eq!(
            Location::parse("s3://e2d_snapshot_bucket"),
            Ok(Location::S3 {
                bucket: "e2d_snapshot_bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            Location::parse("s3://backups/prod/etcd/"),
            Ok(Location::S3 {
                bucket: "backups".into(),
                prefix: "prod/etcd".into()
            })
        );
        assert_eq!(
            Location::parse("https://nyc3.digitaloceanspaces.com/my-space/e2d"),
            Ok(Location::Spaces {
                region: "nyc3".into(),
                bucket: "my-space".into(),
                prefix: "e2d".into()
            })
        );
        assert_eq!(
            Location::parse("gs://backups/prod"),
            Ok(Location::Gcs {
                bucket: "backups".into(),
                prefix: "prod".into()
            })
        );
        assert_eq!(
            Location::parse("azblob://e2dbackups/snapshots/prod/etcd"),
            Ok(Location::Azure {
                account: "e2dbackups".into(),
                container: "snapshots".into(),
                prefix: "prod/etcd".into()
            })
        );
        for url in [
            "file:///x",
            "s3://bucket/a/b",
            "https://ams3.digitaloceanspaces.com/space",
            "gs://bucket/a",
            "azblob://account/container/a/b",
        ] {
            assert_eq!(Location::parse(url).unwrap().to_string(), url);
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let error = |url| Location::parse(url).unwrap_err();
        assert!(error("ftp://x").contains("unknown scheme"));
        assert!(error("file://").contains("the path is empty"));
        assert!(error("s3://").contains("not a bucket name"));
        assert!(error("s3://Upper").contains("not a bucket name"));
        assert!(error("s3://bucket/../x").contains(".."));
        assert!(error("https://example.com/bucket").contains("Spaces region"));
        assert!(error("https://nyc3.digitaloceanspaces.com/").contains("not a bucket name"));
        assert!(error("gs://").contains("not a bucket name"));
        assert!(error("azblob://Account/c").contains("not a storage account name"));
        assert!(error("azblob://account").contains("not a bucket name"));
    }

    #[test]
    fn arguments_are_urls_or_files() {
        assert!(matches!(
            Location::parse_or_file("backup.snap"),
            Target::File(_)
        ));
        assert!(matches!(
            Location::parse_or_file("s3://bucket"),
            Target::Store(Ok(_))
        ));
    }
}
