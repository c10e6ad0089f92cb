//! Keeping downloads inside the configured folders: a download folder named over RPC must lie
//! within one of them after resolving symbolic links, so an RPC caller cannot make the daemon
//! write anywhere else on the machine.

use std::path::{Component, Path, PathBuf};

/// Why a download folder was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path.
    #[error("download-dir must be an absolute path")]
    NotAbsolute,
    /// Contains `..`.
    #[error("download-dir must not contain `..`")]
    ParentComponent,
    /// Outside every allowed folder.
    #[error("download-dir {0} is outside the allowed download folders")]
    Outside(String),
    /// The path cannot be examined.
    #[error("download-dir {0}: {1}")]
    Io(String, String),
}

/// Resolves `p` as far as it exists (symbolic links included) and appends the rest.
fn resolve(p: &Path) -> Result<PathBuf, PathError> {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                    return Err(PathError::Io(p.display().to_string(), e.to_string()));
                };
                rest.push(name);
                existing.pop();
            }
            Err(e) => return Err(PathError::Io(p.display().to_string(), e.to_string())),
        }
    }
}

/// The allowed folders, resolved once (call after creating them).
pub fn resolve_allowed(dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter().filter_map(|d| resolve(d).ok()).collect()
}

/// Checks a requested download folder against the (resolved) allowed folders and returns it
/// resolved.
pub fn confine(requested: &Path, allowed: &[PathBuf]) -> Result<PathBuf, PathError> {
    if !requested.is_absolute() {
        return Err(PathError::NotAbsolute);
    }
    if requested.components().any(|c| c == Component::ParentDir) {
        return Err(PathError::ParentComponent);
    }
    let real = resolve(requested)?;
    if allowed.iter().any(|a| real.starts_with(a)) {
        Ok(real)
    } else {
        Err(PathError::Outside(requested.display().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_is_accepted_outside_refused() {
        let dir = tempfile::tempdir().unwrap();
        let allowed_dir = dir.path().join("dl");
        std::fs::create_dir_all(&allowed_dir).unwrap();
        let allowed = resolve_allowed(std::slice::from_ref(&allowed_dir));
        assert_eq!(confine(&allowed_dir, &allowed).unwrap(), allowed[0]);
        assert_eq!(
            confine(&allowed_dir.join("new/sub"), &allowed).unwrap(),
            allowed[0].join("new/sub")
        );
        assert_eq!(
            confine(&dir.path().join("other"), &allowed),
            Err(PathError::Outside(
                dir.path().join("other").display().to_string()
            ))
        );
        assert_eq!(
            confine(Path::new("rel/x"), &allowed),
            Err(PathError::NotAbsolute)
        );
        assert_eq!(
            confine(&allowed_dir.join("../dl2"), &allowed),
            Err(PathError::ParentComponent)
        );
        assert!(confine(Path::new("/etc"), &allowed).is_err());
        // A prefix of the name is not the folder itself.
        assert!(confine(&dir.path().join("dl-evil"), &allowed).is_err());
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let allowed_dir = dir.path().join("dl");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&allowed_dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed_dir.join("link")).unwrap();
        let allowed = resolve_allowed(std::slice::from_ref(&allowed_dir));
        assert!(matches!(
            confine(&allowed_dir.join("link/x"), &allowed),
            Err(PathError::Outside(_))
        ));
    }
}
