//! A git working tree's revision, for the records of runs. Shared by the crate and its build
//! script (which includes this file), so it uses only `std`.

use std::path::Path;
use std::process::Command;

/// The revision of the working tree at `tree` (the current directory's if `None`): the commit's
/// 12-digit hash, with `-dirty` when tracked files under `paths` (all of them if empty) differ
/// from it. `None` outside a working tree or without git.
pub fn revision_of(tree: Option<&Path>, paths: &[&str]) -> Option<String> {
    let git = |args: &[&str]| {
        let mut command = Command::new("git");
        if let Some(tree) = tree {
            command.arg("-C").arg(tree);
        }
        command
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend_from_slice(paths);
    let dirty = git(&status).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}
