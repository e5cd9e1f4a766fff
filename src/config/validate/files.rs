//! Every file the config names: secrets (`secret_key_file`, `security_token_file`,
//! `password_file`) and the certificates and key of `redis[].tls`, read alike with
//! [`file::read_bounded`]: a regular file (not a FIFO, a device or a kernel file such as
//! `/proc/self/environ`), opened without blocking, no larger than its bound ([`MAX_SECRET_BYTES`]
//! for secrets and keys, [`MAX_CERT_BYTES`] for certificates), and not empty. A problem names
//! the key, the file and what is wrong, never the contents. Relative paths start from the
//! config file's directory.

use std::path::PathBuf;

use super::super::{file, MAX_CERT_BYTES, MAX_SECRET_BYTES};
use super::Validator;
use crate::secret::Secret;

/// What a file named by the config holds, which decides its bound and whether it must be text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Holds {
    /// A password, secret key or token: text, at most [`MAX_SECRET_BYTES`].
    Secret,
    /// A PEM private key: text, at most [`MAX_SECRET_BYTES`].
    Key,
    /// PEM certificates: at most [`MAX_CERT_BYTES`].
    Certificates,
}

impl Holds {
    fn limit(self) -> u64 {
        match self {
            Holds::Secret | Holds::Key => MAX_SECRET_BYTES,
            Holds::Certificates => MAX_CERT_BYTES,
        }
    }

    fn text(self) -> bool {
        matches!(self, Holds::Secret | Holds::Key)
    }
}

impl Validator<'_> {
    /// `path` as the config means it: relative to the config file's directory.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        match self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    /// Reads the file named at `key` (the path already `${VAR}`-expanded), or says why not.
    pub(super) fn file(&mut self, key: &str, path: &str, holds: Holds) -> Option<Vec<u8>> {
        let path = self.resolve(path);
        let shown = path.display();
        let bytes = match file::read_bounded(&path, holds.limit()) {
            Ok(b) => b,
            Err(e) => {
                self.problem(key, format!("cannot read {shown}: {e}"));
                return None;
            }
        };
        if holds.text() && std::str::from_utf8(&bytes).is_err() {
            self.problem(key, format!("cannot read {shown}: not valid UTF-8"));
            return None;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            self.problem(key, format!("{shown} is empty"));
            return None;
        }
        Some(bytes)
    }

    /// [`Validator::file`] for a file that holds text.
    pub(super) fn text_file(&mut self, key: &str, path: &str, holds: Holds) -> Option<String> {
        debug_assert!(holds.text());
        self.file(key, path, holds)
            .and_then(|b| String::from_utf8(b).ok())
    }

    /// Reads a secret given inline or as a file; both or neither is a problem when required.
    pub(super) fn secret(
        &mut self,
        key: &str,
        inline: &Option<String>,
        file: &Option<String>,
        required: bool,
    ) -> Option<Secret> {
        let file_key = format!("{key}_file");
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(key, format!("give either {key} or {file_key}, not both"));
                None
            }
            (Some(_), None) => {
                let v = self.required(key, inline);
                Some(Secret::new(v))
            }
            (None, Some(_)) => {
                let p = self.required(&file_key, file);
                if p.is_empty() {
                    return None;
                }
                let text = self.text_file(&file_key, &p, Holds::Secret)?;
                // Kubernetes secrets and `echo` leave a trailing newline.
                Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
            }
            (None, None) => {
                if required {
                    self.problem(key, format!("is required (or {file_key})"));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Problem};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dcs-files-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn mkfifo(p: &std::path::Path) {
        // mkfifo(1) is the independent way to make one.
        let made = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
    }

    /// Reads `path` as the file at key `k`, in `dir`; the bytes and the problems.
    fn read(dir: &std::path::Path, path: &str, holds: Holds) -> (Option<Vec<u8>>, Vec<String>) {
        let env = |_: &str| None;
        let mut v = Validator::new(&env, Some(dir));
        let out = v.file("k", path, holds);
        let (p, _) = v.finish();
        (out, p.iter().map(Problem::to_string).collect())
    }

    #[test]
    fn relative_paths_start_from_the_config_directory() {
        let d = scratch("rel");
        std::fs::write(d.join("ca.pem"), b"PEM").expect("write");
        assert_eq!(
            read(&d, "ca.pem", Holds::Certificates).0.as_deref(),
            Some(&b"PEM"[..])
        );
        let abs = d.join("ca.pem");
        let (_, p) = read(
            std::path::Path::new("/nonexistent"),
            abs.to_str().unwrap(),
            Holds::Certificates,
        );
        assert!(p.is_empty(), "{p:?}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn each_kind_of_file_has_its_bound() {
        let d = scratch("bound");
        let big = vec![b'x'; MAX_SECRET_BYTES as usize + 1];
        std::fs::write(d.join("f"), &big).expect("write");
        let (_, p) = read(&d, "f", Holds::Key);
        let path = d.join("f");
        assert_eq!(
            p,
            [format!(
                "k: cannot read {}: is larger than {MAX_SECRET_BYTES} bytes",
                path.display()
            )]
        );
        // Certificates may be larger (a CA bundle), up to their own bound.
        assert_eq!(
            read(&d, "f", Holds::Certificates).0.map(|b| b.len()),
            Some(big.len())
        );
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(MAX_CERT_BYTES + 1).expect("sparse file");
        let (_, p) = read(&d, "f", Holds::Certificates);
        assert!(
            p[0].ends_with(&format!("is larger than {MAX_CERT_BYTES} bytes")),
            "{p:?}"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn empty_and_binary_files_are_named() {
        let d = scratch("empty");
        std::fs::write(d.join("blank"), b" \n").expect("write");
        std::fs::write(d.join("bin"), [0xff, 0xfe]).expect("write");
        let (_, p) = read(&d, "blank", Holds::Certificates);
        assert_eq!(p, [format!("k: {} is empty", d.join("blank").display())]);
        let (_, p) = read(&d, "bin", Holds::Key);
        assert_eq!(
            p,
            [format!(
                "k: cannot read {}: not valid UTF-8",
                d.join("bin").display()
            )]
        );
        let _ = std::fs::remove_dir_all(d);
    }

    /// Every path the config names, by its key: a FIFO answers at once (it would block a
    /// reader until some other process writes), `/dev/zero` and `/proc/self/environ` are
    /// refused unread, and so is a file of 100 MiB.
    #[test]
    fn every_configured_path_gets_the_same_checks() {
        let d = scratch("every");
        mkfifo(&d.join("fifo"));
        let huge = std::fs::File::create(d.join("huge")).expect("create");
        huge.set_len(100 << 20).expect("sparse file");
        std::fs::write(d.join("ok"), "x\n").expect("write");
        let config = |secret: &str, ca: &str, cert: &str, key: &str, pw: &str| {
            format!(
                "clouds:\n  - region: r\n    project_id: 0123456789abcdef0123456789abcdef\n    auth: {{access_key: a, secret_key_file: {secret}, security_token_file: {secret}}}\n    instances: [{{id: 5560df16-cebf-4473-95c4-d1b573c16e79}}]\n  - region: r\n    project_id: 0123456789abcdef0123456789abcdef\n    auth: {{user: u, domain: d, password_file: {secret}}}\n    discovery: {{}}\nredis:\n  - address: rediss://h\n    password_file: {pw}\n    tls: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}\n"
            )
        };
        let keys = [
            "clouds[0].auth.secret_key_file",
            "clouds[0].auth.security_token_file",
            "clouds[1].auth.password_file",
            "redis[0].password_file",
            "redis[0].tls.ca_file",
            "redis[0].tls.cert_file",
            "redis[0].tls.key_file",
        ];
        for (file, what) in [
            ("fifo", "is not a regular file (it is a FIFO)"),
            ("/dev/zero", "is not a regular file (it is a device)"),
            (
                "/proc/self/environ",
                "is not a regular file (it is on procfs",
            ),
            ("huge", "is larger than"),
        ] {
            let text = config(file, file, file, file, file);
            let (tx, rx) = std::sync::mpsc::channel();
            let dir = d.clone();
            std::thread::spawn(move || {
                let r = load_str(&text, "t.yml", Some(&dir), &|_| None);
                let _ = tx.send(r.map(|_| ()).map_err(|e| e.problems()));
            });
            let problems = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{file}: loading returned instead of blocking"))
                .expect_err(file);
            let shown = if file.starts_with('/') {
                file.to_owned()
            } else {
                d.join(file).display().to_string()
            };
            for key in keys {
                let found = problems
                    .iter()
                    .any(|p| p.contains(&format!("{key}: cannot read {shown}: {what}")));
                assert!(found, "{file}: no problem at {key}: {problems:#?}");
            }
            assert_eq!(problems.len(), keys.len(), "{file}: {problems:#?}");
        }
        // The same config with readable files loads.
        load_str(
            &config("ok", "ok", "ok", "ok", "ok"),
            "t.yml",
            Some(&d),
            &|_| None,
        )
        .expect("loads");
        let _ = std::fs::remove_dir_all(d);
    }
}
