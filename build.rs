//! Stamps the source revision into the binary as `DCS_EXPORTER_REVISION`, for
//! `dcs_exporter_build_info{revision}` and `--version`.
//!
//! In order: the `DCS_EXPORTER_REVISION` environment variable when it is set and not empty (the
//! Docker build has no `.git` and passes `--build-arg REVISION=...`); else the short commit of
//! `git rev-parse` when the source is a git checkout and git is installed; else `unknown`. A
//! missing git, a tarball or a shallow copy never fails the build.
//!
//! Only git's own files are watched (HEAD, the branch's ref, packed refs, HEAD's reflog), so a
//! commit or checkout re-runs this script, and editing sources does not.

use std::path::Path;
use std::process::Command;

const VAR: &str = "DCS_EXPORTER_REVISION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={VAR}");
    let revision = match std::env::var(VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => git_revision().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env={VAR}={revision}");
}

/// Runs git in the package directory; `None` when git is missing or this is not a checkout.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(&dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Watch the files a commit, checkout or fetch changes. `--git-path` resolves them for linked
    // worktrees too (HEAD is per worktree, refs are shared). A watched path that does not exist
    // would make Cargo re-run the script on every build, so only existing ones are named.
    let mut watched = vec![
        "HEAD".to_owned(),
        "logs/HEAD".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(head_ref);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path =
                Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(revision)
}
