//! Files the config names: secrets (`secret_key_file`, `security_token_file`,
//! `password_file`) read with [`file::read_bounded`], at most [`MAX_SECRET_BYTES`]. Relative
//! paths start from the config file's directory.

use std::path::PathBuf;

use super::super::{file, MAX_SECRET_BYTES};
use super::Validator;
use crate::secret::Secret;

impl Validator<'_> {
    /// `path` as the config means it: relative to the config file's directory.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        match self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
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
                let path = self.resolve(&p);
                let text = file::read_bounded(&path, MAX_SECRET_BYTES).and_then(|b| {
                    String::from_utf8(b).map_err(|_| {
                        file::ReadError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not valid UTF-8",
                        ))
                    })
                });
                match text {
                    Ok(s) if s.trim().is_empty() => {
                        self.problem(&file_key, format!("{} is empty", path.display()));
                        None
                    }
                    // Kubernetes secrets and `echo` leave a trailing newline.
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']))),
                    Err(e) => {
                        self.problem(&file_key, format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
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
