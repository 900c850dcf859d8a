//! Changing the config: JSON merge patches and crash-safe writes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::path::KeyPath;

/// Applies an RFC 7386 JSON merge patch: objects merge key by key, `null` deletes a key, and
/// anything else (arrays included) replaces the target.
pub fn merge_patch(base: &mut Value, patch: &Value) {
    merge_patch_replacing(base, patch, &[]);
}

/// [`merge_patch`], except that the objects at `replace_paths` (key paths such as
/// `channels.telegram`) are replaced wholesale instead of merged, so keys missing from the
/// patch are dropped there. `null`s inside a replaced object are removed, as RFC 7386 does
/// for a patch applied to a non-object. Paths that do not parse are ignored.
pub fn merge_patch_replacing(base: &mut Value, patch: &Value, replace_paths: &[String]) {
    let replace: Vec<KeyPath> = replace_paths.iter().filter_map(|p| KeyPath::parse(p)).collect();
    merge_at(&KeyPath::root(), base, patch, &replace);
}

fn merge_at(path: &KeyPath, target: &mut Value, patch: &Value, replace: &[KeyPath]) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
            continue;
        }
        let child = path.child(key);
        if replace.contains(&child) {
            let mut fresh = Value::Null;
            merge_at(&child, &mut fresh, value, &[]);
            target.insert(key.clone(), fresh);
        } else {
            let slot = target.entry(key.clone()).or_insert(Value::Null);
            merge_at(&child, slot, value, replace);
        }
    }
}

/// Writes `text` to `path` so that readers see either the old file or the new one, never a
/// torn write, even across a crash.
///
/// Writes a temporary file in the same directory, syncs it, renames it over `path` and syncs
/// the directory. Creates missing parent directories (mode 0700 on Unix). The file gets mode
/// 0600 on Unix because it may hold secrets. If `path` is a symlink, the file it points to is
/// replaced and the link kept (configs managed as dotfiles often are links).
///
/// # Errors
/// Any I/O error; the original file is untouched in that case.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let path = follow_symlink(path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".clawgate-config-").suffix(".tmp").tempfile_in(&dir)?;
    tmp.write_all(text.as_bytes())?;
    set_private_mode(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

fn follow_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(path)?;
            Ok(match path.parent() {
                Some(parent) => parent.join(target),
                None => target,
            })
        }
        _ => Ok(path.to_path_buf()),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn set_private_mode(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private_mode(_: &fs::File) -> io::Result<()> {
    Ok(())
}

/// Makes the rename durable: on Unix the directory entry lives in the directory's own data.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        // The test cases from RFC 7386 appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (mut base, patch, want) in cases {
            merge_patch(&mut base, &patch);
            assert_eq!(base, want, "patch {patch}");
        }
    }

    #[test]
    fn replace_paths_replace_instead_of_merging() {
        let mut base = json!({"channels": {"telegram": {"botToken": "x", "dmPolicy": "open"}, "slack": {"a": 1}}});
        let patch = json!({"channels": {"telegram": {"botToken": "y", "gone": null}, "slack": {"b": 2}}});
        merge_patch_replacing(&mut base, &patch, &["channels.telegram".to_owned()]);
        assert_eq!(base, json!({"channels": {"telegram": {"botToken": "y"}, "slack": {"a": 1, "b": 2}}}));
    }

    #[test]
    fn write_atomic_creates_dirs_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/clawgate.json5");
        write_atomic(&path, "{a: 1}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{a: 1}");
        write_atomic(&path, "{a: 2}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{a: 2}");
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn written_config_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json5");
        fs::write(&path, "{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, "{}").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_config_keeps_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json5");
        let link = dir.path().join("link.json5");
        fs::write(&real, "{}").unwrap();
        std::os::unix::fs::symlink("real.json5", &link).unwrap();
        write_atomic(&link, "{x: 1}").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "{x: 1}");
    }
}
