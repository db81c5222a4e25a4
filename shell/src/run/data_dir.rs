//! What a managed member keeps in its data dir besides the database: its
//! name, the founding set it committed to, and the archive of data dirs
//! moved aside after the cluster removed the member. Files are replaced
//! durably and privately (`durable_file`).

use std::path::{Path, PathBuf};

use e2d_core::manager::{Proposal, Removal};

use super::RunError;
use crate::durable_file::{self, sync_dir};

/// This member's name.
const NAME_FILE: &str = "name";
/// The founding set this member committed to, or founded its cluster with.
const FOUNDING_FILE: &str = "founding.json";
/// Data dirs moved aside, one directory each.
pub const ARCHIVE_DIR: &str = "archive";
/// The data dir's format, as the e2d that made it wrote it.
const FORMAT_FILE: &str = "format";
/// The format this e2d writes, and the newest it reads. A data dir
/// without the file was made before formats were numbered: format 1.
pub const DATA_FORMAT: u32 = 1;

/// Fails, changing nothing, when `data_dir` was written in a format newer
/// than this e2d reads; records this e2d's format in a data dir that has
/// none.
pub fn check_format(data_dir: &Path) -> Result<(), RunError> {
    let path = data_dir.join(FORMAT_FILE);
    let Some(text) = read_if_present(&path)? else {
        return durable_file::replace(&path, DATA_FORMAT.to_string().as_bytes())
            .map_err(|source| data_dir_error(&path, source));
    };
    let format: u32 = text.trim().parse().map_err(|_| {
        RunError::Cluster(format!(
            "{} holds {text:?}, not a data format e2d writes: restore the file or the data dir from a backup",
            path.display()
        ))
    })?;
    if format > DATA_FORMAT {
        return Err(RunError::Cluster(format!(
            "the data dir {} was written by a newer e2d (data format {format}; e2d {} reads formats up to {DATA_FORMAT}): run the newer e2d on it; nothing was changed",
            data_dir.display(),
            env!("CARGO_PKG_VERSION")
        )));
    }
    Ok(())
}

/// Longest name: what gossip carries.
const NAME_BYTES_MAX: usize = 64;

/// Creates the data dir (0700), or narrows an existing one that others
/// may enter to 0700. etcd warns about such a data dir and goes on; e2d
/// warns in etcd's words and narrows it too. Returns the warning, if any.
pub fn make_private(data_dir: &Path) -> Result<Option<String>, RunError> {
    use std::os::unix::fs::PermissionsExt;
    durable_file::create_dir_all(data_dir).map_err(|source| data_dir_error(data_dir, source))?;
    let mode = std::fs::metadata(data_dir)
        .map_err(|source| data_dir_error(data_dir, source))?
        .permissions()
        .mode();
    if mode & GROUP_OTHER_BITS == 0 {
        return Ok(None);
    }
    let private = std::fs::Permissions::from_mode(durable_file::PRIVATE_DIR_MODE);
    let outcome = match std::fs::set_permissions(data_dir, private) {
        Ok(()) => "e2d changed it to -rwx------".to_string(),
        Err(e) => format!(
            "e2d could not change it ({e}): run chmod 700 {}",
            data_dir.display()
        ),
    };
    Ok(Some(format!(
        "check file permission: directory \"{}\" exist, but the permission is \"{}\". \
         The recommended permission is \"-rwx------\" to prevent possible unprivileged \
         access to the data; {outcome}",
        data_dir.display(),
        dir_mode_text(mode)
    )))
}

/// Permission bits of the group and of others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// A directory's permissions as `ls` and etcd show them: `drwxr-xr-x`.
fn dir_mode_text(mode: u32) -> String {
    let mut text = String::from("d");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        for (bit, letter) in [(0o4, 'r'), (0o2, 'w'), (0o1, 'x')] {
            text.push(if bits & bit != 0 { letter } else { '-' });
        }
    }
    text
}

/// Checks a member name: 1 to 64 letters, digits, '.', '_' or '-'.
pub fn check_name(name: &str) -> Result<(), RunError> {
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(RunError::Name {
            name: name.to_string(),
        })
    }
}

/// The member's name: `--name` when given, else the one kept in the data
/// dir, else `fallback()`; it is kept in the data dir.
pub fn member_name(
    data_dir: &Path,
    flag: Option<&str>,
    fallback: impl FnOnce() -> String,
) -> Result<String, RunError> {
    let path = data_dir.join(NAME_FILE);
    let kept = read_if_present(&path)?.map(|text| text.trim().to_string());
    let name = match (flag, kept) {
        (Some(flag), _) => flag.to_string(),
        (None, Some(kept)) => kept,
        (None, None) => fallback(),
    };
    check_name(&name)?;
    durable_file::replace(&path, format!("{name}\n").as_bytes())
        .map_err(|source| data_dir_error(&path, source))?;
    Ok(name)
}

/// The host name as a member name ("e2d" if there is none).
pub fn host_name() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(NAME_BYTES_MAX - 7)
        .collect();
    if host.is_empty() {
        "e2d".into()
    } else {
        host
    }
}

/// A new name: the host name and a random suffix, so that nodes sharing a
/// host name stay apart.
pub fn generated_name(random: u64) -> String {
    format!("{}-{:06x}", host_name(), random & 0xff_ffff)
}

/// The cluster size this node last had (`-n`) or proposed, kept so that a
/// restart with an unchanged `-n` does not undo a later resize.
const CLUSTER_SIZE_FILE: &str = "cluster-size";

/// Records `size` as the size this node last had or proposed.
pub fn write_proposed_size(data_dir: &Path, size: usize) -> std::io::Result<()> {
    durable_file::replace(
        &data_dir.join(CLUSTER_SIZE_FILE),
        size.to_string().as_bytes(),
    )
}

/// The size a node restarted with `-n size` proposes to its cluster: one
/// `given` that differs from the size it last had. A data dir without a
/// record (new, or from an older e2d) gets one and proposes nothing.
pub fn size_to_propose(
    data_dir: &Path,
    size: usize,
    given: bool,
) -> Result<Option<usize>, RunError> {
    let path = data_dir.join(CLUSTER_SIZE_FILE);
    let recorded = read_if_present(&path)?.and_then(|text| text.trim().parse::<usize>().ok());
    match recorded {
        Some(last) => Ok((given && last != size).then_some(size)),
        None => {
            write_proposed_size(data_dir, size).map_err(|source| data_dir_error(&path, source))?;
            Ok(None)
        }
    }
}

/// The founding set recorded in the data dir, if any.
pub fn read_commitment(data_dir: &Path) -> Result<Option<Proposal>, RunError> {
    let path = data_dir.join(FOUNDING_FILE);
    let Some(text) = read_if_present(&path)? else {
        return Ok(None);
    };
    parse_commitment(&text).map(Some).ok_or_else(|| {
        RunError::Cluster(format!(
            "{} is not a founding record e2d wrote; move it away if this node never founded a cluster",
            path.display()
        ))
    })
}

fn parse_commitment(text: &str) -> Option<Proposal> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let founders = value
        .get("founders")?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()?;
    let restore = match value.get("restore")? {
        serde_json::Value::Null => None,
        v => Some(v.as_str()?.to_string()),
    };
    let sorted = founders.windows(2).all(|w| w[0] < w[1]);
    (sorted && !founders.is_empty()).then_some(Proposal { founders, restore })
}

/// Records (or, with `None`, clears) the founding set, durably.
pub fn write_commitment(data_dir: &Path, proposal: Option<&Proposal>) -> std::io::Result<()> {
    let path = data_dir.join(FOUNDING_FILE);
    match proposal {
        Some(proposal) => {
            let text = serde_json::json!({
                "founders": proposal.founders,
                "restore": proposal.restore,
            });
            durable_file::replace(&path, text.to_string().as_bytes())
        }
        None => remove_durably(data_dir, FOUNDING_FILE),
    }
}

/// Removes `file` from `data_dir`, durably; a file already gone is fine.
fn remove_durably(data_dir: &Path, file: &str) -> std::io::Result<()> {
    match std::fs::remove_file(data_dir.join(file)) {
        Ok(()) => sync_dir(data_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The survivor (member id, hex) this member left its cluster's recovery
/// to: once written, this member never recovers that cluster itself.
const RECOVERY_LEFT_TO_FILE: &str = "recovery-left-to";

/// Records, durably, that this member left its cluster's recovery to
/// `member_id`.
pub fn write_recovery_left_to(data_dir: &Path, member_id: u64) -> std::io::Result<()> {
    durable_file::replace(
        &data_dir.join(RECOVERY_LEFT_TO_FILE),
        format!("{member_id:x}\n").as_bytes(),
    )
}

/// The cluster that removed this node's member and the voters it went on
/// with, recorded in the fresh data dir once the member's data was moved
/// aside (JSON: `cluster_id` in hex, `voters`): while those may still run
/// it, the node does not help found another.
const REMOVED_FROM_FILE: &str = "removed-from";

/// Records, durably, which cluster removed this node's member.
pub fn write_removed_from(data_dir: &Path, removal: &Removal) -> std::io::Result<()> {
    let text = serde_json::json!({
        "cluster_id": format!("{:x}", removal.cluster_id),
        "voters": removal.voters,
    });
    durable_file::replace(
        &data_dir.join(REMOVED_FROM_FILE),
        text.to_string().as_bytes(),
    )
}

/// The cluster that removed this node's member, if the data dir records
/// one.
pub fn read_removed_from(data_dir: &Path) -> Result<Option<Removal>, RunError> {
    let path = data_dir.join(REMOVED_FROM_FILE);
    let Some(text) = read_if_present(&path)? else {
        return Ok(None);
    };
    parse_removal(&text).map(Some).ok_or_else(|| {
        RunError::Cluster(format!(
            "{} is not a record e2d wrote of the cluster that removed this node's member ({text:?}); \
             restore it, or move the data dir away to start as a new node",
            path.display()
        ))
    })
}

fn parse_removal(text: &str) -> Option<Removal> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let cluster_id = u64::from_str_radix(value.get("cluster_id")?.as_str()?, 16)
        .ok()
        .filter(|&id| id != 0)?;
    let voters = value
        .get("voters")?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()?;
    (voters.len() <= e2d_core::swim::META_NAMES_MAX).then_some(Removal { cluster_id, voters })
}

/// Forgets the survivor this member left its old cluster's recovery to:
/// the member now runs a cluster of its own (recovered by hand).
pub fn clear_recovery_left_to(data_dir: &Path) -> std::io::Result<()> {
    remove_durably(data_dir, RECOVERY_LEFT_TO_FILE)
}

/// The survivor this member left its cluster's recovery to, if any.
pub fn read_recovery_left_to(data_dir: &Path) -> Result<Option<u64>, RunError> {
    let path = data_dir.join(RECOVERY_LEFT_TO_FILE);
    let Some(text) = read_if_present(&path)? else {
        return Ok(None);
    };
    u64::from_str_radix(text.trim(), 16)
        .ok()
        .filter(|&id| id != 0)
        .map(Some)
        .ok_or_else(|| {
            RunError::Cluster(format!(
                "{} is not a recovery record e2d wrote ({text:?}): it names the survivor this member left \
                 its cluster's recovery to; restore it, or move the data dir away to join as a new member",
                path.display()
            ))
        })
}

/// The first name of `stem`, `stem-1`, `stem-2`, ... not yet taken in
/// the archive of `data_dir`.
pub(super) fn free_archive_name(data_dir: &Path, stem: &str) -> String {
    let root = data_dir.join(ARCHIVE_DIR);
    let mut name = stem.to_string();
    let mut suffix = 1;
    while root.join(&name).exists() {
        name = format!("{stem}-{suffix}");
        suffix += 1;
    }
    name
}

/// Moves everything in `data_dir` but the name and earlier archives into
/// `archive/removed-<unix seconds>`, and returns that directory. Nothing is
/// deleted.
pub fn archive(data_dir: &Path, now_unix_s: u64) -> std::io::Result<PathBuf> {
    let archive_root = data_dir.join(ARCHIVE_DIR);
    durable_file::create_dir_all(&archive_root)?;
    let target = archive_root.join(free_archive_name(
        data_dir,
        &format!("removed-{now_unix_s}"),
    ));
    durable_file::create_dir(&target)?;
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ARCHIVE_DIR || name == NAME_FILE {
            continue;
        }
        std::fs::rename(entry.path(), target.join(&name))?;
        crate::storage::follow_rename(&entry.path(), &target.join(&name));
    }
    sync_dir(&target)?;
    sync_dir(data_dir)?;
    Ok(target)
}

/// The text of the file at `path`; `None` when there is no such file.
fn read_if_present(path: &Path) -> Result<Option<String>, RunError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(data_dir_error(path, source)),
    }
}

pub(super) fn data_dir_error(path: &Path, source: std::io::Error) -> RunError {
    RunError::DataDir {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable_file::permission_bits as mode;

    #[test]
    fn a_data_dir_of_a_newer_format_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        check_format(dir.path()).unwrap();
        let file = dir.path().join(FORMAT_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1");
        check_format(dir.path()).unwrap();
        std::fs::write(&file, "2").unwrap();
        let refused = check_format(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains("written by a newer e2d (data format 2"),
            "{refused}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "2");
        std::fs::write(&file, "two").unwrap();
        let refused = check_format(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("not a data format"), "{refused}");
    }

    fn proposal(founders: &[&str], restore: Option<&str>) -> Proposal {
        Proposal {
            founders: founders.iter().map(|s| s.to_string()).collect(),
            restore: restore.map(str::to_string),
        }
    }

    #[test]
    fn a_new_data_dir_is_private_and_no_warning_is_given() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("data");
        assert_eq!(make_private(&data_dir).unwrap(), None);
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(make_private(&data_dir).unwrap(), None);
    }

    #[test]
    fn a_data_dir_others_may_read_is_warned_about_and_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let warning = make_private(&data_dir).unwrap().unwrap();
        assert_eq!(
            warning,
            format!(
                "check file permission: directory \"{}\" exist, but the permission is \"drwxr-xr-x\". \
                 The recommended permission is \"-rwx------\" to prevent possible unprivileged \
                 access to the data; e2d changed it to -rwx------",
                data_dir.display()
            )
        );
        assert_eq!(mode(&data_dir), 0o700);
    }

    #[test]
    fn files_the_data_dir_keeps_are_private() {
        let dir = tempfile::tempdir().unwrap();
        member_name(dir.path(), Some("n1"), host_name).unwrap();
        write_commitment(dir.path(), Some(&proposal(&["n1"], None))).unwrap();
        let archived = archive(dir.path(), 7).unwrap();
        assert_eq!(mode(&dir.path().join(NAME_FILE)), 0o600);
        assert_eq!(mode(&archived.join(FOUNDING_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(ARCHIVE_DIR)), 0o700);
        assert_eq!(mode(&archived), 0o700);
    }

    #[test]
    fn commitments_survive_a_round_trip_and_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_commitment(dir.path()).unwrap(), None);
        for p in [
            proposal(&["a", "b", "c"], None),
            proposal(&["a"], Some("s-1")),
        ] {
            write_commitment(dir.path(), Some(&p)).unwrap();
            assert_eq!(read_commitment(dir.path()).unwrap(), Some(p));
        }
        write_commitment(dir.path(), None).unwrap();
        write_commitment(dir.path(), None).unwrap();
        assert_eq!(read_commitment(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_damaged_commitment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "",
            "{",
            r#"{"founders":["b","a"],"restore":null}"#,
            r#"{"founders":[]}"#,
        ] {
            std::fs::write(dir.path().join(FOUNDING_FILE), text).unwrap();
            let error = read_commitment(dir.path()).unwrap_err().to_string();
            assert!(error.contains("not a founding record"), "{text}: {error}");
        }
    }

    #[test]
    fn names_are_kept_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let generated = member_name(dir.path(), None, || generated_name(0xabcdef)).unwrap();
        assert!(generated.ends_with("-abcdef"), "{generated}");
        let other = || generated_name(1);
        assert_eq!(member_name(dir.path(), None, other).unwrap(), generated);
        assert_eq!(
            member_name(dir.path(), Some("node-1"), other).unwrap(),
            "node-1"
        );
        assert_eq!(member_name(dir.path(), None, other).unwrap(), "node-1");
        for bad in ["", "a b", "a=b", "a,b", &"x".repeat(65)] {
            let error = member_name(dir.path(), Some(bad), other).unwrap_err();
            assert!(error.to_string().contains("--name"), "{bad}: {error}");
        }
    }

    #[test]
    fn archiving_moves_everything_but_the_name_and_keeps_earlier_archives() {
        let dir = tempfile::tempdir().unwrap();
        member_name(dir.path(), Some("n1"), host_name).unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/data"), b"x").unwrap();
        write_commitment(dir.path(), Some(&proposal(&["n1"], None))).unwrap();
        let first = archive(dir.path(), 7).unwrap();
        assert_eq!(std::fs::read(first.join("db/data")).unwrap(), b"x");
        assert!(first.join(FOUNDING_FILE).exists());
        assert!(!dir.path().join("db").exists());
        assert_eq!(member_name(dir.path(), None, host_name).unwrap(), "n1");
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let second = archive(dir.path(), 7).unwrap();
        assert_ne!(first, second);
        assert!(first.join("db/data").exists());
        assert!(second.join("db").exists());
    }
}
