//! `--key-file`: mongod's `--keyFile` for clients. The key is the password
//! of the internal user `__system@local` (SCRAM-SHA-256 and SCRAM-SHA-1, as
//! mongod's internal authentication), which the operator authenticates as
//! to run a store owner's admin commands (`authorize::needs_key`).
//!
//! The user lives only in this process: never in the catalog log, never
//! listed by `usersInfo`, never dropped. The file is read as mongod reads
//! one: nothing for others, whitespace ignored, then 6 to 1,024 characters
//! of the base64 alphabet; unlike mongod, group read is allowed (see
//! `KeyFile::read`: a Kubernetes Secret volume's file is 0440). No error names a key
//! character, and `KeyFile` never prints its contents.

use std::path::Path;

use super::roles::Grant;
use super::scram::{Credential, Mechanism};
use super::users::{StoredUser, UserId};

/// The internal user's database and name, as mongod's.
pub const SYSTEM_DB: &str = "local";
pub const SYSTEM_USER: &str = "__system";
const MIN_KEY_LEN: usize = 6;
const MAX_KEY_LEN: usize = 1024;

/// A key read from a key file.
pub struct KeyFile(String);

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyFile(…)")
    }
}

/// Whether `id` is the internal user (whatever a catalog record says).
pub fn is_system(id: &UserId) -> bool {
    id.db == SYSTEM_DB && id.name == SYSTEM_USER
}

impl KeyFile {
    /// Reads `path` with mongod's rules and messages (keys elided).
    pub fn read(path: &Path) -> Result<KeyFile, String> {
        let shown = path.display();
        let meta =
            std::fs::metadata(path).map_err(|e| format!("Error reading file {shown}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // mongod wants X00. Kubernetes cannot give a non-root user a
            // Secret's file that way (kubelet owns it by root and adds the
            // pod's fsGroup: 0440), so group read is allowed; anything
            // for others, or group write, is refused as mongod refuses it.
            if meta.permissions().mode() & 0o037 != 0 {
                return Err(format!("permissions on {shown} are too open"));
            }
        }
        if !meta.is_file() {
            return Err(format!("Error reading file {shown}: not a regular file"));
        }
        // Bounded before it is read: a key is at most 1,024 characters, and
        // whitespace around them cannot sensibly take more than 64 KiB.
        if meta.len() > 64 * 1024 {
            return Err(format!(
                "security key in {shown} has length over {MAX_KEY_LEN} characters (the file holds {} bytes)",
                meta.len()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("Error reading file {shown}: {e}"))?;
        Self::parse(&bytes).map_err(|why| why.replace("{file}", &shown.to_string()))
    }

    /// The key in `contents`; errors say `{file}` where the path goes.
    fn parse(contents: &[u8]) -> Result<KeyFile, String> {
        let key: Vec<u8> = contents
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if key.is_empty() {
            return Err("Error reading file {file}: the key file is empty".into());
        }
        if let Some(at) = key
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
        {
            return Err(format!(
                "invalid char in key file {{file}} at position {} (only the base64 alphabet is allowed; the character is not shown)",
                at + 1
            ));
        }
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(format!(
                "security key in {{file}} has length {}, must be between {MIN_KEY_LEN} and {MAX_KEY_LEN} chars",
                key.len()
            ));
        }
        // Only base64 characters, checked above.
        Ok(KeyFile(String::from_utf8_lossy(&key).into_owned()))
    }

    /// `__system@local` with the key as its password and every privilege.
    pub fn system_user(&self) -> Result<StoredUser, String> {
        let credentials = Mechanism::ALL
            .iter()
            .map(|&m| {
                Credential::new(m, SYSTEM_USER, &self.0)
                    .map(|c| (m, c))
                    .map_err(|e| format!("the key file's key cannot be a {} key: {e}", m.name()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let root =
            Grant::parse(&bson::Bson::String("root".into()), "admin").map_err(|e| e.to_string())?;
        Ok(StoredUser {
            id: UserId {
                db: SYSTEM_DB.into(),
                name: SYSTEM_USER.into(),
            },
            roles: vec![root],
            credentials,
            custom_data: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongod_rules_without_showing_the_key() {
        assert!(KeyFile::parse(b"abcdef").is_ok());
        assert!(KeyFile::parse(b"  ab cd\n ef==\n").is_ok());
        assert!(KeyFile::parse(&[b'A'; 1024]).is_ok());
        for (bad, says) in [
            (&b""[..], "empty"),
            (b" \n\t ", "empty"),
            (b"abcde", "length 5"),
            (&[b'A'; 1025], "length 1025"),
            (b"abcdef!", "invalid char"),
            (b"abc\x00def", "invalid char"),
            ("abcdefé".as_bytes(), "invalid char"),
        ] {
            let e = KeyFile::parse(bad).unwrap_err();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("abc") && !e.contains('!'), "{e}");
        }
        let key = KeyFile::parse(b"s3cretKey").unwrap();
        assert_eq!(format!("{key:?}"), "KeyFile(…)");
        let user = key.system_user().unwrap();
        assert!(is_system(&user.id));
        assert!(!format!("{user:?}").contains("s3cretKey"));
    }
}
