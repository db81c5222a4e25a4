//! The cluster's certificates: `e2d pki init` makes a CA (`init`),
//! `e2d pki gencerts` the server, peer and client certificates it signs
//! (`gencerts`), and `check` loads and vets what `e2d run` is given.

pub mod check;
pub mod gencerts;
pub mod init;
pub mod renew;

use std::path::Path;

/// How long a CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 10 * 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} already exists; pass --force to replace it{why}")]
    Exists { path: String, why: &'static str },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Writes `contents` to a new file at `path` with `mode`, or over an old
/// one with `force`; replaced whole (`durable_file`), so a reader never
/// sees half a key.
pub fn write_file(
    path: &Path,
    contents: &str,
    mode: u32,
    force: bool,
    why: &'static str,
) -> Result<(), PkiError> {
    use std::io::Write;
    let shown = path.display().to_string();
    if path.exists() && !force {
        return Err(PkiError::Exists { path: shown, why });
    }
    let write = |source| PkiError::Write {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    crate::durable_file::replace_with(path, mode, |file| file.write_all(contents.as_bytes()))
        .map_err(write)
}

pub fn read_file(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Runs one `e2d pki` command; returns what to print.
pub fn run(command: crate::cli::PkiCommand) -> Result<String, PkiError> {
    use crate::cli::PkiCommand;
    match command {
        PkiCommand::Init(args) => {
            init::init(&args.ca_cert, &args.ca_key, args.key_type, args.force)?;
            Ok(format!(
                "wrote the CA certificate {} and its key {}",
                args.ca_cert.display(),
                args.ca_key.display()
            ))
        }
        PkiCommand::Gencerts(args) => {
            let lifetime_s = gencerts::lifetime_s_of_days(args.days)?;
            let names = gencerts::gencerts(
                &args.ca_cert,
                &args.ca_key,
                &args.hosts,
                &args.output_dir,
                args.key_type,
                lifetime_s,
                args.force,
            )?;
            Ok(format!(
                "wrote server, peer and client certificates and keys to {}, valid for {} and {} days",
                args.output_dir.display(),
                names.join(", "),
                args.days
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable_file::permission_bits;

    #[test]
    fn keys_stay_private_when_replaced_and_an_old_file_is_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("certs/ca.key");
        write_file(&key, "first", 0o600, false, "").unwrap();
        let refused = write_file(&key, "second", 0o600, false, "").unwrap_err();
        assert!(matches!(refused, PkiError::Exists { .. }), "{refused}");
        write_file(&key, "third", 0o600, true, "").unwrap();
        assert_eq!(read_file(&key).unwrap(), "third");
        assert_eq!(permission_bits(&key), 0o600);
        let names: Vec<_> = std::fs::read_dir(key.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
